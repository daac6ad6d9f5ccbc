import type { Logger } from "pino";
import type { z } from "zod";
import type { AiFlowAction } from "../aiflow/actions.js";
import type { AiFlowEvent } from "../aiflow/events.js";
import type { CallState } from "../core/callState.js";
import type { GuardDecision } from "../core/turnRecord.js";
import type { TurnContext } from "./turnContext.js";

/**
 * How a flow is declared: steps are data, tools are one declaration each, and everything a
 * flow's policy needs (its slice of state, its services, its gate, its check on model text) it
 * brings itself. The engine that runs it knows no flow.
 */

/**
 * A set of keys (lines, notes, reason codes) written as what accepts them. That makes it
 * contravariant: a flow that knows more keys is a subtype of one that knows fewer, so code
 * written for a task (which speaks the task's lines) runs in any host flow that includes them,
 * with no cast. `Keys<"a" | "b">`; read the keys back with `KeyOf`.
 */
export type Keys<K extends string> = (key: K) => void;
export type KeyOf<T> = T extends Keys<infer K> ? K : never;

/** The types one flow (or task) brings, so tools, hooks and the gate are checked against them at compile time. */
export interface FlowTypes {
  /** The flow's slice of call state (the SMS task: `{ sms }`). */
  state: object;
  /** What its tools, hooks and gate use: config, ledger, limits… */
  services: object;
  /** Keys of the lines.md files of prompts/<lang>/ the flow speaks: a typo is a compile error. */
  lines: Keys<never>;
  /** Keys of prompts/model-notes.md its tools answer with. */
  notes: Keys<never>;
  /** Reason codes of its guard decisions. */
  reasons: Keys<never>;
  /**
   * The tasks its steps may start, by name: each one's typed result and the later notices it sends
   * its starter (`{ sms: { result: SmsTaskResult; notice: SmsFailureNotice } }`).
   */
  tasks: object;
}

/** What a step's `onResult` receives: which task ended, and its typed result. */
export type TaskResultOf<F extends FlowTypes> = {
  [K in keyof F["tasks"] & string]: { task: K; result: F["tasks"][K] extends { result: infer R } ? R : never };
}[keyof F["tasks"] & string];

/** What a step's `onNotice` receives: a later event of a task it started, after the task ended (an SMS it handed over failed). */
export type TaskNoticeOf<F extends FlowTypes> = {
  [K in keyof F["tasks"] & string]: { task: K; notice: F["tasks"][K] extends { notice: infer N } ? N : never };
}[keyof F["tasks"] & string];

export type LineKey<F extends FlowTypes> = KeyOf<F["lines"]>;
export type NoteKey<F extends FlowTypes> = KeyOf<F["notes"]>;
export type ReasonKey<F extends FlowTypes> = KeyOf<F["reasons"]>;

/** A step name, or "exit": the running task is finished (declared by whatever may finish it). */
export type Transition = string;

/** A task, as a tool or step names it to start or finish it: its name and, for the compiler, its parameters and result. */
export interface TaskRef<P, R> {
  readonly name: string;
  /** Never set: carries the types. */
  readonly types?: { params: P; result: R };
}

/** Start a task (`next: startTask(SMS_TASK, { slots })`), back to `returnTo` (default: the step that started it). See tasks.ts. */
export type TaskStart = { readonly kind: "start_task"; readonly task: string; readonly params: unknown; readonly returnTo?: string };

/** Finish the running task with its result (`next: finish(SMS_TASK, { status: "handed_over", … })`). */
export type TaskFinish = { readonly kind: "finish_task"; readonly task: string; readonly result: unknown };

/** Where the flow goes: a step, a task started, or the running task finished. */
export type Next = Transition | TaskStart | TaskFinish;

export function taskRef<P, R>(name: string): TaskRef<P, R> {
  return { name };
}

export function startTask<P, R>(task: TaskRef<P, R>, params: P, opts: { returnTo?: string } = {}): TaskStart {
  return { kind: "start_task", task: task.name, params, ...(opts.returnTo !== undefined ? { returnTo: opts.returnTo } : {}) };
}

export function finish<R>(task: TaskRef<unknown, R>, result: R): TaskFinish {
  return { kind: "finish_task", task: task.name, result };
}

