import type { AiFlowAction } from "../aiflow/actions.js";
import type { AiFlowEvent } from "../aiflow/events.js";
import { actions } from "../aiflow/actions.js";
import { flowOwnNumber } from "../aiflow/sessionNumbers.js";
import { openingLine } from "../config/disclosure.js";
import type { ChatModel, ModelToolCall } from "../llm/chatModel.js";
import { nullsToUndefined, toolSpec } from "../llm/toolSchema.js";
import { normalizeAiFlowNumber } from "../phone/number.js";
import type { FlowDef, LlmStep, StepDef, ToolDef } from "./define.js";
import { repairToolPairing, trimHistory } from "./history.js";
import { initialCallState, type CallState } from "./state.js";
import { TurnContext, type TurnServices } from "./turnContext.js";
import { emptyTurnRecord, type GuardDecision, type TurnRecord } from "./turnRecord.js";

/** How a streaming transport (WebSocket) takes part in a turn. */
export interface TurnStream {
  /** Receives each spoken line the moment it may leave (model speech sentence by sentence). */
  sink?: (action: AiFlowAction) => void;
  /** Aborted when the caller starts speaking, or the turn lost its lease or was given up: generation stops. */
  signal?: AbortSignal;
  /** Asked before an irreversible step: does this instance still hold the call's lease? */
  stillOwner?: () => Promise<boolean>;
}

/** A turn's result: the record, and what the pipeline commits. */
export interface TurnOutcome {
  record: TurnRecord;
  /** save: the new state; delete: the call ended; keep: state unchanged (nothing happened to it). */
  next: { kind: "save"; state: CallState } | { kind: "delete" } | { kind: "keep" };
}
import { checkModelUtterance } from "../guards/claims.js";
import { StreamedSpeech } from "./streamedSpeech.js";

export interface EngineDeps extends TurnServices {
  flow: FlowDef;
  model: ChatModel;
}

/**
 * Event types where an identical body right after the same body means a redelivery. Not
 * dtmf_received (a caller keys "7" twice for "77") nor user_input_timeout (silence repeats),
 * whose identical repeats are real; a redelivery of those has no side effect to guard.
 */
const REDELIVERY_CHECKED = new Set<AiFlowEvent["type"]>(["session_start", "user_speak", "sms_failed"]);

/** Upper bound on step transitions in one turn, so a mis-wired flow cannot spin forever. */
const MAX_TRANSITIONS_PER_TURN = 10;

/**
 * Runs a flow: one AI Flow event in, the ordered actions (and a record of why) out.
 * Knows steps, tools and the gate, but nothing about SMS: that is all in the flow definition.
 */
export class Engine {
  private readonly steps = new Map<string, StepDef>();
  private readonly transitionsThisTurn = new WeakMap<TurnContext, number>();

  constructor(private readonly deps: EngineDeps) {
    for (const s of deps.flow.steps) this.steps.set(s.name, s);
    // Fail at start-up, not mid-call, when a prompt, tool description or line is missing.
    for (const s of deps.flow.steps) {
      if (s.kind === "llm") {
        deps.prompts.stepPrompt(s.prompt);
        for (const t of s.tools) deps.prompts.toolDescription(t.name);
      }
    }
  }

  get flow(): FlowDef {
    return this.deps.flow;
  }

