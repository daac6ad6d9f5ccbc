import type { Logger } from "pino";
import { checkAction, type AiFlowAction } from "../aiflow/actions.js";
import type { AiFlowEvent } from "../aiflow/events.js";
import { REDELIVERY_CHECKED, STARTS_CALL } from "../aiflow/eventKinds.js";
import { remotePartyNumber } from "../aiflow/sessionNumbers.js";
import { initialCallCore, type CallState } from "../core/callState.js";
import { emptyTurnRecord, type TurnRecord } from "../core/turnRecord.js";
import type { ChatModel } from "../llm/chatModel.js";
import type { Decision, FlowTypes, StepDef, ToolDef } from "./define.js";
import type { ComposedFlow } from "./defineFlow.js";
import type { ActionOutcome, OutcomeEntry } from "./recovery.js";
import { FlowDefinitionError } from "./errors.js";
import { EventRouter } from "./eventRouter.js";
import { repairToolPairing, trimHistory } from "./history.js";
import { ENGINE_LINES, ENGINE_NOTES } from "./keys.js";
import type { EngineOptions } from "./options.js";
import type { PromptLibrary } from "./promptLibrary.js";
import { ToolRunner } from "./toolRunner.js";
import { Transitions } from "./transitions.js";
import { Turn } from "./turnContext.js";
import { TurnRunner } from "./turnRunner.js";
import { telemetry } from "../core/telemetry.js";

/** How a streaming transport (WebSocket) takes part in a turn. */
export interface TurnStream {
  /** Receives each spoken line the moment it may leave (model speech sentence by sentence). */
  sink?: (action: AiFlowAction) => void;
  /** Aborted when the caller starts speaking, or the turn lost its lease or was given up: generation stops. */
  signal?: AbortSignal;
  /** Asked before an irreversible step: does this instance still hold the call's lease? */
  stillOwner?: () => Promise<boolean>;
  /** session_end: committed actions that were still waiting to be collected and now never leave, by the event that produced them. */
  undelivered?: OutcomeEntry[];
  /** How many of the call's lines the caller had heard when this event arrived (undefined: all of them). */
  heard?: number;
  /** The heard mark at the latest barge-in before this event: lines through it may have been cut short. */
  barged?: number;
  /** How often a lease holder took this event up (more than 1: an earlier attempt ended with its instance). */
  attempt?: number;
  /** The event's position in the call's queue (its outbox entry has the same): the turn's evidence is named by it. */
  seq?: number;
  /** Earlier turns' sends this event overtook (not delivered yet): they leave only if this turn does not take them back. */
  pendingSends?: ReadonlyArray<{ seq: number; actions: AiFlowAction[] }>;
}

/** A turn's result: the record, and what the pipeline commits. */
export interface TurnOutcome<S extends object = object> {
  record: TurnRecord;
  /** Seqs of pending entries the turn took back (the caller's "no" overtook their send): never delivered. */
  withdrawn?: number[];
  /** save: the new state; delete: the call ended; keep: state unchanged (nothing happened to it). */
  next: { kind: "save"; state: CallState<S> } | { kind: "delete" } | { kind: "keep" };
}

export interface EngineDeps<F extends FlowTypes> {
  flow: ComposedFlow<F>;
  /** The flow's services: config, ledger, limits… whatever its tools and gate use. */
  services: F["services"];
  options: EngineOptions;
  prompts: PromptLibrary;
  model: ChatModel;
  log: Logger;
  now: () => number;
}



/**
 * Runs a flow: one AI Flow event and the call's state in, the ordered actions (and a record of
 * why) out. Knows steps, tools, transitions and that a flow may bring a gate, but no flow: all
 * policy comes with the flow definition. No store, no transport: the call pipeline loads,
 * commits and delivers.
 */
export class Engine<F extends FlowTypes = FlowTypes> {
  private readonly steps = new Map<string, StepDef<F>>();
  private readonly transitions: Transitions<F>;
  private readonly tools: ToolRunner<F>;
  private readonly runner: TurnRunner<F>;
  private readonly router: EventRouter<F>;

  constructor(private readonly deps: EngineDeps<F>) {
    const { flow, prompts } = deps;
    for (const s of flow.steps) this.steps.set(s.name, s);
    this.checkPrompts();
    this.transitions = new Transitions(flow, this.steps);
    this.tools = new ToolRunner(flow, deps.services, prompts, this.transitions);
    this.runner = new TurnRunner(flow, this.steps, deps.services, deps.options, prompts, deps.model, this.tools, this.transitions);
    this.router = new EventRouter(flow, this.steps, deps.options, this.runner, this.transitions);
  }