/**
 * What a tool returns: the text the model sees, and where the flow goes next. The transition is
 * the tool's result, applied by the engine after the call (checked against `transitions`), not
 * a side effect a later call could overwrite. A task started this way adds its own note to `result`.
 */
export type ToolOutcome = string | { result?: string; next?: Next };

/**
 * A tool: one declaration with a zod argument schema and an implementation. Its JSON schema is
 * derived from `parameters`; its description lives in prompts/tools.md. `parameters` may depend
 * on the flow's services (e.g. the SMS slots the model may choose from).
 */
export interface ToolDef<F extends FlowTypes = FlowTypes, P extends z.ZodRawShape = z.ZodRawShape> {
  name: string;
  /** Steps this tool may move the flow to ("exit": back); any other is refused, so the diagram drawn from these cannot drift. */
  transitions: Transition[];
  parameters: (services: F["services"]) => z.ZodObject<P>;
  /**
   * True for a call that only takes something back (the caller's "no"). Such a call runs even
   * after an earlier call in the same batch moved the flow: skipping it, as other calls are,
   * could turn a "no" into a later "yes".
   */
  withdraws?: (args: z.infer<z.ZodObject<P>>) => boolean;
  execute(ctx: TurnContext<F>, args: z.infer<z.ZodObject<P>>): Promise<ToolOutcome> | ToolOutcome;
}

/** Declare a tool of flow types `F` (curried, so `P` is inferred from `parameters`). */
export function defineTool<F extends FlowTypes>() {
  return <P extends z.ZodRawShape>(tool: ToolDef<F, P>): ToolDef<F> => tool as unknown as ToolDef<F>;
}

interface StepBase<F extends FlowTypes> {
  name: string;
  /** Spoken or done when the step is entered: a fixed line, no LLM round trip. */
  onEnter?: (ctx: TurnContext<F>) => Promise<void> | void;
  /** Replaces the generic "are you still there?" re-prompt after silence in this step. */
  onTimeout?: (ctx: TurnContext<F>) => Promise<void> | void;
  /**
   * A task this step started ended (or could not start): its typed result, right after the flow is
   * back in the step the task returns to. It may move the flow on, only where `resultTransitions`
   * says ("exit": finish the task this step belongs to, e.g. with a result built from the inner one's).
   */
  onResult?: (ctx: TurnContext<F>, done: TaskResultOf<F>) => Promise<Next | void> | Next | void;
  resultTransitions?: readonly Transition[];
  /** A later event of a task this step started, also after the task ended (an SMS it handed over failed). */
  onNotice?: (ctx: TurnContext<F>, notice: TaskNoticeOf<F>) => Promise<void> | void;
}

/** A step answered by one LLM request with the step's own prompt and only its tools. */
export interface LlmStep<F extends FlowTypes = FlowTypes> extends StepBase<F> {
  kind: "llm";
  /** File name (without .md) under prompts/<language>/. */
  prompt: string;
  tools: ToolDef<F>[];
  /** History the request carries: the whole call ("call", default), or only what was said since the step was entered ("step"). */
  context?: "call" | "step";
  /** Runs after the model answered with text only (no tool call), e.g. to repeat a fixed question. */
  afterModelText?: (ctx: TurnContext<F>) => Promise<void> | void;
}

/** A step that runs code only, with no LLM request (e.g. the send itself). */
export interface CodeStep<F extends FlowTypes = FlowTypes> extends StepBase<F> {
  kind: "code";
  /** The tools `run` invokes (for diagrams and for telling "not offered here" from "no such tool"). */
  tools: ToolDef<F>[];
  run: (ctx: TurnContext<F>) => Promise<void> | void;
}

export type StepDef<F extends FlowTypes = FlowTypes> = LlmStep<F> | CodeStep<F>;

/** What an event hook did: handled the event (the engine does nothing more), and where the flow goes. */
export type HookOutcome = boolean | { handled: boolean; next?: Next };

/** Bookkeeping for an event, whatever the call is doing: no speech, no transition. */
export type Observer<F extends FlowTypes = FlowTypes> = (ctx: TurnContext<F>, event: AiFlowEvent) => Promise<void> | void;

