import type { FlowTypes, LlmStep, RuleCall, ToolDef, ToolOutcome } from "./define.js";
import type { ComposedFlow } from "./defineFlow.js";
import type { ToolCallRecord } from "../core/turnRecord.js";
import type { ModelToolCall, ToolSpec } from "../llm/chatModel.js";
import { nullsToUndefined, toolSpec } from "../llm/toolSchema.js";
import { FlowDefinitionError, ToolFailure } from "./errors.js";
import type { PromptLibrary } from "./promptLibrary.js";
import type { Transitions } from "./transitions.js";
import type { Turn } from "./turnContext.js";
import { telemetry } from "../core/telemetry.js";

/**
 * Runs tool calls, the model's and code's. Every call gets exactly one result message, whatever
 * happens (not offered here, unknown, broken JSON, invalid arguments, skipped after a transition,
 * failed): the model always gets something it can recover from.
 */
export class ToolRunner<F extends FlowTypes> {
  /** Tool JSON schemas depend only on the flow's services, which do not change: derived once per step. */
  private readonly specCache = new Map<string, ToolSpec[]>();

  constructor(
    private readonly flow: ComposedFlow<F>,
    private readonly services: F["services"],
    private readonly prompts: PromptLibrary,
    private readonly transitions: Transitions<F>,
  ) {}

  specs(step: LlmStep<F>, strict: boolean): ToolSpec[] {
    const key = `${step.name}:${strict}`;
    let specs = this.specCache.get(key);
    if (!specs) {
      specs = step.tools.map((t) => toolSpec(t.name, this.prompts.toolDescription(t.name), t.parameters(this.services), strict));
      this.specCache.set(key, specs);
    }
    return specs;
  }

  /** The model's tool calls of one response; a call after one that moved the flow is skipped, unless it takes something back. */
  async runModelCalls(turn: Turn<F>, step: LlmStep<F>, calls: ModelToolCall[]): Promise<void> {
    await this.transitions.collecting(turn, async () => {
      turn.beginToolBatch();
      let movedTo: string | undefined;
      try {
        for (const call of calls) {
          let result: string;
          let ok = false;
          let args: unknown = call.arguments;
          if (movedTo !== undefined && !this.isWithdrawal(step, call)) {
            result = turn.note("tool_skipped_after_transition", { tool: call.name, step: movedTo });
            turn.guard({ subject: call.name, allowed: false, reason: "batched_after_transition", detail: `flow moved to ${movedTo}` });
          } else {
            const before = turn.state.step;
            const enteredBefore = turn.enterScopes.at(-1)?.length ?? 0;
            const r = await this.traced(turn, call.name, "model", () => this.executeModelCall(turn, step, call));
            result = r.result;
            ok = r.ok;
            args = r.args;
            if ((turn.enterScopes.at(-1)?.length ?? 0) > enteredBefore || turn.state.step !== before) movedTo = turn.state.step;
          }
          turn.record.toolCalls.push({ name: call.name, arguments: args, ok, result, origin: "model" });
          turn.pushHistory({ role: "tool", tool_call_id: call.id, content: result });
        }
      } finally {
        turn.endToolBatch();
      }
    });
  }

  /**
   * The call a step's rule decided on (see StepRules): in history as a call/result pair like a
   * model's, and run exactly as a model's call is (offered in the step, arguments parsed by the
   * tool's schema, its guards, its transition). While it runs, `decidedBy` names the rule.
   */
  async runRuleCall(turn: Turn<F>, step: LlmStep<F>, call: RuleCall<F>): Promise<void> {
    const id = `rule_${turn.state.history.length}`;
    const modelCall = { id, name: call.tool.name, arguments: JSON.stringify(call.args) };
    turn.pushHistory({ role: "assistant", content: null, tool_calls: [{ id, type: "function", function: { name: modelCall.name, arguments: modelCall.arguments } }] });
    await this.transitions.collecting(turn, async () => {
      turn.beginToolBatch();
      turn.decidedBy = call.rule;
      try {
        const r = await this.traced(turn, call.tool.name, "rule", () => this.executeModelCall(turn, step, modelCall));
        turn.record.toolCalls.push({ name: call.tool.name, arguments: r.args, ok: r.ok, result: r.result, origin: "rule", rule: call.rule });
        turn.pushHistory({ role: "tool", tool_call_id: id, content: r.result });
      } finally {
        turn.decidedBy = undefined;
        turn.endToolBatch();
      }
    });
  }

  /** A tool run by code (code steps, hooks): recorded in history as a call/result pair like a model's. */
  async runFromCode(turn: Turn<F>, tool: ToolDef<F>, args: Record<string, unknown>): Promise<string> {
    const id = `code_${turn.state.history.length}`;
    turn.pushHistory({ role: "assistant", content: null, tool_calls: [{ id, type: "function", function: { name: tool.name, arguments: JSON.stringify(args) } }] });
    return this.transitions.collecting(turn, async () => {
      turn.beginToolBatch();
      try {
        const r = await this.traced(turn, tool.name, "code", () => this.execute(turn, tool, args, args));
        turn.record.toolCalls.push({ name: tool.name, arguments: args, ok: r.ok, result: r.result, origin: "code" });
        turn.pushHistory({ role: "tool", tool_call_id: id, content: r.result });
        return r.result;
      } finally {
        turn.endToolBatch();
      }
    });
  }

