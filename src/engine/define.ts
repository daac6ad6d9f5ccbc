import type { z } from "zod";
import type { AiFlowEvent } from "../aiflow/events.js";
import type { AppConfig } from "../config/schema.js";
import type { CallState } from "./state.js";
import type { TurnContext } from "./turnContext.js";

/**
 * A tool: one declaration with a zod argument schema and an implementation. Its JSON
 * schema is derived from `parameters`; its description lives in prompts/tools.md.
 * `parameters` may depend on config (e.g. the SMS slots the model may choose from).
 */
export interface ToolDef<P extends z.ZodRawShape = z.ZodRawShape> {
  name: string;
  /**
   * Steps this tool may move the flow to; "exit" is exit_flow (back to the step that entered
   * the sub-flow). The engine refuses any other transition, so the flow diagram drawn from
   * these declarations cannot drift from what the code does.
   */
  transitions: string[];
  parameters: (config: AppConfig) => z.ZodObject<P>;
  /**
   * True for a call that only takes something back (the caller's "no"). Such a call runs even
   * after an earlier call in the same batch moved the flow: skipping it, as other calls are,
   * could turn a "no" into a later "yes".
   */
  withdraws?: (args: z.infer<z.ZodObject<P>>) => boolean;
  /** Returns the text the model sees as the tool result. */
  execute(ctx: TurnContext, args: z.infer<z.ZodObject<P>>): Promise<string> | string;
}

export function defineTool<P extends z.ZodRawShape>(tool: ToolDef<P>): ToolDef {
  return tool as unknown as ToolDef;
}

interface StepBase {
  name: string;
  /** Spoken or done when the step is entered: a fixed line, no LLM round trip. */
  onEnter?: (ctx: TurnContext) => Promise<void> | void;
  /** Replaces the generic "are you still there?" re-prompt after silence in this step. */
  onTimeout?: (ctx: TurnContext) => Promise<void> | void;
}

/** A step answered by one LLM request with the step's own prompt and only its tools. */
export interface LlmStep extends StepBase {
  kind: "llm";
  /** File name (without .md) under prompts/<language>/. */
  prompt: string;
  tools: ToolDef[];
  /**
   * What history the step's request carries: the whole call ("call", default), or only what
   * was said since the step was entered ("step": a consent question and its answer need no more,
   * and a short prompt is faster and cheaper).
   */
  context?: "call" | "step";
  /** Runs after the model answered with text only (no tool call), e.g. to repeat a fixed question. */
  afterModelText?: (ctx: TurnContext) => Promise<void> | void;
}

/** A step that runs code only, with no LLM request (e.g. the send itself). */
export interface CodeStep extends StepBase {
  kind: "code";
  /** The tools `run` invokes (for diagrams and for telling "not offered here" from "no such tool"). */
  tools: ToolDef[];
  run: (ctx: TurnContext) => Promise<void> | void;
}

export type StepDef = LlmStep | CodeStep;

export function defineStep<S extends StepDef>(step: S): S {
  return step;
}

/** Flow-specific reaction to an event the engine does not handle generically. Returns true if handled. */
export type EventHook = (ctx: TurnContext, event: AiFlowEvent) => Promise<boolean> | boolean;

export interface FlowDef {
  name: string;
  initialStep: string;
  steps: StepDef[];
  /** Values for `{placeholders}` in step prompts, computed from state. */
  promptValues: (state: CallState, config: AppConfig) => Record<string, string>;
  /** Events the flow handles itself (dtmf_received, sms_failed, …). */
  hooks: Partial<Record<AiFlowEvent["type"], EventHook>>;
  /** Steps a hook may move the flow to, by event type (for the diagram; enforced like tool transitions). */
  hookTransitions: Partial<Record<AiFlowEvent["type"], string[]>>;
  /**
   * Bookkeeping that must happen for an event whatever the call is doing (also while it
   * hangs up, also for a call no longer known): no speech here. Return values are ignored.
   */
  observers?: Partial<Record<AiFlowEvent["type"], EventHook>>;
}

export function defineFlow(flow: FlowDef): FlowDef {
  const names = new Set<string>();
  for (const s of flow.steps) {
    if (names.has(s.name)) throw new Error(`flow ${flow.name}: duplicate step name ${s.name}`);
    names.add(s.name);
  }
  if (!names.has(flow.initialStep)) throw new Error(`flow ${flow.name}: initial step ${flow.initialStep} is not defined`);
  const targets = [...flow.steps.flatMap((s) => s.tools.flatMap((t) => t.transitions)), ...Object.values(flow.hookTransitions).flat()];
  for (const t of targets) if (t !== "exit" && !names.has(t!)) throw new Error(`flow ${flow.name}: a transition names unknown step ${t}`);
  return flow;
}
