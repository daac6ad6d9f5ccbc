import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { TurnRecord } from "../core/turnRecord.js";
import type { CallSummary } from "../review/summary.js";

/**
 * Prometheus metrics for the voice agent, on a registry of their own (never prom-client's
 * global one, so several services in one process, e.g. in tests, do not collide).
 *
 * Sources:
 * - `observeTurn` (from the app's `onTurn` observer): events, turn timings, model requests,
 *   tokens, sent SMS (`send_sms` actions that left), guard refusals and refused SMS.
 * - `observeLedger` (from `MeteredLedger`, after a durable append): consent asked/given/declined
 *   and `sms_failed` by reason. Consent is counted from the ledger because the ledger is the
 *   evidence: a consent that was not durably recorded did not happen.
 * - `observeCallEnded` (from the call review's recorder, once a call's session_end turn is
 *   done): what calls came to (outcomes), holding lines per call, and how long callers waited
 *   until the holding line and until the real answer, from the call's whole timeline (whichever
 *   instances answered its events).
 * - `observeModelFallback` / `observeModelError`: for a model wrapper that switches models or
 *   absorbs a failed request the TurnRecord never shows. Errors that reach the engine are already
 *   in `turn.llmRequests` (with `error`) and counted by `observeTurn`; do not report them twice.
 *
 * Label values that come from outside the code (a tool name the model invented, the model name
 * the server reports) are bounded: after `maxLabelValues` distinct values of one label, further
 * values are reported as "other".
 */

/** Seconds; voice turns: a fixed line in a few ms, a model round trip in 0.3–3 s, a timeout at 10 s. */
export const VOICE_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 7.5, 10];

export const CONSENT_OUTCOMES = { consent_asked: "asked", consent_given: "given", consent_declined: "declined" } as const;

export interface MetricsOptions {
  /** prom-client's default Node process metrics on the same registry (default true). */
  defaultMetrics?: boolean;
  /** Read at every scrape for `aiflow_active_calls`, e.g. `() => store.size()`. */
  activeCalls?: () => number | Promise<number>;
  /** Distinct values per label before further ones are reported as "other" (default 50). */
  maxLabelValues?: number;
  /** `alerts.callerWaitP95Seconds`, exported for the alert rule (default 3). */
  callerWaitP95BoundSeconds?: number;
}

/** The outcomes of src/review/summary.ts, each a series from the start. */
const CALL_OUTCOMES = ["sms_handed_over", "sms_declined", "sms_failed", "sms_refused", "transferred", "agent_hung_up", "caller_hung_up", "apology"] as const;

const OVERFLOW = "other";
const MAX_LABEL_LENGTH = 64;

export class Metrics {
  readonly registry = new Registry();
  private readonly maxLabelValues: number;
  private readonly seen = new Map<string, Set<string>>();
  private activeCallsProvider?: () => number | Promise<number>;

  private readonly events: Counter<"type">;
  private readonly turnSeconds: Histogram<"type">;
  private readonly modelSeconds: Histogram<"type">;
  private readonly engineSeconds: Histogram<"type">;
  private readonly modelRequests: Counter<"model" | "outcome">;
  private readonly modelFallbacks: Counter<"from" | "to">;
  private readonly tokens: Counter<"kind">;
  private readonly smsSent: Counter;
  private readonly smsRefused: Counter<"reason">;
  private readonly smsFailed: Counter<"reason">;
  private readonly consent: Counter<"outcome">;
  private readonly guardRefusals: Counter<"subject" | "reason">;
  private readonly activeCalls: Gauge;
  private readonly answers: Counter<"kind">;
  private readonly refusedCalls: Counter<"reason">;
  private overloadProvider?: () => string | undefined;
  private readonly reportPosts: Counter<"outcome">;
  private readonly transfers: Counter;
  private readonly callsEnded: Counter;
  private readonly callOutcomes: Counter<"outcome">;
  private readonly holdingLinesPerCall: Histogram;
  private readonly callerWait: Histogram<"until">;
  private readonly circuitsOpen: Gauge;
  private readonly waitBound: Gauge;
  private openCircuitsProvider?: () => number;

