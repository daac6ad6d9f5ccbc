import type { Logger } from "pino";
import { actions, type AiFlowAction, type SpeakOptions } from "../aiflow/actions.js";
import type { AiFlowEvent } from "../aiflow/events.js";
import type { CallState, HistoryMessage } from "../core/callState.js";
import type { TurnRecord } from "../core/turnRecord.js";
import type { Decision, FlowTypes, LineKey, NoteKey, ToolDef } from "./define.js";
import type { EngineLineKey, EngineNoteKey } from "./keys.js";
import type { EngineOptions } from "./options.js";
import type { PromptLibrary } from "./promptLibrary.js";
import { telemetry } from "../core/telemetry.js";
import { speakOptions } from "./speech.js";
import type { TaskControl } from "./tasks.js";
import { InvariantError } from "../core/errors.js";

type Values = Record<string, string | number>;

/**
 * What a tool, step, hook or gate sees during one turn: the call's state, the event, the flow's
 * services, and the only ways to act (speak a line, emit an action through the gate, run a
 * tool). It cannot approve its own action or change the step: transitions are what tools and
 * hooks return.
 */
export interface TurnContext<F extends FlowTypes = FlowTypes> {
  readonly state: CallState<F["state"]>;
  readonly event: AiFlowEvent;
  readonly services: F["services"];
  readonly options: EngineOptions;
  readonly prompts: PromptLibrary;
  readonly log: Logger;
  readonly record: TurnRecord;
  readonly sessionId: string;
  /**
   * The event's position in the call's queue (the seq its outbox entry gets), the same in every
   * attempt at the event: records written for it are named by it, so a retry writes the same ids.
   * Undefined when the engine runs without a call pipeline.
   */
  readonly eventSeq: number | undefined;
  /** What the caller said (or keyed) in this turn. */
  readonly userText: string;
  /** The model that produced this turn's latest answer (for evidence records). */
  readonly modelUsed: string | undefined;
  /** While a step's rule runs the call it decided (no model asked): which rule, for the evidence. */
  readonly decidedBy: string | undefined;
  nowIso(): string;
  /** Speak text to the caller and remember it in the conversation history. */
  speak(text: string, opts?: { expectAnswer?: boolean; fromModel?: boolean; repeat?: boolean }): void;
  /** Speak a fixed line from a lines.md of prompts/<language>/ (shared, or the task's or agent's folder). */
  say(key: EngineLineKey | LineKey<F>, values?: Values, opts?: { expectAnswer?: boolean }): string;
  /** A note only the model reads (tool results), from prompts/model-notes.md. */
  note(key: EngineNoteKey | NoteKey<F>, values?: Values): string;
  /** The caller said or keyed something: a new turn, answering whatever was spoken last. */
  beginCallerTurn(historyText: string): void;
  guard(decision: Decision<F>): void;
  /** Queue an action built with the typed builders; it passes the flow's gate at the end of the turn. */
  emit(action: AiFlowAction): void;
  /** Put an action through the gate now, so the caller of this knows whether it will leave. */
  emitChecked(action: AiFlowAction): Promise<Decision<F>>;
  /** Say goodbye, then hang up once it has been played (or on the next event). */
  goodbye(key: EngineLineKey | LineKey<F>): void;
  hangupNow(): void;
  /** Run a tool from code (code steps, hooks): in history as a call/result pair like a model's; its transition applies. */
  invokeTool(tool: ToolDef<F>, args?: Record<string, unknown>): Promise<string>;
  /** The call's running tasks, beyond starting and finishing them (src/engine/tasks.ts). */
  readonly tasks: TaskControl;
  /** Whether this instance still owns the call, asked right before an irreversible step (an SMS approved). */
  stillOwner(): Promise<boolean>;
  /**
   * Earlier turns' send_sms actions that had not reached the caller when this event arrived: the
   * caller spoke before hearing them, so this turn is their verdict.
   */
  pendingSends(): readonly AiFlowAction[];
  /**
   * Take the pending sends back (the caller's "no" overtook them): the entries holding them never
   * leave. Returns every action of those entries (the sends and the lines said with them), so the
   * flow can say again what was not about the send.
   */
  withdrawPendingSends(): Array<{ seq: number; actions: AiFlowAction[] }>;
  /**
   * This turn has nothing to say on purpose (the caller answered a line still on its way to
   * them, which they hear with this answer): no fallback line is added.
   */
  nothingToSay(): void;
  /**
   * Whether line number `spokenIndex` (CallState.spoken right after it) may have been cut short: a
   * barge-in arrived after it was delivered (whatever became of that barge-in's turn).
   */
  mayHaveBeenCut(spokenIndex: number): boolean;
  /**
   * This event repeats, byte for byte, the previous one, whose turn said nothing on purpose: the
   * caller's new answer or sipgate's redelivery of words said before they heard anything new. No
   * "yes" may rest on it.
   */
  readonly wordsRepeated: boolean;
}