  /**
   * One event's turn on the call's state as last committed (undefined: no call yet). Knows no
   * store, lock or transport: the call pipeline loads, commits and delivers. Mutates and returns
   * the state; `next` says what to commit.
   */
  async runTurn(current: CallState | undefined, event: AiFlowEvent, eventKey: string = JSON.stringify(event), stream: TurnStream = {}): Promise<TurnOutcome> {
    const started = performance.now();
    const { config, now } = this.deps;
    const sessionId = event.session.id;
    const record = emptyTurnRecord(sessionId, event.type);
    const finish = (next: TurnOutcome["next"]): TurnOutcome => {
      record.timings.totalMs = performance.now() - started;
      record.timings.modelMs = record.llmRequests.reduce((a, r) => a + r.ms, 0);
      record.timings.engineMs = Math.max(0, record.timings.totalMs - record.timings.modelMs);
      return { record, next };
    };

    if (event.type === "session_end") return finish({ kind: "delete" });

    const isNew = !current;
    const state = current ?? this.newState(event);
    record.stepBefore = state.step;
    // Events that cannot start a conversation (a late sms_failed after session_end, speech
    // events of an expired call) get their bookkeeping, but create no call state.
    const startsCall = event.type === "session_start" || event.type === "user_speak" || event.type === "dtmf_received";
    if (isNew && !startsCall) {
      const ctx = this.context(state, event, record, stream);
      await this.collectingEnters(ctx, () => this.observe(ctx, event));
      record.stepAfter = state.step;
      return finish({ kind: "keep" });
    }

    const last = state.lastEvent;
    if (last && REDELIVERY_CHECKED.has(event.type) && last.key === eventKey && now() - last.at <= config.limits.duplicateWindowSeconds * 1000) {
      // A redelivery: answer as before, but a side effect never happens twice.
      record.duplicate = true;
      // A redelivered answer that sent an SMS is not replayed at all: sending again could
      // double the SMS, and replaying only its "sent" line could be false if the first answer was lost.
      const hadSms = last.actions.some((a) => a.type === "send_sms");
      record.actions = hadSms ? [] : last.actions;
      if (hadSms) record.guardDecisions.push({ subject: "send_sms", allowed: false, reason: "duplicate_event", detail: "redelivered event; SMS already handled" });
      record.stepAfter = state.step;
      return finish({ kind: "keep" });
    }

    const ctx = this.context(state, event, record, stream);

    try {
      await this.collectingEnters(ctx, () => this.dispatch(ctx, event, isNew));
    } catch (e) {
      // A bug must not cost the caller the call: keep what was said, repair history, apologize.
      ctx.log.error({ sessionId, step: state.step, err: (e as Error).stack ?? String(e) }, "turn failed");
      ctx.guard({ subject: "turn", allowed: false, reason: "internal_error", detail: (e as Error).message });
      ctx.endToolBatch();
      state.history = repairToolPairing(state.history, this.deps.prompts.note("tool_failed", { tool: "tool" }));
      // After hangup there is nobody to apologize to (a failing sms_failed bookkeeping, say).
      if (!state.ended) ctx.say("fallback");
    }

    const { allowed, decisions } = await this.deps.gate.review(
      ctx.outgoing.filter((a) => !ctx.approved.has(a)),
      ctx,
    );
    record.guardDecisions.push(...decisions);
    const allowedSet = new Set(allowed);
    record.actions = ctx.outgoing.filter((a) => ctx.approved.has(a) || allowedSet.has(a));

    state.lastEvent = { key: eventKey, at: now(), actions: record.actions };
    const before = state.history.length;
    state.history = trimHistory(state.history, config.limits.historyMessages);
    if (state.stepHistoryStart !== undefined) state.stepHistoryStart = Math.max(0, state.stepHistoryStart - (before - state.history.length));
    state.updatedAt = now();
    record.stepAfter = state.step;
    return finish({ kind: "save", state });
  }

  private context(state: CallState, event: AiFlowEvent, record: TurnRecord, stream: TurnStream = {}): TurnContext {
    return new TurnContext(
      state,
      event,
      this.deps,
      record,
      {
        gotoStep: (c, step) => this.enterStep(c, step),
        invokeTool: (c, tool, args) => this.invokeToolFromCode(c, tool, args),
      },
      stream.sink,
      stream.signal,
      stream.stillOwner,
    );
  }

  private async observe(ctx: TurnContext, event: AiFlowEvent): Promise<void> {
    await this.deps.flow.observers?.[event.type]?.(ctx, event);
  }

  private newState(event: AiFlowEvent): CallState {
    const s = event.session;
    const direction = s.direction ?? "inbound";
    // The remote party: the caller on inbound calls, the callee on outbound ones.
    const remote = direction === "outbound" ? s.to_phone_number : s.from_phone_number;
    const t = this.deps.now();
    return initialCallState({
      sessionId: s.id,
      accountId: s.account_id,
      direction,
      callerNumber: normalizeAiFlowNumber(remote),
      language: this.deps.config.language,
      step: this.deps.flow.initialStep,
      createdAt: t,
      updatedAt: t,
    });
  }

