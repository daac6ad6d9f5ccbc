import type { Logger } from "pino";
import type { CountryCode } from "libphonenumber-js/max";
import type { AiFlowAction } from "../aiflow/actions.js";
import type { AiFlowEvent } from "../aiflow/events.js";
import type { TurnRecord } from "../core/turnRecord.js";
import type { LedgerRecordInput } from "../ledger/ledger.js";
import type { AnswerEntry, ReviewEntry } from "./entries.js";
import { NumberMasker, reviewMask } from "./masking.js";
import type { ReviewStore } from "./reviewStore.js";
import { summarize, type CallSummary } from "./summary.js";

/**
 * What the engine and the transports tell the call review, from the places that already know
 * each fact: a caller event arrived (the transports), an answer left (the pipeline's answers,
 * the socket's pushes), a turn was committed (its TurnRecord), a ledger record became durable.
 */
export interface CallRecorder {
  arrived(event: AiFlowEvent, via: "http" | "ws"): void;
  answered(kind: string, actions: readonly AiFlowAction[]): void;
  turn(record: TurnRecord, event: AiFlowEvent): void;
  ledger(record: LedgerRecordInput): void;
}

export interface ReviewRecorderOptions {
  store: ReviewStore;
  /** Keep what was said and heard (and the model's answers); off: only what happened, no words. */
  transcripts: boolean;
  homeCountry: CountryCode;
  agent: string;
  log: Logger;
  /** A call's figures once it ended (the session_end turn): outcome metrics. */
  onCallEnded?: (summary: CallSummary) => void;
  now?: () => number;
}

/** Calls whose masker is kept in memory at most (their numbers, to mask every form of them). */
const MAX_OPEN_CALLS = 10_000;

/**
 * The call review's recorder: builds masked timeline entries and appends them to the review
 * store. Never in the caller's way: appends run in the background, a failing store is logged
 * (once per failure streak) and costs only the review.
 */
export class ReviewRecorder implements CallRecorder {
  private readonly maskers = new Map<string, NumberMasker>();
  /** Appends in flight per call: the session_end turn waits for them before reading the timeline. */
  private readonly pending = new Map<string, Promise<void>>();
  /** Holding lines already recorded from the pipeline's answers: the socket pushes the same objects. */
  private readonly recordedActions = new WeakSet<object>();
  private failing = false;
  private readonly now: () => number;

  constructor(private readonly opts: ReviewRecorderOptions) {
    this.now = opts.now ?? Date.now;
  }

  arrived(event: AiFlowEvent, via: "http" | "ws"): void {
    const callId = event.session.id;
    const m = this.masker(callId, event);
    const entry: ReviewEntry = { kind: "arrival", at: this.now(), via, event: event.type };
    if (event.type === "session_start") {
      entry.caller = reviewMask(event.session.direction === "outbound" ? (event.session.to_phone_number ?? "") : (event.session.from_phone_number ?? ""));
      entry.agent = this.opts.agent;
    }
    if (event.type === "sms_failed") entry.reason = event.reason;
    if (this.opts.transcripts) {
      if (event.type === "user_speak") entry.text = m.mask(event.text);
      if (event.type === "dtmf_received") entry.digit = event.digit;
    }
    this.append(callId, [entry]);
  }

  answered(kind: string, actions: readonly AiFlowAction[]): void {
    const first = actions[0];
    if (!first) return;
    for (const a of actions) this.recordedActions.add(a);
    this.append(first.session_id, [this.answerEntry(kind, actions)]);
  }

  /** A frame the socket pushed (the holding lines it pushes were recorded as answers already). */
  pushed(action: AiFlowAction): void {
    if (this.recordedActions.has(action)) return;
    this.append(action.session_id, [this.answerEntry("pushed", [action])]);
  }