/** Flow-specific reaction to an event the engine does not handle generically. */
export type EventHook<F extends FlowTypes = FlowTypes> = (ctx: TurnContext<F>, event: AiFlowEvent) => Promise<HookOutcome> | HookOutcome;

/** The flow's verdict on text the model wants to say (e.g. no false claim that an SMS arrived). */
export type ModelTextVerdict<F extends FlowTypes> = { allowed: true } | { allowed: false; decision: GuardDecision<ReasonKey<F>>; correction: NoteKey<F> };

/** Checks every action before it leaves; the flow's own policy (the SMS gate). */
export interface ActionGate<F extends FlowTypes = FlowTypes> {
  review(actions: AiFlowAction[], ctx: TurnContext<F>): Promise<{ allowed: AiFlowAction[]; decisions: GuardDecision[] }>;
}

export interface FlowDef<F extends FlowTypes = FlowTypes> {
  name: string;
  initialStep: string;
  steps: StepDef<F>[];
  /** The flow's slice of a new call's state. */
  initialState: () => F["state"];
  /** Every line and note key the flow uses: checked against prompts/ at start-up. */
  lines: readonly LineKey<F>[];
  notes: readonly NoteKey<F>[];
  /** Values for `{placeholders}` in step prompts, computed from state. */
  promptValues: (state: CallState<F["state"]>, services: F["services"]) => Record<string, string>;
  /** Events the flow handles itself (dtmf_received, sms_failed, …). */
  hooks: Partial<Record<AiFlowEvent["type"], EventHook<F>>>;
  /** Steps a hook may move the flow to, by event type (for the diagram; enforced like tool transitions). */
  hookTransitions: Partial<Record<AiFlowEvent["type"], Transition[]>>;
  /**
   * Bookkeeping that must happen for an event whatever the call is doing (also while it hangs
   * up, also after hangup, also for a call no longer known): no speech here.
   */
  observers?: Partial<Record<AiFlowEvent["type"], Observer<F>>>;
  /** The gate every outgoing action passes; without one, actions are only schema-checked. */
  gate?: ActionGate<F>;
  /** The check on the model's text before it is spoken. */
  checkModelText?: (text: string, ctx: TurnContext<F>) => ModelTextVerdict<F>;
  /** Action types a redelivered event never gets again (a second send_sms could double the SMS). */
  neverReplay: readonly AiFlowAction["type"][];
  /**
   * What became of a turn's actions, once known: handed to sipgate (an answer written, a frame
   * sent) or not sent, with the reason, and what an attempt whose result was never committed left
   * once its event is done (see ActionOutcome). The one way a flow hears it (its evidence: the SMS
   * task's sms_handed_over and sms_not_sent). `state`: the call's last state when the outcome is
   * known inside a turn (the call ends with actions never collected): the flow makes it true before
   * its last bookkeeping (a report must not say an SMS was handed over that never was); for
   * `rerun_done`, the call's state after the event. `now`: the engine's clock (epoch ms), for the records' times.
   */
  onOutcome?: (outcome: ActionOutcome, services: F["services"], state: CallState<F["state"]> | undefined, now: number) => Promise<void> | void;
  /** Runs at the end of every turn, after the event was handled (and after the tasks' own). */
  afterTurn?: (ctx: TurnContext<F>) => Promise<void> | void;
  /**
   * A caller event that will never be evaluated (its turn crashed instances too often): it may
   * have been a "no", so a flow that guards a "yes" treats it as one (no speech here).
   */
  onUnevaluated?: (ctx: TurnContext<F>) => Promise<void> | void;
  /**
   * An event runs again after an earlier attempt ended with its instance (a crash mid-turn): what
   * that attempt did outside the call store (a ledger record of an approved send) never took
   * effect, and the flow settles it (the send never left) before the event runs again.
   */
  onRetry?: (ctx: TurnContext<F>) => Promise<void> | void;
  /**
   * A caller event of a call whose state is gone (the store lost it mid-call; no session_start
   * began it): the call starts over, and the flow recovers what must hold for the whole call from
   * outside the store (the SMS task: a "no" or a send already in the ledger ends the offer).
   */
  onStateLost?: (ctx: TurnContext<F>) => Promise<void> | void;
  /**
   * Runs once a turn's new state is committed (fenced by the call's lease), never for a turn whose
   * instance lost the call: side effects outside the call store that must match what is stored
   * (the callback agent's report snapshot). Its errors are logged, never the caller's problem.
   * `seq`: the committed event's place in the call's queue, increasing across instances (orders
   * writes that may arrive late).
   */
  afterCommit?: (state: CallState<F["state"]>, services: F["services"], env: { now: number; log: Logger; seq: number }) => Promise<void>;
  /** Reusable parts this flow includes (their steps, hooks, gate…); `defineFlow` composes them in. */
  tasks?: readonly TaskDef<F>[];
  /**
   * Tools offered in every LLM step, after the step's own (`defineFlow` adds them to each step):
   * for what a caller may say anywhere in the call ("never text me again"). Keep them few.
   */
  flowTools?: readonly ToolDef<F>[];
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
 * What became of actions a turn produced (see FlowDef.onOutcome). `actions`: every action of
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

/** How a task begins for its parameters: at a step (the tool that started it tells the model `note`), or over at once with its result. */
export type TaskEntry<R> = { step: string; note: string } | { result: R; note: string };

/**
 * A reusable part of a flow with a typed result (the SMS consent-and-send task): a step starts it
 * (`next: startTask(task, params)`), the engine keeps it on the call's task stack, runs its steps,
 * and when it finishes (`next: finish(task, result)`) returns to the step that started it and
 * calls that step's `onResult`. Its hooks, observers, gate and checks come with it; `defineFlow`
 * composes them into the flow (see src/engine/tasks.ts).
 */
export interface TaskDef<F extends FlowTypes = FlowTypes, P = unknown, R = unknown> extends TaskRef<P, R> {
  name: string;
  /** Where the task begins for `params` (one of `entrySteps`), or its result at once. */
  start(ctx: TurnContext<F>, params: P): TaskEntry<R>;
  steps: StepDef<F>[];
  /** The step tools enter the task at (drawn in diagrams). */
  entrySteps: readonly string[];
  lines: readonly LineKey<F>[];
  notes: readonly NoteKey<F>[];
  promptValues?: (state: CallState<F["state"]>, services: F["services"]) => Record<string, string>;
  hooks?: Partial<Record<AiFlowEvent["type"], EventHook<F>>>;
  hookTransitions?: Partial<Record<AiFlowEvent["type"], Transition[]>>;
  observers?: Partial<Record<AiFlowEvent["type"], Observer<F>>>;
  gate?: ActionGate<F>;
  checkModelText?: (text: string, ctx: TurnContext<F>) => ModelTextVerdict<F>;
  neverReplay?: readonly AiFlowAction["type"][];
  /** See FlowDef.onOutcome. */
  onOutcome?: (outcome: ActionOutcome, services: F["services"], state: CallState<F["state"]> | undefined, now: number) => Promise<void> | void;
  /** Runs at the end of every turn, after the event was handled (the SMS task: words that overtook a send). */
  afterTurn?: (ctx: TurnContext<F>) => Promise<void> | void;
  /** See FlowDef.onUnevaluated. */
  onUnevaluated?: (ctx: TurnContext<F>) => Promise<void> | void;
  /** See FlowDef.onRetry. */
  onRetry?: (ctx: TurnContext<F>) => Promise<void> | void;
  /** See FlowDef.onStateLost. */
  onStateLost?: (ctx: TurnContext<F>) => Promise<void> | void;
  /** Tools the task offers in every LLM step of the flow that includes it, the host's steps too (see FlowDef.flowTools). */
  flowTools?: readonly ToolDef<F>[];
}

/**
 * A task written against its own types `T`, for a host flow `H` that includes them: `H extends T`
 * says the host's state and services hold the task's, and (as `Keys` is contravariant) that the
 * host's lines, notes and reasons include the task's. That makes every TaskDef<T> a sound
 * TaskDef<H>; TypeScript cannot evaluate a generic `H`'s key sets to see it, so a task factory
 * generic over its host uses this one widening instead of casts of its own.
 */
export function hostTask<T extends FlowTypes, H extends T, P, R>(task: TaskDef<T, P, R>): TaskDef<H, P, R> {
  return task as unknown as TaskDef<H, P, R>;
}

export function defineStep<F extends FlowTypes>() {
  return <S extends StepDef<F>>(step: S): S => step;
}