  private async dispatch(ctx: TurnContext, event: AiFlowEvent, isNew: boolean): Promise<void> {
    const { state } = ctx;
    await this.observe(ctx, event);
    // After hangup the call is over: bookkeeping (observers) still runs, nothing is said or asked.
    if (state.ended) {
      ctx.log.debug({ sessionId: ctx.sessionId, event: event.type }, "event after hangup ignored");
      return;
    }
    if (state.pendingHangup && event.type !== "assistant_speak" && event.type !== "user_speech_started") {
      // The goodbye was said; whatever comes next (speech ended, silence, speech) ends the call.
      state.pendingHangup = false;
      ctx.hangupNow();
      return;
    }
    const hook = this.deps.flow.hooks[event.type];
    if (hook) {
      ctx.allowedTransitions = { by: `${event.type} hook`, targets: this.deps.flow.hookTransitions[event.type] ?? [] };
      try {
        if (await hook(ctx, event)) return;
      } finally {
        ctx.allowedTransitions = undefined;
      }
    }

    switch (event.type) {
      case "session_start":
        if (isNew) ctx.speak(this.greeting());
        else ctx.say("welcome_back");
        return;
      case "user_speak":
        await this.callerTurn(ctx, event.text, event.barged_in);
        return;
      case "user_input_timeout":
        await this.inputTimeout(ctx);
        return;
      default:
        // assistant_speak, assistant_speech_ended, user_speech_started, dtmf outside a hook: nothing to say.
        return;
    }
  }

  private greeting(): string {
    return openingLine(this.deps.config);
  }

  private async inputTimeout(ctx: TurnContext): Promise<void> {
    const { state, config } = ctx;
    state.inputTimeouts++;
    if (state.inputTimeouts > config.limits.maxInputTimeouts) {
      ctx.goodbye("timeout_goodbye");
      return;
    }
    const step = this.steps.get(state.step);
    if (step?.onTimeout) {
      await step.onTimeout(ctx);
      return;
    }
    // The same question again: still the line the caller is answering.
    ctx.speak(this.deps.prompts.line("timeout_reprompt", { last_line: state.lastLine ?? "" }), { repeat: true });
  }

  /** The caller cut the last line short: tell the model it may not have been heard. */
  private markInterrupted(state: CallState): void {
    const mark = " " + this.deps.prompts.note("interrupted_mark");
    for (let i = state.history.length - 1; i >= 0; i--) {
      const m = state.history[i]!;
      if (m.role === "assistant" && m.content) {
        if (!m.content.endsWith(mark)) m.content += mark;
        return;
      }
      if (m.role === "user") return;
    }
  }

  /** The caller said something: mark an interrupted line, then run the current step. */
  async callerTurn(ctx: TurnContext, text: string, bargedIn: boolean): Promise<void> {
    const { state } = ctx;
    if (bargedIn) this.markInterrupted(state);
    ctx.beginCallerTurn(text);
    await this.runStep(ctx);
  }

  /** Run the current step's LLM request(s) until something is said, within the per-turn cap. */
  async runStep(ctx: TurnContext): Promise<void> {
    await this.runStepRequests(ctx);
  }

  private async runStepRequests(ctx: TurnContext): Promise<void> {
    const { config } = this.deps;
    const cap = config.limits.maxLlmRequestsPerTurn;
    for (let i = 0; i < cap; i++) {
      if (ctx.signal?.aborted) return;
      const step = this.steps.get(ctx.state.step);
      if (!step || step.kind !== "llm") {
        ctx.log.error({ sessionId: ctx.sessionId, step: ctx.state.step }, "current step is not an LLM step");
        break;
      }
      const outcome = await this.oneRequest(ctx, step);
      if (outcome === "done" || outcome === "cancelled") return;
      if (outcome === "model_failed") {
        this.allModelsFailed(ctx);
        return;
      }
    }
    if (ctx.speechCount === 0 && !ctx.signal?.aborted) {
      ctx.guard({ subject: "llm", allowed: false, reason: "request_cap_reached", detail: `${cap} requests without an answer` });
      ctx.say("fallback");
    }
  }

