import { actions } from "../aiflow/actions.js";
import { flowOwnNumber } from "../aiflow/sessionNumbers.js";
import type { ChatModel, ChatRequest, ChatResponse } from "../llm/chatModel.js";
import type { GuardDecision } from "../core/turnRecord.js";
import type { FlowTypes, LlmStep, ModelTextVerdict, ReasonKey, StepDef } from "./define.js";
import type { ComposedFlow } from "./defineFlow.js";
import type { EngineOptions } from "./options.js";
import type { PromptLibrary } from "./promptLibrary.js";
import { StreamedSpeech } from "./streamedSpeech.js";
import type { ToolRunner } from "./toolRunner.js";
import type { Transitions } from "./transitions.js";
import type { Turn } from "./turnContext.js";
import { telemetry } from "../core/telemetry.js";
import { genAiRequest, genAiResponse } from "../llm/genAiAttributes.js";

type Outcome = "done" | "again" | "model_failed" | "cancelled";

/** A prompt split once into text and `{placeholder}` parts, so each turn only joins them. */
type Compiled = Array<string | { key: string; raw: string }>;

function compile(template: string): Compiled {
  return template.split(/(\{[a-z_][a-z0-9_]*\})/).map((part) => (/^\{[a-z_][a-z0-9_]*\}$/.test(part) ? { key: part.slice(1, -1), raw: part } : part));
}

/**
 * The step loop of a caller turn: one model request with the step's own prompt and only its
 * tools, repeated (within `limits.maxLlmRequestsPerTurn`) only when a tool result needs the
 * model's words; speech streamed sentence by sentence when the transport streams.
 */
export class TurnRunner<F extends FlowTypes> {
  private readonly compiled = new Map<string, Compiled>();

  constructor(
    private readonly flow: ComposedFlow<F>,
    private readonly steps: ReadonlyMap<string, StepDef<F>>,
    private readonly services: F["services"],
    private readonly options: EngineOptions,
    private readonly prompts: PromptLibrary,
    private readonly model: ChatModel,
    private readonly tools: ToolRunner<F>,
    private readonly transitions: Transitions<F>,
  ) {}

  async runStep(turn: Turn<F>): Promise<void> {
    if (await this.byRule(turn)) return;
    const cap = this.options.limits.maxLlmRequestsPerTurn;
    for (let i = 0; i < cap; i++) {
      if (turn.signal?.aborted) return;
      const step = this.steps.get(turn.state.step);
      if (!step || step.kind !== "llm") {
        turn.log.error({ sessionId: turn.sessionId, step: turn.state.step }, "current step is not an LLM step");
        break;
      }
      const outcome = await this.oneRequest(turn, step);
      if (outcome === "done" || outcome === "cancelled" || turn.quiet) return;
      if (outcome === "model_failed") {
        this.allModelsFailed(turn);
        return;
      }
    }
    if (turn.speechCount === 0 && !turn.quiet && !turn.signal?.aborted) {
      turn.guard({ subject: "llm", allowed: false, reason: "request_cap_reached", detail: `${cap} requests without an answer` });
      turn.say("fallback");
    }
  }

  /**
   * A clear answer the step's rules decide (see StepRules): their tool call runs as a model's
   * would, and no model is asked when it leaves something said (or nothing to say on purpose).
   */
  private async byRule(turn: Turn<F>): Promise<boolean> {
    const step = this.steps.get(turn.state.step);
    if (step?.kind !== "llm" || !step.rules || turn.signal?.aborted) return false;
    const call = step.rules.decide(turn, this.prompts.ruleLists(step.rules.file));
    if (!call) return false;
    const before = turn.speechCount;
    await this.tools.runRuleCall(turn, step, call);
    return turn.speechCount > before || turn.quiet;
  }

  /** Never silence: an apology, and by config a transfer to a person (sipgate returns the call if nobody answers). */
  private allModelsFailed(turn: Turn<F>): void {
    const policy = this.options.llm.onAllModelsFailed;
    // The flow's own number: on outbound calls the customer is in to_phone_number / phone_number.
    const flowNumber = flowOwnNumber(turn.event.session);
    if (policy.action === "transfer" && policy.transferTo && flowNumber) {
      turn.say("model_unavailable_transfer", {}, { expectAnswer: false });
      turn.emit(actions.transfer(turn.sessionId, { target_phone_number: policy.transferTo, caller_id_name: policy.callerIdName, caller_id_number: flowNumber, timeout: policy.timeoutSeconds }));
      return;
    }
    turn.say("model_unavailable");
  }

  private render(name: string, template: string, values: Record<string, string>): string {
    let c = this.compiled.get(name);
    if (!c) this.compiled.set(name, (c = compile(template)));
    return c.map((p) => (typeof p === "string" ? p : (values[p.key] ?? p.raw))).join("");
  }

  private system(turn: Turn<F>, step: LlmStep<F>): string {
    const values = this.flow.promptValues(turn.state, this.services);
    return [this.render("persona", this.prompts.persona, values), this.render(`step:${step.prompt}`, this.prompts.stepPrompt(step.prompt), values), ...turn.corrections.map((c) => this.render(`correction:${c}`, c, values))].join("\n\n");
  }