  /** A tool call's span (GenAI execute_tool): its outcome and the guard's reason when refused; never its arguments or result (numbers, words). */
  private traced(turn: Turn<F>, name: string, origin: ToolCallRecord["origin"], run: () => Promise<{ ok: boolean; result: string; args: unknown }>) {
    const guardsBefore = turn.record.guardDecisions.length;
    return telemetry.span(`execute_tool ${name}`, () => ({ "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name, "aiflow.tool.origin": origin }), async (span) => {
      const r = await run();
      const refused = turn.record.guardDecisions.slice(guardsBefore).find((d) => !d.allowed);
      span.set(() => ({ "aiflow.tool.outcome": r.ok ? "ok" : refused ? "refused" : "failed", "aiflow.guard.reason": refused?.reason }));
      return r;
    });
  }

  /** A well-formed call, offered in this step, of a tool that declares it takes something back. */
  private isWithdrawal(step: LlmStep<F>, call: ModelToolCall): boolean {
    const tool = step.tools.find((t) => t.name === call.name);
    if (!tool?.withdraws) return false;
    const parsed = this.parse(tool, call.arguments);
    return parsed.kind === "ok" && tool.withdraws(parsed.args);
  }

  private parse(tool: ToolDef<F>, text: string): { kind: "ok"; args: Record<string, unknown>; raw: unknown } | { kind: "invalid_json" } | { kind: "invalid_arguments"; problems: string; raw: unknown } {
    let raw: unknown;
    try {
      raw = text.trim() === "" ? {} : JSON.parse(text);
    } catch {
      return { kind: "invalid_json" };
    }
    const parsed = tool.parameters(this.services).safeParse(nullsToUndefined(raw));
    if (!parsed.success) return { kind: "invalid_arguments", raw, problems: parsed.error.issues.map((i) => `${i.path.join(".") || "arguments"}: ${i.message}`).join("; ") };
    return { kind: "ok", args: parsed.data, raw };
  }

  private async executeModelCall(turn: Turn<F>, step: LlmStep<F>, call: ModelToolCall): Promise<{ ok: boolean; result: string; args: unknown }> {
    const tool = step.tools.find((t) => t.name === call.name);
    if (!tool) {
      const exists = this.flow.steps.some((s) => s.tools.some((t) => t.name === call.name));
      const reason = exists ? "tool_not_offered" : "unknown_tool";
      turn.guard({ subject: call.name, allowed: false, reason, detail: `step ${step.name}` });
      return { ok: false, result: turn.note(reason, { tool: call.name, tools: step.tools.map((t) => t.name).join(", ") || "none" }), args: call.arguments };
    }
    const parsed = this.parse(tool, call.arguments);
    if (parsed.kind === "invalid_json") {
      turn.guard({ subject: call.name, allowed: false, reason: "invalid_json" });
      return { ok: false, result: turn.note("invalid_json", { tool: call.name }), args: call.arguments };
    }
    if (parsed.kind === "invalid_arguments") {
      turn.guard({ subject: call.name, allowed: false, reason: "invalid_arguments", detail: parsed.problems });
      return { ok: false, result: turn.note("invalid_arguments", { tool: call.name, problems: parsed.problems }), args: parsed.raw };
    }
    return this.execute(turn, tool, parsed.args, parsed.raw);
  }

  /** Run the tool; apply the transition it returns. A tool that throws is a ToolFailure the model hears about. */
  private async execute(turn: Turn<F>, tool: ToolDef<F>, args: Record<string, unknown>, rawArgs: unknown): Promise<{ ok: boolean; result: string; args: unknown }> {
    let outcome: ToolOutcome;
    try {
      outcome = await tool.execute(turn, args);
    } catch (e) {
      if (e instanceof FlowDefinitionError) throw e;
      const failure = new ToolFailure(tool.name, e);
      turn.log.error({ sessionId: turn.sessionId, tool: tool.name, err: failure.message }, "tool failed");
      return { ok: false, result: turn.note("tool_failed", { tool: tool.name }), args: rawArgs };
    }
    const { result, next } = typeof outcome === "string" ? { result: outcome, next: undefined } : outcome;
    // A "no" must outlive a given-up answer: the pipeline commits such a turn whatever happens.
    if (tool.withdraws?.(args)) turn.record.withdrawal = true;
    // A task started here tells the model how it began (its own note), after the tool's.
    const started = next === undefined ? undefined : await this.transitions.apply(turn, { label: `tool ${tool.name}`, declared: tool.transitions }, next);
    return { ok: true, result: [result, started].filter((r) => r).join("\n"), args: rawArgs };
  }
}