  /** Never silence: an apology, and by config a transfer to a person (sipgate returns the call if nobody answers). */
  private allModelsFailed(ctx: TurnContext): void {
    const policy = this.deps.config.llm.onAllModelsFailed;
    // The flow's own number: on outbound calls the customer is in to_phone_number / phone_number.
    const flowNumber = flowOwnNumber(ctx.event.session);
    if (policy.action === "transfer" && policy.transferTo && flowNumber) {
      ctx.say("model_unavailable_transfer", {}, { expectAnswer: false });
      ctx.emit(
        actions.transfer(ctx.sessionId, { target_phone_number: policy.transferTo, caller_id_name: policy.callerIdName, caller_id_number: flowNumber, timeout: policy.timeoutSeconds }),
      );
      return;
    }
    ctx.say("model_unavailable");
  }

  /** One model request for the step; returns whether the turn has its answer. */
  private async oneRequest(ctx: TurnContext, step: LlmStep): Promise<"done" | "again" | "model_failed" | "cancelled"> {
    const { config, prompts, model } = this.deps;
    const override = config.llm.steps[step.name] ?? {};
    const modelName = override.model ?? config.llm.model;
    const strict = config.llm.strictTools;
    const tools = this.toolSpecs(step, strict);
    const values = { ...this.deps.flow.promptValues(ctx.state, config) };
    const system = [prompts.persona, prompts.stepPrompt(step.prompt), ...ctx.corrections]
      .map((p) => p.replace(/\{([a-z_][a-z0-9_]*)\}/g, (m, k: string) => values[k] ?? m))
      .join("\n\n");
    const request = {
      model: modelName,
      temperature: override.temperature ?? config.llm.temperature,
      maxTokens: override.maxTokens ?? config.llm.maxTokens,
      system,
      messages: step.context === "step" ? ctx.state.history.slice(ctx.state.stepHistoryStart ?? 0) : ctx.state.history,
      tools,
      signal: ctx.signal,
    };
    const refuse = (verdict: GuardDecision) => {
      ctx.guard(verdict);
      ctx.corrections.push(prompts.note(verdict.reason));
    };
    // Streaming transports speak sentence by sentence while the model is still writing.
    const streamed =
      ctx.sink && model.stream
        ? new StreamedSpeech((s) => checkModelUtterance(s, ctx.state, ctx.state.language), (s) => ctx.speak(s, { fromModel: true }), refuse)
        : undefined;
    const t0 = performance.now();
    let response;
    try {
      response = streamed && model.stream ? await model.stream(request, (d) => streamed.push(d)) : await model.complete(request);
      streamed?.finish();
    } catch (e) {
      const ms = performance.now() - t0;
      if (ctx.signal?.aborted) {
        // The caller started speaking: keep what they heard, drop the rest of the answer.
        ctx.record.llmRequests.push({ step: step.name, model: modelName, tools: tools.map((t) => t.name), ms, promptTokens: 0, completionTokens: 0, error: "cancelled by the caller" });
        if (streamed?.text) ctx.pushHistory({ role: "assistant", content: `${streamed.text} ${prompts.note("interrupted_mark")}` });
        return "cancelled";
      }
      ctx.record.llmRequests.push({ step: step.name, model: modelName, tools: tools.map((t) => t.name), ms, promptTokens: 0, completionTokens: 0, error: (e as Error).message });
      ctx.log.error({ sessionId: ctx.sessionId, step: step.name, err: (e as Error).message }, "model request failed");
      if (streamed?.text) {
        // Part of the answer was already spoken; it stays in the conversation as said.
        ctx.pushHistory({ role: "assistant", content: streamed.text });
        return "done";
      }
      return "model_failed";
    }
    ctx.modelUsed = response.model;
    ctx.record.llmRequests.push({
      step: step.name,
      model: response.model,
      tools: tools.map((t) => t.name),
      ms: performance.now() - t0,
      promptTokens: response.usage.promptTokens,
      completionTokens: response.usage.completionTokens,
      callHistoryChars: JSON.stringify(ctx.state.history).length,
    });

    // Ids are derived from the position in history, not random, so recorded model exchanges replay exactly.
    const calls = response.toolCalls.map((c, i) => ({ ...c, id: c.id || `call_${ctx.state.history.length}_${i}` }));
    let text: string;
    if (streamed) text = streamed.text;
    else {
      text = response.text.trim();
      if (text) {
        const verdict = checkModelUtterance(text, ctx.state, ctx.state.language);
        if (!verdict.allowed) {
          refuse(verdict);
          text = "";
        }
      }
    }
    ctx.pushHistory({
      role: "assistant",
      content: text || null,
      ...(calls.length ? { tool_calls: calls.map((c) => ({ id: c.id, type: "function" as const, function: { name: c.name, arguments: c.arguments } })) } : {}),
    });
    if (text && !streamed) ctx.speak(text, { fromModel: true });

    if (calls.length === 0) {
      if (!text) return "again";
      await this.collectingEnters(ctx, async () => step.afterModelText?.(ctx));
      return "done";
    }

    const speechBefore = ctx.speechCount;
    await this.runToolBatch(ctx, step, calls);
    return ctx.speechCount > speechBefore ? "done" : "again";
  }

