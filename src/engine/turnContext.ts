import type { Logger } from "pino";
import { actions, type AiFlowAction, type SpeakOptions } from "../aiflow/actions.js";
import type { AiFlowEvent } from "../aiflow/events.js";
import { speakOptions } from "./speech.js";
import type { AppConfig } from "../config/schema.js";
import type { ConsentLedger, LedgerRecordInput } from "../ledger/ledger.js";
import type { RateLimiter } from "../store/rateLimiter.js";
import type { ToolDef } from "./define.js";
import type { PromptLibrary } from "./promptLibrary.js";
import type { CallState, HistoryMessage } from "./state.js";
import type { GuardDecision, TurnRecord } from "./turnRecord.js";

/** Checks actions before they leave; see guards/. */
export interface ActionGate {
  review(actions: AiFlowAction[], ctx: TurnContext): Promise<{ allowed: AiFlowAction[]; decisions: GuardDecision[] }>;
}

/** The services a turn may use, shared by all calls. */
export interface TurnServices {
  config: AppConfig;
  prompts: PromptLibrary;
  gate: ActionGate;
  ledger: ConsentLedger;
  limiter: RateLimiter;
  log: Logger;
  now: () => number;
}

/** Engine callbacks a context needs; kept as an interface so the context stays a plain holder. */
export interface TurnEngineHooks {
  gotoStep(ctx: TurnContext, step: string): void;
  invokeTool(ctx: TurnContext, tool: ToolDef, args: Record<string, unknown>): Promise<string>;
}

/**
 * What a tool, step or hook sees during one turn: the call's state, the event, and the
 * only ways to act (speak a line, change step, emit an action through the gate).
 */
export class TurnContext {
  readonly outgoing: AiFlowAction[] = [];
  /** Actions the gate already approved this turn; the boundary check lets these through once. */
  readonly approved = new WeakSet<AiFlowAction>();
  /** Assistant lines waiting to be appended to history once the current tool batch has its results. */
  private pendingLines: string[] = [];
  private inToolBatch = false;
  speechCount = 0;
  /** Notes added to the system prompt for the rest of this turn (e.g. after a refused false claim). */
  readonly corrections: string[] = [];
  /** What may change the step right now: a tool's or hook's declared transitions (undefined: engine code). */
  allowedTransitions?: { by: string; targets: string[] };
  /** The model that produced this turn's latest answer (for the evidence record). */
  modelUsed?: string;
  /** Step transitions requested during the current tool batch. */
  transitioned = false;

  /** Actions already handed to a streaming transport (WebSocket) before the turn ended. */
  readonly pushed = new WeakSet<AiFlowAction>();

  constructor(
    readonly state: CallState,
    readonly event: AiFlowEvent,
    readonly services: TurnServices,
    readonly record: TurnRecord,
    private readonly engine: TurnEngineHooks,
    /** Streaming transports get actions the moment they exist. */
    readonly sink?: (action: AiFlowAction) => void,
    /** Aborted when the caller starts speaking, or the turn lost its lease or was given up: stop generating. */
    readonly signal?: AbortSignal,
    private readonly ownership?: () => Promise<boolean>,
  ) {}

  /**
   * Whether this instance still owns the call, asked right before an irreversible step (an SMS
   * approved). False once the turn was aborted or another instance holds the call's lease.
   */
  async stillOwner(): Promise<boolean> {
    if (this.signal?.aborted) return false;
    return this.ownership ? this.ownership() : true;
  }

  /**
   * Queue an action. A streaming transport gets the model's speech at once, sentence by
   * sentence; everything else (fixed lines, a send_sms above all) leaves only after the turn's
   * result is committed, and once one action waits, all later ones wait too, so the order the
   * caller hears is the order of the turn, and no "sent" line can precede its send_sms.
   */
  private out(action: AiFlowAction, approved = false, modelSpeech = false): void {
    this.outgoing.push(action);
    if (approved) this.approved.add(action);
    if (this.sink && modelSpeech && !this.heldBack) {
      this.pushed.add(action);
      this.sink(action);
    } else this.heldBack = true;
  }
  private heldBack = false;

  get config(): AppConfig {
    return this.services.config;
  }
  get prompts(): PromptLibrary {
    return this.services.prompts;
  }
  get log(): Logger {
    return this.services.log;
  }
  get sessionId(): string {
    return this.state.sessionId;
  }
  /** What the caller said (or keyed) in this turn. */
  get userText(): string {
    const e = this.event;
    if (e.type === "user_speak") return e.text;
    if (e.type === "dtmf_received") return `[DTMF] ${this.state.dtmf}`;
    return "";
  }
  nowIso(): string {
    return new Date(this.services.now()).toISOString();
  }

