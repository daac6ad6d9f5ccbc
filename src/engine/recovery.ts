import type { AiFlowAction } from "../aiflow/actions.js";
import type { CallState } from "../core/callState.js";
import type { FlowTypes } from "./define.js";
import type { TurnContext } from "./turnContext.js";

/**
 * The engine-facing hooks of a flow or task, grouped so a flow author writing a new agent never
 * meets them: they matter only to a part that keeps evidence outside the call store (the SMS task's
 * consent ledger) and must keep it true when a call does not go as written. Composed like every
 * hook (src/engine/defineFlow.ts): all parts' run, tasks first.
 */
export interface RecoveryHooks<F extends FlowTypes = FlowTypes> {
  /** Action types a redelivered event never gets again (a second send_sms could double the SMS). */
  neverReplay?: readonly AiFlowAction["type"][];
  /**
   * What became of a turn's actions, once known: handed to sipgate (an answer written, a frame
   * sent) or not sent, with the reason, and what an attempt whose result was never committed left
   * once its event is done (see ActionOutcome). The one way a part hears it (its evidence: the SMS
   * task's sms_handed_over and sms_not_sent). `state`: the call's last state when the outcome is
   * known inside a turn (the call ends with actions never collected): the part makes it true before
   * its last bookkeeping (a report must not say an SMS was handed over that never was); for
   * `rerun_done`, the call's state after the event. `now`: the engine's clock (epoch ms), for the records' times.
   */
  onOutcome?: (outcome: ActionOutcome, services: F["services"], state: CallState<F["state"]> | undefined, now: number) => Promise<void> | void;
  /**
   * A caller event that will never be evaluated (its turn crashed instances too often): it may
   * have been a "no", so a part that guards a "yes" treats it as one (no speech here).
   */
  onUnevaluated?: (ctx: TurnContext<F>) => Promise<void> | void;
  /**
   * An event runs again after an earlier attempt ended with its instance (a crash mid-turn): what
   * that attempt did outside the call store (a ledger record of an approved send) never took
   * effect, and the part settles it (the send never left) before the event runs again.
   */
  onRetry?: (ctx: TurnContext<F>) => Promise<void> | void;
  /**
   * A caller event of a call whose state is gone (the store lost it mid-call; no session_start
   * began it): the call starts over, and the part recovers what must hold for the whole call from
   * outside the store (the SMS task: a "no" or a send already in the ledger ends the offer).
   */
  onStateLost?: (ctx: TurnContext<F>) => Promise<void> | void;
}

/**
 * Why a turn's actions never reached sipgate: an answer gave up on it ("dropped"), its instance lost
 * the call's lease ("lease_lost"), the store failed to commit it ("commit_failed": the turn wrote
 * nothing), the call ended before they were collected ("call_ended"), or the transport could not
 * write them and they could not go back to the outbox ("not_written": a closed socket, an answer
 * whose request was gone).
 */
export type NotSentReason = "dropped" | "lease_lost" | "commit_failed" | "call_ended" | "not_written";

/** Why an attempt at an event ended without its result committed (`rerun_done`). */
export type RerunReason = "lease_lost" | "commit_failed" | "instance_stopped";

/**
 * Actions of one event's turn (its outbox entry): `seq` is the event's position in the call's
 * queue, which the turn that produced them saw as `TurnContext.eventSeq`, so a flow can name each
 * action by the event that produced it and its place among the entry's actions.
 */
export interface OutcomeEntry {
  seq: number;
  actions: AiFlowAction[];
}

/**
 * What became of actions a turn produced (see RecoveryHooks.onOutcome). `actions`: every action of
 * `entries`, in order.
 *
 * - `handed_over`: written into an answer or a frame sent.
 * - `not_sent`: never reached sipgate, for `reason`. With `rerun`, the attempt that produced them
 *   was never committed and its event runs again (maybe producing the same actions once more): give
 *   back what they held, record nothing yet; `rerun_done` follows once the event is done.
 * - `rerun_done`: event `seq`, which an earlier attempt left uncommitted (`reason`), is done now
 *   (committed, dropped or skipped by a later attempt): whatever that attempt produced that the
 *   event's final result does not carry never left. `entries`: what the attempt produced, when this
 *   instance ran it; absent when its instance stopped (the flow looks up what it left, its ledger).
 * - `not_sent_noted`: actions the call's committed state still counts were reported `not_sent`
 *   ("not_written") outside any turn, where no state could be changed (an answer lost after its
 *   commit). The next turn gets them with its state, to make the state true (the SMS it says was
 *   handed over was not); their record and limits were settled with the `not_sent`. May come again
 *   for the same entries: only what the state still counts changes.
 */
export type ActionOutcome =
  | { status: "handed_over"; callId: string; actions: AiFlowAction[]; entries: OutcomeEntry[] }
  | { status: "not_sent"; callId: string; actions: AiFlowAction[]; entries: OutcomeEntry[]; reason: NotSentReason; rerun?: boolean }
  | { status: "rerun_done"; callId: string; seq: number; reason: RerunReason; entries?: OutcomeEntry[] }
  | { status: "not_sent_noted"; callId: string; actions: AiFlowAction[]; entries: OutcomeEntry[] };