  /** One model request for the step; returns whether the turn has its answer. */
  private async oneRequest(turn: Turn<F>, step: LlmStep<F>): Promise<Outcome> {
    const { options, prompts, model } = this;
    const override = options.llm.steps[step.name] ?? {};
    const modelName = override.model ?? options.llm.model;
    const tools = this.tools.specs(step, options.llm.strictTools);
    const request: ChatRequest = {
      model: modelName,
      temperature: override.temperature ?? options.llm.temperature,
      maxTokens: override.maxTokens ?? options.llm.maxTokens,
      system: this.system(turn, step),
      messages: step.context === "step" ? turn.state.history.slice(turn.state.stepHistoryStart ?? 0) : turn.state.history,
      tools,
      step: step.name,
      signal: turn.signal,
    };
    const refuse = (decision: GuardDecision<ReasonKey<F>>, correction: string) => {
      turn.guard(decision);
      turn.corrections.push(prompts.note(correction));
    };
    const check = (text: string): ModelTextVerdict<F> => this.flow.checkModelText?.(text, turn) ?? { allowed: true };
    // Streaming transports speak sentence by sentence while the model is still writing.
    let refused: Extract<ModelTextVerdict<F>, { allowed: false }> | undefined;
    const streamed =
      turn.sink && model.stream
        ? new StreamedSpeech(
            (s): GuardDecision => {
              const v = check(s);
              if (v.allowed) return { subject: "utterance", allowed: true, reason: "ok" };
              refused = v;
              return v.decision;
            },
            (s) => turn.speak(s, { fromModel: true }),
            () => refused && refuse(refused.decision, refused.correction),
          )
        : undefined;
    const t0 = performance.now();
    const toolNames = tools.map((t) => t.name);
    let response: ChatResponse;
    try {
      // The model request's span (GenAI conventions); retries and fallbacks are noted on it by the model wrapper.
      response = await telemetry.span(`chat ${modelName}`, () => genAiRequest(request), async (span) => {
        const r = streamed && model.stream ? await model.stream(request, (d) => streamed.push(d)) : await model.complete(request);
        span.set(() => genAiResponse(r, performance.now() - t0));
        return r;
      }, "client");
      streamed?.finish();
    } catch (e) {
      const ms = performance.now() - t0;
      if (turn.signal?.aborted) {
        // The caller started speaking: keep what they heard, drop the rest of the answer.
        turn.record.llmRequests.push({ step: step.name, model: modelName, tools: toolNames, ms, promptTokens: 0, completionTokens: 0, error: "cancelled by the caller" });
        if (streamed?.text) turn.pushHistory({ role: "assistant", content: `${streamed.text} ${prompts.note("interrupted_mark")}` });
        return "cancelled";
      }
      turn.record.llmRequests.push({ step: step.name, model: modelName, tools: toolNames, ms, promptTokens: 0, completionTokens: 0, error: (e as Error).message });
      turn.log.error({ sessionId: turn.sessionId, step: step.name, err: (e as Error).message }, "model request failed");
      if (streamed?.text) {
        // Part of the answer was already spoken; it stays in the conversation as said.
        turn.pushHistory({ role: "assistant", content: streamed.text });
        return "done";
      }
      return "model_failed";
    }
    turn.modelUsed = response.model;
    turn.record.llmRequests.push({
      step: step.name,
      model: response.model,
      tools: toolNames,
      ms: performance.now() - t0,
      promptTokens: response.usage.promptTokens,
      completionTokens: response.usage.completionTokens,
      callHistoryChars: JSON.stringify(turn.state.history).length,
      answer: { text: response.text, toolCalls: response.toolCalls.map((c) => ({ name: c.name, arguments: c.arguments })) },
    });

    // Ids are derived from the position in history, not random, so recorded model exchanges replay exactly.
    const calls = response.toolCalls.map((c, i) => ({ ...c, id: c.id || `call_${turn.state.history.length}_${i}` }));
    let text: string;
    if (streamed) text = streamed.text;
    else {
      text = response.text.trim();
      if (text) {
        const v = check(text);
        if (!v.allowed) {
          refuse(v.decision, v.correction);
          text = "";
        }
      }
    }
    turn.pushHistory({
      role: "assistant",
      content: text || null,
      ...(calls.length ? { tool_calls: calls.map((c) => ({ id: c.id, type: "function" as const, function: { name: c.name, arguments: c.arguments } })) } : {}),
    });
    if (text && !streamed) turn.speak(text, { fromModel: true });

    if (calls.length === 0) {
      if (!text) return "again";
      await this.transitions.collecting(turn, async () => step.afterModelText?.(turn));
      return "done";
    }

    const speechBefore = turn.speechCount;
    await this.tools.runModelCalls(turn, step, calls);
    return turn.speechCount > speechBefore ? "done" : "again";
  }
}