  private speakOptions(expectAnswer: boolean): SpeakOptions {
    return speakOptions(this.config.speech, expectAnswer ? this.config.speech.userInputTimeoutSeconds : undefined);
  }

  /** Speak text to the caller and remember it in the conversation history. */
  speak(text: string, opts: { expectAnswer?: boolean; fromModel?: boolean; repeat?: boolean } = {}): void {
    const clean = text.trim();
    if (!clean) return;
    this.out(actions.speak(this.sessionId, clean, this.speakOptions(opts.expectAnswer ?? true)), false, opts.fromModel ?? false);
    this.speechCount++;
    if (!opts.repeat) {
      this.state.spoken++;
      this.state.lastLine = clean;
    }
    // Model text is already part of the model's own assistant message.
    if (!opts.fromModel) {
      if (this.inToolBatch) this.pendingLines.push(clean);
      else this.pushHistory({ role: "assistant", content: clean });
    }
  }

  /** Speak a fixed line from prompts/<language>/lines.md. */
  say(key: string, values: Record<string, string | number> = {}, opts: { expectAnswer?: boolean } = {}): string {
    const text = this.prompts.line(key, values);
    this.speak(text, opts);
    return text;
  }

  note(key: string, values: Record<string, string | number> = {}): string {
    return this.prompts.note(key, values);
  }

  /** The caller said or keyed something: a new turn, answering whatever was spoken last. */
  beginCallerTurn(historyText: string): void {
    const { state } = this;
    if (this.event.type === "user_speak") state.dtmf = "";
    state.spokenBeforeTurn = state.spoken;
    state.turn++;
    state.inputTimeouts = 0;
    this.pushHistory({ role: "user", content: historyText });
  }

  pushHistory(msg: HistoryMessage): void {
    this.state.history.push(msg);
  }

  beginToolBatch(): void {
    this.inToolBatch = true;
    this.transitioned = false;
  }
  endToolBatch(): void {
    this.inToolBatch = false;
    for (const line of this.pendingLines) this.pushHistory({ role: "assistant", content: line });
    this.pendingLines = [];
  }

  gotoStep(step: string): void {
    this.checkTransition(step);
    this.transitioned = true;
    this.engine.gotoStep(this, step);
  }

  /** Leave the current sub-flow and return to the step that entered it. */
  exitFlow(): void {
    this.checkTransition("exit");
    const back = this.state.returnStep;
    this.state.returnStep = undefined;
    this.transitioned = true;
    this.engine.gotoStep(this, back ?? "main");
  }

  private checkTransition(target: string): void {
    const allowed = this.allowedTransitions;
    if (allowed && !allowed.targets.includes(target)) {
      throw new Error(`${allowed.by} moved the flow to "${target}", which it does not declare in its transitions`);
    }
  }

  /** Say goodbye, then hang up once it has been played (or on the next event). */
  goodbye(key: string): void {
    this.say(key, {}, { expectAnswer: false });
    this.state.pendingHangup = true;
  }

  hangupNow(): void {
    this.out(actions.hangup(this.sessionId));
    this.state.ended = true;
  }

  /** Queue an action built with the typed builders; it still passes the gate at the boundary. */
  emit(action: AiFlowAction): void {
    this.out(action);
  }

  /** Run a tool from code (code steps, hooks); recorded in history as a tool call like any other. */
  invokeTool(tool: ToolDef, args: Record<string, unknown> = {}): Promise<string> {
    return this.engine.invokeTool(this, tool, args);
  }

  /** Emit an action through the gate now, so the caller of this knows whether it will leave. */
  async emitChecked(action: AiFlowAction): Promise<GuardDecision> {
    const { allowed, decisions } = await this.services.gate.review([action], this);
    this.record.guardDecisions.push(...decisions);
    for (const a of allowed) this.out(a, true);
    return decisions[0] ?? { subject: action.type, allowed: allowed.length > 0, reason: "ok" };
  }

  guard(decision: GuardDecision): void {
    this.record.guardDecisions.push(decision);
    if (!decision.allowed) this.log.warn({ sessionId: this.sessionId, guard: decision }, "guard refused");
  }

  async ledger(rec: Omit<LedgerRecordInput, "callId" | "at">): Promise<void> {
    await this.services.ledger.append({ ...rec, callId: this.sessionId, at: this.nowIso() });
  }
}