  get flow(): ComposedFlow<F> {
    return this.deps.flow;
  }

  /** Fail at start-up, not mid-call, when a prompt, tool description, line or note is missing. */
  private checkPrompts(): void {
    const { flow, prompts } = this.deps;
    const missing: string[] = [];
    const attempt = (what: string, f: () => unknown) => {
      try {
        f();
      } catch (e) {
        missing.push(`${what}: ${(e as Error).message}`);
      }
    };
    for (const s of flow.steps) {
      if (s.kind === "llm") attempt(`step ${s.name}`, () => prompts.stepPrompt(s.prompt));
      const rules = s.kind === "llm" ? s.rules : undefined;
      // The lists are read (and so checked for form) whether or not the step checks their content.
      if (rules) attempt(`rules of step ${s.name}`, () => rules.check?.(prompts.ruleLists(rules.file)) ?? prompts.ruleLists(rules.file));
      for (const t of s.tools) attempt(`tool ${t.name}`, () => prompts.toolDescription(t.name));
    }
    for (const key of [...ENGINE_LINES, ...flow.lines]) if (!prompts.hasLine(key)) missing.push(`line ${key}: no lines.md of prompts/${prompts.language}/ (shared, or a task's or agent's folder) has a section "## ${key}"`);
    for (const key of [...ENGINE_NOTES, ...flow.notes]) if (!prompts.hasNote(key)) missing.push(`note ${key}: prompts/model-notes.md has no section "## ${key}"`);
    if (missing.length) throw new FlowDefinitionError(`flow ${flow.name} cannot run:\n  ${missing.join("\n  ")}`);
  }