  /** Execute a batch of tool calls; every call gets a result message, whatever happens. */
  private async runToolBatch(ctx: TurnContext, step: LlmStep, calls: ModelToolCall[]): Promise<void> {
    await this.collectingEnters(ctx, () => this.runToolCalls(ctx, step, calls));
  }

  private async runToolCalls(ctx: TurnContext, step: LlmStep, calls: ModelToolCall[]): Promise<void> {
    ctx.beginToolBatch();
    let movedTo: string | undefined;
    try {
      for (const call of calls) {
        let result: string;
        let ok = false;
        let parsedArgs: unknown = call.arguments;
        if (movedTo !== undefined && !this.isWithdrawal(step, call)) {
          result = ctx.note("tool_skipped_after_transition", { tool: call.name, step: movedTo });
          ctx.guard({ subject: call.name, allowed: false, reason: "batched_after_transition", detail: `flow moved to ${movedTo}` });
        } else {
          const r = await this.executeModelToolCall(ctx, step, call);
          result = r.result;
          ok = r.ok;
          parsedArgs = r.args;
          if (ctx.transitioned) movedTo = ctx.state.step;
        }
        ctx.record.toolCalls.push({ name: call.name, arguments: parsedArgs, ok, result, origin: "model" });
        ctx.pushHistory({ role: "tool", tool_call_id: call.id, content: result });
      }
    } finally {
      ctx.endToolBatch();
    }
  }

  /** A well-formed call, offered in this step, of a tool that declares it takes something back. */
  private isWithdrawal(step: LlmStep, call: ModelToolCall): boolean {
    const tool = step.tools.find((t) => t.name === call.name);
    if (!tool?.withdraws) return false;
    let raw: unknown;
    try {
      raw = call.arguments.trim() === "" ? {} : JSON.parse(call.arguments);
    } catch {
      return false;
    }
    const parsed = tool.parameters(this.deps.config).safeParse(nullsToUndefined(raw));
    return parsed.success && tool.withdraws(parsed.data);
  }

  private async executeModelToolCall(
    ctx: TurnContext,
    step: LlmStep,
    call: ModelToolCall,
  ): Promise<{ ok: boolean; result: string; args: unknown }> {
    const tool = step.tools.find((t) => t.name === call.name);
    if (!tool) {
      const exists = this.deps.flow.steps.some((s) => s.tools.some((t) => t.name === call.name));
      const reason = exists ? "tool_not_offered" : "unknown_tool";
      ctx.guard({ subject: call.name, allowed: false, reason, detail: `step ${step.name}` });
      return { ok: false, result: ctx.note(reason, { tool: call.name, tools: step.tools.map((t) => t.name).join(", ") || "none" }), args: call.arguments };
    }
    let raw: unknown;
    try {
      raw = call.arguments.trim() === "" ? {} : JSON.parse(call.arguments);
    } catch {
      ctx.guard({ subject: call.name, allowed: false, reason: "invalid_json" });
      return { ok: false, result: ctx.note("invalid_json", { tool: call.name }), args: call.arguments };
    }
    const parsed = tool.parameters(this.deps.config).safeParse(nullsToUndefined(raw));
    if (!parsed.success) {
      const problems = parsed.error.issues.map((i) => `${i.path.join(".") || "arguments"}: ${i.message}`).join("; ");
      ctx.guard({ subject: call.name, allowed: false, reason: "invalid_arguments", detail: problems });
      return { ok: false, result: ctx.note("invalid_arguments", { tool: call.name, problems }), args: raw };
    }
    return this.executeTool(ctx, tool, parsed.data, raw);
  }

