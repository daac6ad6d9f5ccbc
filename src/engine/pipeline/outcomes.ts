import { randomUUID } from "node:crypto";
import type { AiFlowAction } from "../../aiflow/actions.js";
import type { CallState } from "../../core/callState.js";
import { holdsSend, type NotedEntry } from "../../store/callStore.js";
import type { Clock } from "../clock.js";
import type { FlowTypes } from "../define.js";
import type { NotSentReason, OutcomeEntry, RerunReason } from "../recovery.js";
import { LostHere } from "./lostHere.js";
import { RETRY_MS, untilAnswered } from "./resend.js";
import { MAX_WATCH_MS, type PipelineDeps } from "./types.js";

/**
 * What became of a call's actions, as the flow hears it (RecoveryHooks.onOutcome): handed over, not sent,
 * and, for an attempt whose result was never committed, what it left once its event is done. Each
 * action is named by the event that produced it (its outbox entry's seq), so the flow's records of
 * it (the SMS task's sms_handed_over / sms_not_sent) name the approval they answer.
 */
export class ActionOutcomes<F extends FlowTypes = FlowTypes> {
  private readonly lostHere: LostHere;

  constructor(
    private readonly deps: PipelineDeps<F>,
    private readonly timers: Clock,
    private readonly pollMs: number,
    private readonly closing: () => boolean,
    /** Work that outlives the call that started it (drain waits for it). */
    private readonly background: (work: Promise<void>) => void,
  ) {
    this.lostHere = new LostHere(timers);
  }

  /** A lost answer's settlement under way (see LostHere): the call's end waits a moment for it. */
  settling<T>(callId: string, work: Promise<T>): Promise<T> {
    return this.lostHere.track(callId, work);
  }

  /** The committed sends a turn makes its state true for: the store's note and what this instance knows (see LostHere). */
  async notesFor(callId: string, ending: boolean, noted: readonly NotedEntry[]): Promise<OutcomeEntry[]> {
    const here = await this.lostHere.forTurn(callId, ending);
    return [...noted, ...here.filter((h) => !noted.some((n) => n.seq === h.seq))];
  }

  /**
   * Actions that never reached sipgate, by the event that produced them (an SMS approved but never
   * sent). `rerun`: their attempt was never committed and the event runs again.
   */
  async notSent(callId: string, entries: OutcomeEntry[], reason: NotSentReason, event: string, rerun = false): Promise<void> {
    const kept = entries.filter((e) => e.actions.length);
    if (!kept.length) return;
    const actions = kept.flatMap((e) => e.actions);
    this.deps.log.warn({ sessionId: callId, event, reason, actions: actions.length, ...(rerun ? { rerun } : {}) }, "actions not sent");
    // Not written after their commit: the state still counts their sends. The store notes them
    // first, so that no turn after this record was written still says "sent".
    if (reason === "not_written") {
      this.lostHere.add(callId, kept.filter((e) => holdsSend(e.actions)));
      await this.noteForNextTurn(callId, kept);
    }
    await this.deps.engine.outcome({ status: "not_sent", callId, actions, entries: kept, reason, ...(rerun ? { rerun } : {}) });
    if (reason === "not_written") await this.resaveAfterCommit(callId, kept);
  }

  /**
   * The flow's after-commit work (a report snapshot) saved again from the committed state as it
   * will be once the note is applied: if no turn comes after (the caller is gone, the state
   * expires), what is posted does not say "sent". Same revision as the last commit's; a later
   * turn's snapshot replaces it.
   */
  private async resaveAfterCommit(callId: string, entries: OutcomeEntry[]): Promise<void> {
    const { engine, store, log } = this.deps;
    if (!engine.hasAfterCommit || !entries.some((e) => holdsSend(e.actions))) return;
    try {
      const [state, progress] = await Promise.all([store.get(callId), store.progress(callId)]);
      if (!state) return;
      await this.applyNoted(callId, entries, state);
      await engine.committed(state, progress.processed);
    } catch (e) {
      log.warn({ sessionId: callId, err: (e as Error).message }, "after-commit work for sends not written could not run again: the next turn's does");
    }
  }