  /**
   * One event's turn on the call's state as last committed (undefined: no call yet). Mutates
   * and returns the state; `next` says what to commit.
   */
  async runTurn(current: CallState<F["state"]> | undefined, event: AiFlowEvent, eventKey: string = JSON.stringify(event), stream: TurnStream = {}): Promise<TurnOutcome<F["state"]>> {
    const started = performance.now();
    const { options, now } = this.deps;
    const sessionId = event.session.id;
    const record = emptyTurnRecord(sessionId, event.type);
    let turnOf: Turn<F> | undefined;
    const finish = (next: TurnOutcome<F["state"]>["next"]): TurnOutcome<F["state"]> => {
      record.timings.totalMs = performance.now() - started;
      record.timings.modelMs = record.llmRequests.reduce((a, r) => a + r.ms, 0);
      record.timings.engineMs = Math.max(0, record.timings.totalMs - record.timings.modelMs);
      const withdrawn = turnOf?.withdrawnSeqs;
      return { record, next, ...(withdrawn?.length ? { withdrawn } : {}) };
    };

    if (event.type === "session_end") {
      // The step the call ended in (logs, the chat): its state goes with this event.
      record.stepBefore = record.stepAfter = current?.step ?? "";
      // What never got collected never leaves: the flow hears it (with the last state, to make it true).
      const undelivered = stream.undelivered?.filter((e) => e.actions.length) ?? [];
      if (undelivered.length) await this.outcome({ status: "not_sent", callId: sessionId, actions: undelivered.flatMap((e) => e.actions), entries: undelivered, reason: "call_ended" }, current);
      // The call is over: its bookkeeping (a flow's after-call report, say) still runs on the last state.
      if (current) {
        const turn = this.turn(current, event, record, stream);
        await this.router.observe(turn, event).catch((e: Error) => turn.log.error({ sessionId, err: e.stack ?? e.message }, "session_end observer failed"));
      }
      return finish({ kind: "delete" });
    }

    const isNew = !current;
    const state = current ?? this.newState(event);
    record.stepBefore = state.step;
    const turn = this.turn(state, event, record, stream);
    turnOf = turn;
    if ((stream.attempt ?? 1) > 1 && !isNew) await this.retried(turn);
    if (isNew && event.type !== "session_start" && STARTS_CALL.has(event.type)) {
      try {
        await this.deps.flow.onStateLost?.(turn);
      } catch (e) {
        turn.log.error({ sessionId, err: (e as Error).stack ?? String(e) }, "recovering a lost call state failed");
      }
    }
    // Events that cannot start a conversation (a late sms_failed after session_end, speech
    // events of an expired call) get their bookkeeping, but create no call state.
    if (isNew && !STARTS_CALL.has(event.type)) {
      await this.router.observe(turn, event);
      record.stepAfter = state.step;
      return finish({ kind: "keep" });
    }

    const last = state.lastEvent;
    // After a turn that said nothing on purpose ("Ja." before the question arrived), the same words
    // again are either the caller's answer to what they heard since or sipgate's redelivery of the
    // first words: they run (no silence), but count as no answer to anything (see wordsRepeated).
    const repeat = last !== undefined && REDELIVERY_CHECKED.has(event.type) && last.key === eventKey && now() - last.at <= options.limits.duplicateWindowSeconds * 1000;
    if (repeat && last.quiet) turn.wordsRepeated = true;
    if (last && !last.quiet && !last.fresh && REDELIVERY_CHECKED.has(event.type) && last.key === eventKey && now() - last.at <= options.limits.duplicateWindowSeconds * 1000) {
      // A redelivery: answer as before, but a side effect never happens twice. An answer with an
      // action the flow never replays is not replayed at all: sending it again could double it,
      // and replaying only the rest (a "sent" line) could be false if the first answer was lost.
      record.duplicate = true;
      const guarded = last.actions.find((a) => this.deps.flow.neverReplay.includes(a.type));
      record.actions = guarded ? [] : last.actions;
      if (guarded) record.guardDecisions.push({ subject: guarded.type, allowed: false, reason: "duplicate_event", detail: "redelivered event; its answer is not repeated" });
      record.stepAfter = state.step;
      return finish({ kind: "keep" });
    }

    try {
      // The step's span: the step the event found, the one it left the call in.
      await telemetry.span(`aiflow.step ${state.step}`, { "aiflow.step": state.step }, async (span) => {
        await this.router.route(turn, event, isNew);
        await this.deps.flow.afterTurn?.(turn);
        span.set(() => ({ "aiflow.step.after": state.step, "aiflow.actions": turn.outgoing.map((a) => a.type) }));
      });
    } catch (e) {
      if (e instanceof FlowDefinitionError) turn.log.error({ sessionId, err: e.message }, "flow definition error");
      // A bug must not cost the caller the call: keep what was said, repair history, apologize.
      turn.log.error({ sessionId, step: state.step, err: (e as Error).stack ?? String(e) }, "turn failed");
      turn.guard({ subject: "turn", allowed: false, reason: "internal_error", detail: (e as Error).message });
      turn.endToolBatch();
      state.history = repairToolPairing(state.history, turn.note("tool_failed", { tool: "tool" }));
      // After hangup there is nobody to apologize to (a failing sms_failed bookkeeping, say).
      if (!state.ended) turn.say("fallback");
      // The caller's words were never judged: for sends they overtook, that is a possible "no".
      if (turn.pendingSends().length) await this.unevaluated(turn);
    }

    const reviewed = turn.outgoing.filter((a) => !turn.isApproved(a));
    const { allowed, decisions } = await telemetry.span("aiflow.gate", () => ({ "aiflow.actions": reviewed.map((a) => a.type) }), async (span) => {
      const r = await this.review(reviewed, turn);
      span.set(() => ({ "aiflow.gate.refused": r.decisions.filter((d) => !d.allowed).map((d) => `${d.subject}: ${d.reason}`) }));
      return r;
    });
    record.guardDecisions.push(...decisions);
    const allowedSet = new Set(allowed);
    record.actions = turn.outgoing.filter((a) => turn.isApproved(a) || allowedSet.has(a));

    state.lastEvent = {
      key: eventKey,
      at: now(),
      actions: record.actions,
      ...(turn.quiet && record.actions.length === 0 ? { quiet: true } : {}),
      // Once its words were taken as a possible repeat (and the question asked again), the same words next time are an answer.
      ...(turn.wordsRepeated ? { fresh: true } : {}),
    };
    const before = state.history.length;
    state.history = trimHistory(state.history, options.limits.historyMessages);
    if (state.stepHistoryStart !== undefined) state.stepHistoryStart = Math.max(0, state.stepHistoryStart - (before - state.history.length));
    state.updatedAt = now();
    record.stepAfter = state.step;
    return finish({ kind: "save", state });
  }