  private async executeTool(ctx: TurnContext, tool: ToolDef, args: Record<string, unknown>, rawArgs: unknown) {
    const outer = ctx.allowedTransitions;
    ctx.allowedTransitions = { by: `tool ${tool.name}`, targets: tool.transitions };
    try {
      const result = await tool.execute(ctx, args);
      return { ok: true, result, args: rawArgs };
    } catch (e) {
      ctx.log.error({ sessionId: ctx.sessionId, tool: tool.name, err: (e as Error).message }, "tool failed");
      return { ok: false, result: ctx.note("tool_failed", { tool: tool.name }), args: rawArgs };
    } finally {
      ctx.allowedTransitions = outer;
    }
  }

  /** Tool JSON schemas depend only on config, which does not change: derive them once per step. */
  private readonly specCache = new Map<string, ReturnType<typeof toolSpec>[]>();
  private toolSpecs(step: LlmStep, strict: boolean): ReturnType<typeof toolSpec>[] {
    const key = `${step.name}:${strict}`;
    let specs = this.specCache.get(key);
    if (!specs) {
      const { prompts, config } = this.deps;
      specs = step.tools.map((t) => toolSpec(t.name, prompts.toolDescription(t.name), t.parameters(config), strict));
      this.specCache.set(key, specs);
    }
    return specs;
  }

  /** Steps entered while code runs; their onEnter / code runs once that code is done. */
  private readonly pendingEnters = new WeakMap<TurnContext, string[]>();

  /** Change step now; the new step's onEnter / code runs after the current tool batch or hook. */
  private enterStep(ctx: TurnContext, stepName: string): void {
    if (!this.steps.has(stepName)) throw new Error(`flow ${this.deps.flow.name} has no step ${stepName}`);
    ctx.state.step = stepName;
    const pending = this.pendingEnters.get(ctx);
    if (!pending) throw new Error("gotoStep called outside engine-run code");
    pending.push(stepName);
  }

  /** Run `work` collecting the step changes it makes, then enter them (each scope enters its own). */
  private async collectingEnters<T>(ctx: TurnContext, work: () => Promise<T>): Promise<T> {
    const outer = this.pendingEnters.get(ctx);
    const pending: string[] = [];
    this.pendingEnters.set(ctx, pending);
    let result: T;
    try {
      result = await work();
    } finally {
      if (outer) this.pendingEnters.set(ctx, outer);
      else this.pendingEnters.delete(ctx);
    }
    for (const s of pending) await this.runEnter(ctx, s);
    return result;
  }

  private async runEnter(ctx: TurnContext, stepName: string): Promise<void> {
    // A later transition in the same batch wins; only the step we are in gets entered.
    if (ctx.state.step !== stepName) return;
    const n = (this.transitionsThisTurn.get(ctx) ?? 0) + 1;
    this.transitionsThisTurn.set(ctx, n);
    if (n > MAX_TRANSITIONS_PER_TURN) throw new Error(`more than ${MAX_TRANSITIONS_PER_TURN} step transitions in one turn`);
    const step = this.steps.get(stepName)!;
    ctx.record.stepsEntered.push(stepName);
    ctx.state.stepHistoryStart = ctx.state.history.length;
    // Keys pressed in an earlier step never prefix a number keyed in this one.
    ctx.state.dtmf = "";
    await this.collectingEnters(ctx, async () => {
      await step.onEnter?.(ctx);
      if (step.kind === "code") await step.run(ctx);
    });
  }

  /** A tool run by code (code steps, hooks) appears in history as a call/result pair like a model's. */
  private async invokeToolFromCode(ctx: TurnContext, tool: ToolDef, args: Record<string, unknown>): Promise<string> {
    const id = `code_${ctx.state.history.length}`;
    ctx.pushHistory({ role: "assistant", content: null, tool_calls: [{ id, type: "function", function: { name: tool.name, arguments: JSON.stringify(args) } }] });
    return this.collectingEnters(ctx, async () => {
      ctx.beginToolBatch();
      try {
        const r = await this.executeTool(ctx, tool, args, args);
        ctx.record.toolCalls.push({ name: tool.name, arguments: args, ok: r.ok, result: r.result, origin: "code" });
        ctx.pushHistory({ role: "tool", tool_call_id: id, content: r.result });
        return r.result;
      } finally {
        ctx.endToolBatch();
      }
    });
  }
}