  /**
   * Committed sends that never left, noted in the store for the call's next turn (see
   * `CallStore.markNotSent`). While the store does not answer, asked again in the background
   * (bounded like every watch); a store that never answers leaves the state saying "sent" (logged).
   */
  private async noteForNextTurn(callId: string, entries: OutcomeEntry[]): Promise<void> {
    const sends = entries.filter((e) => holdsSend(e.actions));
    if (!sends.length) return;
    const mark = (rid: string) => this.deps.store.markNotSent(callId, sends, rid);
    const requestId = randomUUID();
    try {
      await untilAnswered(this.timers, mark, requestId);
    } catch {
      this.background(
        (async () => {
          const started = this.timers.now();
          while (!this.closing() && this.timers.now() - started < MAX_WATCH_MS) {
            await this.timers.sleep(RETRY_MS * 10);
            try {
              return await mark(requestId);
            } catch {
              // The store is down: ask again later.
            }
          }
          this.deps.log.error({ sessionId: callId }, "sends not written could not be noted for the next turn: the call's state still counts them");
        })(),
      );
    }
  }

  /**
   * The turn about to run gets the committed sends noted as never sent (`NextEvent.notSent`): the
   * flow makes `state` true for them. Returns their seqs, for the commit to clear.
   */
  async applyNoted(callId: string, noted: readonly OutcomeEntry[], state: CallState<F["state"]>): Promise<number[]> {
    if (!noted.length) return [];
    this.deps.log.info({ sessionId: callId, entries: noted.length }, "sends not written after their commit: the call's state stops counting them");
    await this.deps.engine.outcome({ status: "not_sent_noted", callId, actions: noted.flatMap((e) => e.actions), entries: noted.map((e) => ({ seq: e.seq, actions: e.actions })) }, state);
    return noted.map((e) => e.seq);
  }

  /** Actions written into an answer or a frame, by the event that produced them: handed to sipgate. */
  async handedOver(callId: string, entries: OutcomeEntry[]): Promise<void> {
    const kept = entries.filter((e) => e.actions.length);
    if (kept.length) await this.deps.engine.outcome({ status: "handed_over", callId, actions: kept.flatMap((e) => e.actions), entries: kept });
  }

  /** Event `seq` is done after an earlier attempt left it uncommitted: the flow settles what that attempt left. */
  async rerunDone(callId: string, seq: number, reason: RerunReason, entries?: OutcomeEntry[], state?: CallState<F["state"]>): Promise<void> {
    await this.deps.engine.outcome({ status: "rerun_done", callId, seq, reason, ...(entries ? { entries } : {}) }, state);
  }

  /**
   * An attempt at event `seq` lost the call's lease before its commit: what it produced was given
   * back (`notSent` with `rerun`); once the event is done (processed by whichever attempt came last,
   * here or elsewhere), the flow hears what it produced and the call's state after it. In the
   * background, bounded like every watch; an instance that stops first leaves it unsettled (what it
   * approved then has no outcome).
   */
  settleWhenDone(callId: string, seq: number, entries: OutcomeEntry[]): void {
    this.background(
      (async () => {
        const started = this.timers.now();
        const every = Math.max(this.pollMs, Math.floor(this.deps.options.answer.leaseMs / 4));
        while (!this.closing() && this.timers.now() - started < MAX_WATCH_MS) {
          await this.timers.sleep(every);
          try {
            if ((await this.deps.store.progress(callId)).processed < seq) continue;
            await this.rerunDone(callId, seq, "lease_lost", entries, await this.deps.store.get(callId));
            return;
          } catch {
            // The store is down: look again later.
          }
        }
      })(),
    );
  }

  /** A turn whose commit failed here, and whose event was processed since by another attempt: given back, then settled. */
  async commitFailedDone(callId: string, seq: number, actions: AiFlowAction[], event: string): Promise<void> {
    const entries = [{ seq, actions }];
    await this.notSent(callId, entries, "commit_failed", event, true);
    await this.rerunDone(callId, seq, "commit_failed", entries);
  }

  /**
   * This instance stops with a turn whose commit failed. With a store of its own nothing runs the
   * event again: its actions were not sent. With a shared one the event is still queued, and another
   * instance runs it anew (under the same evidence ids): only what the attempt held is given back.
   */
  async stoppedUncommitted(callId: string, seq: number, actions: AiFlowAction[], event: string): Promise<void> {
    await this.notSent(callId, [{ seq, actions }], "commit_failed", event, this.deps.store.shared);
  }
}