/** What the pipeline tells a turn about delivery: what the caller had heard when the event arrived, and the sends it overtook. */
export interface TurnDelivery {
  heard?: number;
  barged?: number;
  pendingSends: ReadonlyArray<{ seq: number; actions: AiFlowAction[] }>;
  /** The event's position in the call's queue. */
  seq?: number;
}

/** What the engine lends a turn: how to run a tool from code, and the gate. */
export interface TurnEngine<F extends FlowTypes> {
  invokeTool(turn: Turn<F>, tool: ToolDef<F>, args: Record<string, unknown>): Promise<string>;
  review(actions: AiFlowAction[], turn: Turn<F>): Promise<{ allowed: AiFlowAction[]; decisions: Decision<F>[] }>;
  /** The turn's view of the task stack (absent: a turn built without an engine, e.g. for a gate test). */
  tasks?(turn: Turn<F>): TaskControl;
}

/** What a turn is made of: the call, the event, what the flow and engine lend it, and how the transport takes part. */
export interface TurnOptions<F extends FlowTypes> {
  state: CallState<F["state"]>;
  event: AiFlowEvent;
  services: F["services"];
  options: EngineOptions;
  prompts: PromptLibrary;
  log: Logger;
  record: TurnRecord;
  /** The engine's clock (epoch ms). */
  now: () => number;
  engine: TurnEngine<F>;
  /** Streaming transports get the model's speech the moment it exists. */
  sink?: (action: AiFlowAction) => void;
  /** Aborted when the caller starts speaking, or the turn lost its lease or was given up: stop generating. */
  signal?: AbortSignal;
  /** Whether this instance still owns the call (default: it does). */
  ownership?: () => Promise<boolean>;
  delivery?: TurnDelivery;
}

/**
 * One turn: everything that lives only while one event is handled (actions queued, actions the
 * gate approved, lines waiting for a tool batch to finish, steps entered, corrections for the
 * model). A new one per event; nothing of it is kept on the long-lived engine.
 */
export class Turn<F extends FlowTypes = FlowTypes> implements TurnContext<F> {
  readonly outgoing: AiFlowAction[] = [];
  /** Actions the gate already approved this turn: the boundary review lets these through. Private: no tool approves its own action. */
  readonly #approved = new WeakSet<AiFlowAction>();
  /** Assistant lines waiting to be appended to history once the current tool batch has its results. */
  private pendingLines: string[] = [];
  private inToolBatch = false;
  /** Once one action waits for the commit, all later ones wait too: the caller hears the turn's order. */
  private heldBack = false;
  speechCount = 0;
  /** Notes added to the system prompt for the rest of this turn (after a refused false claim, say). */
  readonly corrections: string[] = [];
  /** Steps entered while code ran; each scope enters its own when it finishes. */
  readonly enterScopes: string[][] = [];
  /** Step transitions this turn (a mis-wired flow cannot spin forever). */
  transitions = 0;
  modelUsed: string | undefined;
  decidedBy: string | undefined;
  /** Set by nothingToSay(): the turn is complete without a line of its own. */
  quiet = false;
  wordsRepeated = false;
  /** Seqs of the pending entries this turn took back. */
  readonly withdrawnSeqs: number[] = [];

  readonly state: CallState<F["state"]>;
  readonly event: AiFlowEvent;
  readonly services: F["services"];
  readonly options: EngineOptions;
  readonly prompts: PromptLibrary;
  readonly log: Logger;
  readonly record: TurnRecord;
  readonly sink?: (action: AiFlowAction) => void;
  readonly signal?: AbortSignal;
  private readonly now: () => number;
  private readonly engine: TurnEngine<F>;
  private readonly ownership?: () => Promise<boolean>;
  private readonly delivery: TurnDelivery;

  constructor(o: TurnOptions<F>) {
    this.state = o.state;
    this.event = o.event;
    this.services = o.services;
    this.options = o.options;
    this.prompts = o.prompts;
    this.log = o.log;
    this.record = o.record;
    this.now = o.now;
    this.engine = o.engine;
    this.sink = o.sink;
    this.signal = o.signal;
    this.ownership = o.ownership;
    this.delivery = o.delivery ?? { pendingSends: [] };
  }

  get sessionId(): string {
    return this.state.sessionId;
  }
  get eventSeq(): number | undefined {
    return this.delivery.seq;
  }
  get userText(): string {
    const e = this.event;
    if (e.type === "user_speak") return e.text;
    if (e.type === "dtmf_received") return `[DTMF] ${this.state.dtmf}`;
    return "";
  }
  nowIso(): string {
    return new Date(this.now()).toISOString();
  }
  isApproved(action: AiFlowAction): boolean {
    return this.#approved.has(action);
  }