  /**
   * A caller event that will never be evaluated (its turn crashed instances too often): it may
   * have been a "no", so the flow treats it as one (withdraws pending sends, ends an offer).
   * Nothing is spoken; the state is saved.
   */
  async runUnevaluated(current: CallState<F["state"]> | undefined, event: AiFlowEvent, stream: TurnStream = {}): Promise<TurnOutcome<F["state"]>> {
    const record = emptyTurnRecord(event.session.id, event.type);
    if (!current) return { record, next: { kind: "keep" } };
    const turn = this.turn(current, event, record, stream);
    turn.guard({ subject: "turn", allowed: false, reason: "event_unevaluated", detail: "the event's turn never finished; it counts as a possible no" });
    await this.retried(turn);
    await this.unevaluated(turn);
    record.actions = [];
    current.updatedAt = this.deps.now();
    const withdrawn = turn.withdrawnSeqs;
    return { record, next: { kind: "save", state: current }, ...(withdrawn.length ? { withdrawn } : {}) };
  }

  /** The flow settles what an earlier attempt of this event left outside the store; its own failure is only logged. */
  private async retried(turn: Turn<F>): Promise<void> {
    try {
      await this.deps.flow.onRetry?.(turn);
    } catch (e) {
      turn.log.error({ sessionId: turn.sessionId, err: (e as Error).stack ?? String(e) }, "settling an earlier attempt failed");
    }
  }

  /** The flow's handling of caller words nobody judged (a possible "no"); its own failure is only logged. */
  private async unevaluated(turn: Turn<F>): Promise<void> {
    try {
      await this.deps.flow.onUnevaluated?.(turn);
    } catch (e) {
      turn.log.error({ sessionId: turn.sessionId, err: (e as Error).stack ?? String(e) }, "handling an unevaluated event failed");
    }
  }

  /** Whether the flow has work to run after a commit (so the pipeline copies no state for nothing). */
  get hasAfterCommit(): boolean {
    return this.deps.flow.afterCommit !== undefined;
  }

  /** A turn's state is committed: the flow's work that must match the store (a report snapshot). */
  async committed(state: CallState<F["state"]>, seq: number): Promise<void> {
    await this.deps.flow.afterCommit?.(state, this.deps.services, { now: this.deps.now(), log: this.deps.log, seq });
  }

  /** What became of actions a turn produced: the flow records what that means (an SMS not sent). Its errors are logged. */
  async outcome(outcome: ActionOutcome, state?: CallState<F["state"]>): Promise<void> {
    try {
      await this.deps.flow.onOutcome?.(outcome, this.deps.services, state, this.deps.now());
    } catch (e) {
      this.deps.log.error({ sessionId: outcome.callId, status: outcome.status, err: (e as Error).message }, "recording an action outcome failed");
    }
  }

  /** Actions leave only through the flow's gate; without one they are still checked against the protocol. */
  private async review(actions: AiFlowAction[], turn: Turn<F>): Promise<{ allowed: AiFlowAction[]; decisions: Decision<F>[] }> {
    const gate = this.deps.flow.gate;
    if (gate) return gate.review(actions, turn);
    const allowed: AiFlowAction[] = [];
    const decisions: Decision<F>[] = [];
    for (const a of actions) {
      if (checkAction(a).success) allowed.push(a);
      else decisions.push({ subject: a.type, allowed: false, reason: "invalid_action" });
    }
    return { allowed, decisions };
  }

  private turn(state: CallState<F["state"]>, event: AiFlowEvent, record: TurnRecord, stream: TurnStream): Turn<F> {
    const { deps } = this;
    return new Turn<F>({
      state,
      event,
      services: deps.services,
      options: deps.options,
      prompts: deps.prompts,
      log: deps.log,
      record,
      now: deps.now,
      engine: {
        invokeTool: (turn, tool: ToolDef<F>, args) => this.tools.runFromCode(turn, tool, args),
        review: (actions, turn) => this.review(actions, turn),
        tasks: (turn) => this.transitions.taskControl(turn),
      },
      sink: stream.sink,
      signal: stream.signal,
      ownership: stream.stillOwner,
      delivery: { heard: stream.heard, barged: stream.barged, pendingSends: stream.pendingSends ?? [], seq: stream.seq },
    });
  }

  private newState(event: AiFlowEvent): CallState<F["state"]> {
    const s = event.session;
    const t = this.deps.now();
    return {
      ...initialCallCore({
        sessionId: s.id,
        accountId: s.account_id,
        direction: s.direction ?? "inbound",
        // The remote party: the caller on inbound calls, the callee on outbound ones.
        callerNumber: remotePartyNumber(s),
        language: this.deps.options.language,
        step: this.deps.flow.initialStep,
        createdAt: t,
        updatedAt: t,
      }),
      ...this.deps.flow.initialState(),
    };
  }
}
