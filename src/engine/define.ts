import type { Logger } from "pino";
import type { z } from "zod";
import type { AiFlowAction } from "../aiflow/actions.js";
import type { AiFlowEvent } from "../aiflow/events.js";
import type { CallState } from "../core/callState.js";
import type { GuardDecision } from "../core/turnRecord.js";
import type { EngineReason } from "./keys.js";
import type { RecoveryHooks } from "./recovery.js";
import type { TurnContext } from "./turnContext.js";
import type { StepRules } from "./stepRules.js";
export type { RuleCall, RuleLists, StepRules } from "./stepRules.js";

/**
 * How a flow is declared: steps are data, tools are one declaration each, and everything a
 * flow's policy needs (its slice of state, its services, its gate, its check on model text) it
 * brings itself. The engine that runs it knows no flow.
 *
 * What a flow author writes, in one place: `FlowDef` (name, steps, initial step, state, lines,
 * notes, tasks, tools offered everywhere, hooks), `TaskDef` (the same parts, with a start and a
 * typed result), `FlowHooks` (the optional hooks of either, and the one rule that composes a flow
 * with its tasks). The engine-facing hooks a part that keeps evidence outside the call store
 * needs sit in `FlowHooks.recovery` (src/engine/recovery.ts); what the engine runs is the flat
 * `ComposedFlow` that `defineFlow` builds (src/engine/defineFlow.ts).
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
  /** Clear answers decided by a readable rule, before (and instead of) the model request: see StepRules. */
  rules?: StepRules<F>;
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

/** A guard decision of flow `F`: its reason is one of the engine's or one the flow declares (`FlowTypes.reasons`), never a bare string. */
export type Decision<F extends FlowTypes> = GuardDecision<EngineReason | ReasonKey<F>>;

/** Checks every action before it leaves; the flow's own policy (the SMS gate). */
export interface ActionGate<F extends FlowTypes = FlowTypes> {
  review(actions: AiFlowAction[], ctx: TurnContext<F>): Promise<{ allowed: AiFlowAction[]; decisions: Decision<F>[] }>;
}

/**
 * An event hook, and the steps it may move the flow to (enforced like a tool's transitions, and
 * drawn in the diagram). A hook that only handles the event, or starts or finishes a task, is the
 * bare function.
 */
export type EventHandler<F extends FlowTypes = FlowTypes> = EventHook<F> | { handle: EventHook<F>; transitions: readonly Transition[] };

/**
 * The hooks a flow or a task may bring, all optional, the same set for both. A flow is composed
 * with its tasks by ONE rule (src/engine/defineFlow.ts): the parts run in order, its tasks first
 * (as listed), then the flow itself, and the first part that decides wins: the first event hook
 * that handles an event ends it, the first gate or text check that refuses ends the action or
 * the text, the first part that sets a placeholder sets it. Hooks that decide nothing (observers,
 * afterTurn, afterCommit, the recovery hooks) all run, in that order.
 */
export interface FlowHooks<F extends FlowTypes = FlowTypes> {
  /** Values for `{placeholders}` in step prompts, computed from state. */
  promptValues?: (state: CallState<F["state"]>, services: F["services"]) => Record<string, string>;
  /** Events the flow handles itself (dtmf_received, sms_failed, …); the engine handles the rest generically. */
  on?: Partial<Record<AiFlowEvent["type"], EventHandler<F>>>;
  /**
   * Bookkeeping that must happen for an event whatever the call is doing (also while it hangs
   * up, also after hangup, also for a call no longer known): no speech here.
   */
  observe?: Partial<Record<AiFlowEvent["type"], Observer<F>>>;
  /** The gate every outgoing action passes; without one, actions are only schema-checked. */
  gate?: ActionGate<F>;
  /** The check on the model's text before it is spoken. */
  checkModelText?: (text: string, ctx: TurnContext<F>) => ModelTextVerdict<F>;
  /** Runs at the end of every turn, after the event was handled. */
  afterTurn?: (ctx: TurnContext<F>) => Promise<void> | void;
  /**
   * Runs once a turn's new state is committed (fenced by the call's lease), never for a turn whose
   * instance lost the call: side effects outside the call store that must match what is stored
   * (the callback agent's report snapshot). Its errors are logged, never the caller's problem.
   * `seq`: the committed event's place in the call's queue, increasing across instances (orders
   * writes that may arrive late).
   */
  afterCommit?: (state: CallState<F["state"]>, services: F["services"], env: { now: number; log: Logger; seq: number }) => Promise<void>;
  /**
   * What the engine asks of a part that keeps evidence outside the call store, when a call does not
   * go as written (an answer never sent, a crash, lost state). A flow that keeps no such evidence
   * leaves it out: see src/engine/recovery.ts.
   */
  recovery?: RecoveryHooks<F>;
}

/**
 * A flow: what its author decides. `defineFlow` composes its tasks in (see FlowHooks for the
 * one rule) into the flat flow the engine runs (ComposedFlow).
 */
export interface FlowDef<F extends FlowTypes = FlowTypes> {
  name: string;
  initialStep: string;
  steps: StepDef<F>[];
  /** The flow's slice of a new call's state. */
  initialState: () => F["state"];
  /** Every line and note key the flow uses: checked against prompts/ at start-up. */
  lines: readonly LineKey<F>[];
  notes: readonly NoteKey<F>[];
  /** Reusable parts this flow includes: their steps, tools and hooks come with them. */
  tasks?: readonly TaskDef<F>[];
  /**
   * Tools offered in every LLM step, after the step's own: for what a caller may say anywhere in
   * the call ("never text me again"). Keep them few.
   */
  tools?: readonly ToolDef<F>[];
  hooks?: FlowHooks<F>;
}

/** How a task begins for its parameters: at a step (the tool that started it tells the model `note`), or over at once with its result. */
export type TaskEntry<R> = { step: string; note: string } | { result: R; note: string };

/**
 * A reusable part of a flow with a typed result (the SMS consent-and-send task): a step starts it
 * (`next: startTask(task, params)`), the engine keeps it on the call's task stack, runs its steps,
 * and when it finishes (`next: finish(task, result)`) returns to the step that started it and
 * calls that step's `onResult`. Its tools and hooks come with it; `defineFlow` composes them into
 * the flow (see FlowHooks, and src/engine/tasks.ts).
 */
export interface TaskDef<F extends FlowTypes = FlowTypes, P = unknown, R = unknown> extends TaskRef<P, R> {
  name: string;
  /** Where the task begins for `params` (one of `entrySteps`), or its result at once. */
  start(ctx: TurnContext<F>, params: P): TaskEntry<R>;
  steps: StepDef<F>[];
  /** The steps the task may begin at (drawn in diagrams). */
  entrySteps: readonly string[];
  lines: readonly LineKey<F>[];
  notes: readonly NoteKey<F>[];
  /** Tools the task offers in every LLM step of the flow that includes it, the host's steps too (see FlowDef.tools). */
  tools?: readonly ToolDef<F>[];
  hooks?: FlowHooks<F>;
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