  turn(record: TurnRecord, event: AiFlowEvent): void {
    const callId = record.sessionId;
    const m = this.masker(callId, event);
    for (const a of record.actions) {
      if (a.type === "send_sms") m.add(a.phone_number);
      if (a.type === "transfer") m.add(a.target_phone_number);
    }
    const words = this.opts.transcripts;
    for (const t of record.toolCalls) for (const v of Object.values((t.arguments ?? {}) as Record<string, unknown>)) if (typeof v === "string") m.addSaid(v);
    const entry: ReviewEntry = {
      kind: "turn",
      at: this.now(),
      event: record.event,
      stepBefore: record.stepBefore,
      stepAfter: record.stepAfter,
      tools: record.toolCalls.map((t) => ({ name: t.name, ok: t.ok, origin: t.origin, ...(words ? { args: m.maskValue(t.arguments), result: m.mask(t.result) } : {}) })),
      refusals: record.guardDecisions.filter((d) => !d.allowed).map((d) => ({ subject: d.subject, reason: d.reason, ...(d.detail ? { detail: m.mask(d.detail) } : {}) })),
      model: record.llmRequests.map((r) => ({
        step: r.step,
        model: r.model,
        ms: Math.round(r.ms),
        promptTokens: r.promptTokens,
        completionTokens: r.completionTokens,
        ...(r.error ? { error: m.mask(r.error) } : {}),
        ...(words && r.answer ? { answer: { text: m.mask(r.answer.text), toolCalls: r.answer.toolCalls.map((c) => ({ name: c.name, arguments: m.mask(c.arguments) })) } } : {}),
      })),
      modelMs: Math.round(record.timings.modelMs),
      totalMs: Math.round(record.timings.totalMs),
      ...(record.duplicate ? { duplicate: true } : {}),
    };
    this.append(callId, [entry]);
    if (event.type === "session_end" && !record.duplicate) this.ended(callId);
  }

  ledger(record: LedgerRecordInput): void {
    const entry: ReviewEntry = {
      kind: "ledger",
      at: this.now(),
      record: record.kind,
      id: record.id,
      ...(record.outcome ? { outcome: record.outcome } : {}),
      ...(record.reason ? { reason: record.reason } : {}),
      // A hashed ledger number has no digits to show (and is not a number): only real numbers are masked.
      ...(record.number && /^\d{6,15}$/.test(record.number) ? { to: reviewMask(record.number) } : {}),
    };
    this.append(record.callId, [entry]);
  }

  /** Appends still in flight (tests wait for them before reading the page). */
  async flush(): Promise<void> {
    await Promise.all([...this.pending.values()]);
  }

  private answerEntry(kind: string, actions: readonly AiFlowAction[]): AnswerEntry {
    const m = this.maskers.get(actions[0]!.session_id);
    const mask = (s: string) => (m ? m.mask(s) : new NumberMasker(this.opts.homeCountry).mask(s));
    return {
      kind: "answer",
      at: this.now(),
      answer: kind,
      actions: actions.map((a) => {
        if (a.type === "speak") return { type: a.type, ...(this.opts.transcripts && a.text ? { text: mask(a.text) } : {}) };
        if (a.type === "send_sms") return { type: a.type, to: reviewMask(a.phone_number) };
        if (a.type === "transfer") return { type: a.type, to: reviewMask(a.target_phone_number) };
        return { type: a.type };
      }),
    };
  }

  private masker(callId: string, event: AiFlowEvent): NumberMasker {
    let m = this.maskers.get(callId);
    if (!m) {
      if (this.maskers.size >= MAX_OPEN_CALLS) this.maskers.delete(this.maskers.keys().next().value!);
      this.maskers.set(callId, (m = new NumberMasker(this.opts.homeCountry)));
    }
    m.add(event.session.from_phone_number);
    m.add(event.session.to_phone_number);
    return m;
  }

  private append(callId: string, entries: ReviewEntry[]): void {
    const before = this.pending.get(callId) ?? Promise.resolve();
    const next = before
      .then(() => this.opts.store.append(callId, entries))
      .then(
        () => {
          if (this.failing) this.opts.log.info("call review store reachable again");
          this.failing = false;
        },
        (e: Error) => {
          if (!this.failing) this.opts.log.warn({ err: e.message }, "call review: could not record (the call itself is not affected)");
          this.failing = true;
        },
      );
    this.pending.set(callId, next);
    void next.then(() => {
      if (this.pending.get(callId) === next) this.pending.delete(callId);
    });
  }

  /** The call ended: its figures for the metrics, once its timeline is complete here. */
  private ended(callId: string): void {
    const waitFor = this.pending.get(callId) ?? Promise.resolve();
    this.maskers.delete(callId);
    void waitFor
      .then(() => this.opts.store.get(callId))
      .then((entries) => {
        if (entries && this.opts.onCallEnded) this.opts.onCallEnded(summarize(callId, entries));
      })
      .catch((e: Error) => this.opts.log.warn({ err: e.message }, "call review: could not read an ended call's timeline"));
  }
}