  constructor(opts: MetricsOptions = {}) {
    this.maxLabelValues = opts.maxLabelValues ?? 50;
    this.activeCallsProvider = opts.activeCalls;
    const registers = [this.registry];

    this.events = new Counter({ name: "aiflow_events_total", help: "AI Flow events handled by the engine, by event type.", labelNames: ["type"], registers });
    this.turnSeconds = new Histogram({ name: "aiflow_turn_duration_seconds", help: "Time to answer one event (model plus engine), by event type.", labelNames: ["type"], buckets: VOICE_BUCKETS, registers });
    this.modelSeconds = new Histogram({ name: "aiflow_turn_model_seconds", help: "Time spent waiting for the model within one turn (0 when no request was made), by event type.", labelNames: ["type"], buckets: VOICE_BUCKETS, registers });
    this.engineSeconds = new Histogram({ name: "aiflow_turn_engine_seconds", help: "Time spent outside model requests within one turn (store, tools, gate, ledger), by event type.", labelNames: ["type"], buckets: VOICE_BUCKETS, registers });
    this.modelRequests = new Counter({ name: "aiflow_model_requests_total", help: "Chat model requests by model and outcome (ok|error).", labelNames: ["model", "outcome"], registers });
    this.modelFallbacks = new Counter({ name: "aiflow_model_fallbacks_total", help: "Switches from one model to a fallback model.", labelNames: ["from", "to"], registers });
    this.tokens = new Counter({ name: "aiflow_tokens_total", help: "Model tokens used, by kind (prompt|completion).", labelNames: ["kind"], registers });
    this.smsSent = new Counter({ name: "aiflow_sms_sent_total", help: "send_sms actions returned to AI Flow (sent, not delivered).", registers });
    this.smsRefused = new Counter({ name: "aiflow_sms_refused_total", help: "send_sms actions refused by the action gate, by reason.", labelNames: ["reason"], registers });
    this.smsFailed = new Counter({ name: "aiflow_sms_failed_total", help: "sms_failed reports recorded in the ledger, by reason.", labelNames: ["reason"], registers });
    this.consent = new Counter({ name: "aiflow_consent_total", help: "Consent ledger records by outcome (asked|given|declined).", labelNames: ["outcome"], registers });
    this.guardRefusals = new Counter({ name: "aiflow_guard_refusals_total", help: "Guard decisions that refused something, by subject (action, tool, utterance) and reason.", labelNames: ["subject", "reason"], registers });
    this.answers = new Counter({ name: "aiflow_answers_total", help: "Answers to events by kind: actions, holding (a turn missed the deadline), gave_up (apology after the last holding line), nothing, store_unavailable.", labelNames: ["kind"], registers });
    this.refusedCalls = new Counter({ name: "aiflow_calls_refused_total", help: "New calls refused while the instance was over its load limits (server.overload), by the limit: event_loop_delay, cpu, in_flight_turns, new_calls.", labelNames: ["reason"], registers });
    const overloaded = () => (this.overloadProvider?.() ? 1 : 0);
    new Gauge({
      name: "aiflow_overloaded",
      help: "1 while the instance is over its load limits (server.overload) and refuses new calls, else 0.",
      registers,
      collect() {
        this.set(overloaded());
      },
    });
    this.reportPosts = new Counter({
      name: "aiflow_callback_posts_total",
      help: "Callback report posts by outcome: delivered, superseded (posted, but a newer body or another instance took over meanwhile), retried (a failed post, tried again later), dead_lettered (given up: an operator must look), failed (the outbox could not be reached).",
      labelNames: ["outcome"],
      registers,
    });
    this.transfers = new Counter({ name: "aiflow_transfers_total", help: "transfer actions returned to AI Flow (to a person).", registers });
    this.callsEnded = new Counter({ name: "aiflow_calls_ended_total", help: "Calls whose session_end was handled (the denominator of the outcome rates).", registers });
    this.callOutcomes = new Counter({
      name: "aiflow_call_outcomes_total",
      help: "Ended calls by outcome (a call may count under several): sms_handed_over, sms_declined, sms_failed, sms_refused, transferred, agent_hung_up, caller_hung_up, apology.",
      labelNames: ["outcome"],
      registers,
    });
    this.holdingLinesPerCall = new Histogram({ name: "aiflow_holding_lines_per_call", help: "Holding lines a caller heard per ended call.", buckets: [0, 1, 2, 3, 5, 8, 13], registers });
    this.callerWait = new Histogram({
      name: "aiflow_caller_wait_seconds",
      help: "Per caller turn of an ended call: time from the caller's words to the holding line (until=holding) and to the real answer (until=answer).",
      labelNames: ["until"],
      buckets: VOICE_BUCKETS,
      registers,
    });
    this.waitBound = new Gauge({ name: "aiflow_alert_caller_wait_p95_bound_seconds", help: "alerts.callerWaitP95Seconds: the bound the CallerWaitTooLong alert compares the p95 caller wait until the real answer with.", registers });
    const self = this;
    this.circuitsOpen = new Gauge({
      name: "aiflow_model_circuits_open",
      help: "Model routes whose circuit breaker is open right now (skipped until their cooldown passed).",
      registers,
      collect() {
        const provider = self.openCircuitsProvider;
        if (provider) this.set(provider());
      },
    });
    this.activeCalls = new Gauge({
      name: "aiflow_active_calls",
      help: "Calls with state in the session store.",
      registers,
      async collect() {
        const provider = self.activeCallsProvider;
        if (!provider) return;
        try {
          const n = await provider();
          if (Number.isFinite(n)) this.set(n);
        } catch {
          // A store that cannot answer must not fail the whole scrape; the last value stays.
        }
      },
    });

    // Series that dashboards expect to exist before the first event.
    for (const outcome of Object.values(CONSENT_OUTCOMES)) this.consent.inc({ outcome }, 0);
    for (const kind of ["prompt", "completion"]) this.tokens.inc({ kind }, 0);
    for (const until of ["holding", "answer"]) this.callerWait.zero({ until });
    for (const outcome of CALL_OUTCOMES) this.callOutcomes.inc({ outcome }, 0);
    this.circuitsOpen.set(0);
    this.waitBound.set(opts.callerWaitP95BoundSeconds ?? 3);
    this.activeCalls.set(0);

    if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The exposition text for GET /metrics. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  setActiveCalls(n: number): void {
    this.activeCalls.set(n);
  }

  /** Read the active call count at every scrape (e.g. `() => store.size()`). */
  setActiveCallsProvider(provider: (() => number | Promise<number>) | undefined): void {
    this.activeCallsProvider = provider;
  }

  /** Read at every scrape for `aiflow_model_circuits_open` (the resilient model's open circuits). */
  setOpenCircuitsProvider(provider: (() => number) | undefined): void {
    this.openCircuitsProvider = provider;
  }

  setCallerWaitBound(seconds: number): void {
    this.waitBound.set(seconds);
  }

  /** A call ended: its outcomes, holding lines and caller waits (see src/review/summary.ts). */
  observeCallEnded(call: Pick<CallSummary, "outcomes" | "holdingLines" | "waitsUntilHolding" | "waitsUntilAnswer">): void {
    this.callsEnded.inc();
    for (const outcome of call.outcomes) this.callOutcomes.inc({ outcome });
    this.holdingLinesPerCall.observe(call.holdingLines);
    for (const ms of call.waitsUntilHolding) this.callerWait.observe({ until: "holding" }, seconds(ms));
    for (const ms of call.waitsUntilAnswer) this.callerWait.observe({ until: "answer" }, seconds(ms));
  }

  /** Whether the instance is over its load limits now (read at each scrape). */
  setOverloadProvider(provider: () => string | undefined): void {
    this.overloadProvider = provider;
  }

  /** A new call refused (over the load limits), by the limit. */
  observeRefusedCall(reason: string): void {
    this.refusedCalls.inc({ reason });
  }

  /** One cycle of the callback report poster. */
  observeReportPosts(r: { delivered: number; replaced: number; stale: number; retried: number; deadLettered: number; failed: number }): void {
    if (r.delivered) this.reportPosts.inc({ outcome: "delivered" }, r.delivered);
    if (r.replaced + r.stale) this.reportPosts.inc({ outcome: "superseded" }, r.replaced + r.stale);
    if (r.retried) this.reportPosts.inc({ outcome: "retried" }, r.retried);
    if (r.deadLettered) this.reportPosts.inc({ outcome: "dead_lettered" }, r.deadLettered);
    if (r.failed) this.reportPosts.inc({ outcome: "failed" }, r.failed);
  }

  /** How an event was answered (see CallPipeline): holding lines and give-ups show a model slower than the deadline. */
  observeAnswer(kind: "actions" | "holding" | "gave_up" | "nothing" | "store_unavailable" | "refused"): void {
    this.answers.inc({ kind });
  }

  /** Everything one answered event tells: call it from the app's `onTurn` observer. */
  observeTurn(turn: TurnRecord): void {
    const type = this.label("type", turn.event);
    this.events.inc({ type });
    this.turnSeconds.observe({ type }, seconds(turn.timings.totalMs));
    this.modelSeconds.observe({ type }, seconds(turn.timings.modelMs));
    this.engineSeconds.observe({ type }, seconds(turn.timings.engineMs));

    let promptTokens = 0;
    let completionTokens = 0;
    for (const r of turn.llmRequests) {
      this.modelRequests.inc({ model: this.label("model", r.model), outcome: r.error !== undefined ? "error" : "ok" });
      promptTokens += count(r.promptTokens);
      completionTokens += count(r.completionTokens);
    }
    if (promptTokens > 0) this.tokens.inc({ kind: "prompt" }, promptTokens);
    if (completionTokens > 0) this.tokens.inc({ kind: "completion" }, completionTokens);

    const sent = turn.actions.filter((a) => a.type === "send_sms").length;
    if (sent > 0) this.smsSent.inc(sent);
    const transfers = turn.actions.filter((a) => a.type === "transfer").length;
    if (transfers > 0) this.transfers.inc(transfers);

    for (const d of turn.guardDecisions) {
      if (d.allowed) continue;
      const reason = this.label("reason", d.reason);
      // An unknown tool's name is whatever the model made up: one series for all of them.
      const subject = d.reason === "unknown_tool" ? "_unknown_tool" : this.label("subject", d.subject);
      this.guardRefusals.inc({ subject, reason });
      if (d.subject === "send_sms") this.smsRefused.inc({ reason });
    }
  }

  /** A ledger record was durably written (see MeteredLedger). */
  observeLedger(kind: string, outcome?: string): void {
    if (kind in CONSENT_OUTCOMES) {
      this.consent.inc({ outcome: CONSENT_OUTCOMES[kind as keyof typeof CONSENT_OUTCOMES] });
    } else if (kind === "sms_failed") {
      this.smsFailed.inc({ reason: this.label("sms_failed_reason", outcome ?? "unknown") });
    }
    // sms_sent is counted from the actions that left (observeTurn); sms_cancelled has no metric.
  }

  observeModelFallback(from: string, to: string): void {
    this.modelFallbacks.inc({ from: this.label("model", from), to: this.label("model", to) });
  }

  /** A model request failed where the TurnRecord cannot see it (e.g. inside a fallback wrapper). */
  observeModelError(model: string): void {
    this.modelRequests.inc({ model: this.label("model", model), outcome: "error" });
  }

  /** Bounds a label's distinct values; empty values become "unknown". */
  private label(name: string, value: string): string {
    const v = (value || "unknown").slice(0, MAX_LABEL_LENGTH);
    let values = this.seen.get(name);
    if (!values) this.seen.set(name, (values = new Set()));
    if (values.has(v)) return v;
    if (values.size >= this.maxLabelValues) return OVERFLOW;
    values.add(v);
    return v;
  }
}

function seconds(ms: number): number {
  return Number.isFinite(ms) && ms > 0 ? ms / 1000 : 0;
}

function count(n: number): number {
  return Number.isFinite(n) && n > 0 ? n : 0;
}