  /**
   * Queue an action. A streaming transport gets the model's speech at once, sentence by
   * sentence; everything else (fixed lines, a send_sms above all) leaves only after the turn's
   * result is committed, so the order the caller hears is the order of the turn, and no "sent"
   * line can precede its send_sms.
   */
  private out(action: AiFlowAction, approved = false, modelSpeech = false): void {
    this.outgoing.push(action);
    if (approved) this.#approved.add(action);
    if (this.sink && modelSpeech && !this.heldBack) {
      this.sink(action);
    } else this.heldBack = true;
  }

  private speakOptions(expectAnswer: boolean): SpeakOptions {
    const s = this.options.speech;
    return speakOptions(s, expectAnswer ? s.userInputTimeoutSeconds : undefined);
  }

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

  say(key: EngineLineKey | LineKey<F>, values: Values = {}, opts: { expectAnswer?: boolean } = {}): string {
    const text = this.prompts.line(key, values);
    this.speak(text, opts);
    return text;
  }

  note(key: EngineNoteKey | NoteKey<F>, values: Values = {}): string {
    return this.prompts.note(key, values);
  }

  beginCallerTurn(historyText: string): void {
    const { state } = this;
    if (this.event.type === "user_speak") state.dtmf = "";
    // What the caller is answering: the lines that had reached them when they spoke, not the
    // lines produced (a slow turn's lines leave after the caller may already have answered).
    state.spokenBeforeTurn = Math.min(state.spoken, this.delivery.heard ?? state.spoken);
    state.turn++;
    state.inputTimeouts = 0;
    this.pushHistory({ role: "user", content: historyText });
  }

  pushHistory(msg: HistoryMessage): void {
    this.state.history.push(msg);
  }

  beginToolBatch(): void {
    this.inToolBatch = true;
  }
  endToolBatch(): void {
    this.inToolBatch = false;
    for (const line of this.pendingLines) this.pushHistory({ role: "assistant", content: line });
    this.pendingLines = [];
  }

  goodbye(key: EngineLineKey | LineKey<F>): void {
    this.say(key, {}, { expectAnswer: false });
    this.state.pendingHangup = true;
  }

  hangupNow(): void {
    this.out(actions.hangup(this.sessionId));
    this.state.ended = true;
  }

  emit(action: AiFlowAction): void {
    this.out(action);
  }

  invokeTool(tool: ToolDef<F>, args: Record<string, unknown> = {}): Promise<string> {
    return this.engine.invokeTool(this, tool, args);
  }

  get tasks(): TaskControl {
    if (!this.engine.tasks) throw new InvariantError("this turn runs without an engine: it has no tasks");
    return this.engine.tasks(this);
  }

  async emitChecked(action: AiFlowAction): Promise<Decision<F>> {
    const { allowed, decisions } = await this.engine.review([action], this);
    this.record.guardDecisions.push(...decisions);
    for (const a of allowed) this.out(a, true);
    return decisions[0] ?? { subject: action.type, allowed: allowed.length > 0, reason: "ok" };
  }

  guard(decision: Decision<F>): void {
    this.record.guardDecisions.push(decision);
    telemetry.event("guard", () => ({ "aiflow.guard.subject": decision.subject, "aiflow.guard.allowed": decision.allowed, "aiflow.guard.reason": decision.reason, "aiflow.guard.detail": decision.detail }));
    if (!decision.allowed) this.log.warn({ sessionId: this.sessionId, guard: decision }, "guard refused");
  }

  pendingSends(): readonly AiFlowAction[] {
    return this.delivery.pendingSends.filter((e) => !this.withdrawnSeqs.includes(e.seq)).flatMap((e) => e.actions.filter((a) => a.type === "send_sms"));
  }

  withdrawPendingSends(): Array<{ seq: number; actions: AiFlowAction[] }> {
    const taken: Array<{ seq: number; actions: AiFlowAction[] }> = [];
    for (const e of this.delivery.pendingSends) {
      if (this.withdrawnSeqs.includes(e.seq)) continue;
      this.withdrawnSeqs.push(e.seq);
      taken.push({ seq: e.seq, actions: e.actions });
    }
    if (taken.length) this.record.withdrawal = true;
    return taken;
  }

  nothingToSay(): void {
    this.quiet = true;
  }

  mayHaveBeenCut(spokenIndex: number): boolean {
    return this.delivery.barged !== undefined && spokenIndex <= this.delivery.barged;
  }

  /** Ownership is the lease's (and a given-up answer's) business, never the caller's voice, which only cancels generation. */
  async stillOwner(): Promise<boolean> {
    return this.ownership ? this.ownership() : true;
  }
}
