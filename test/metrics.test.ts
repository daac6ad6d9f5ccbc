import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AiFlowAction } from "../src/aiflow/actions.js";
import type { AppConfig } from "../src/appConfig.js";
import type { TurnRecord } from "../src/core/turnRecord.js";
import { emptyTurnRecord } from "../src/core/turnRecord.js";
import { MemoryLedger } from "../src/ledger/memoryLedger.js";
import { OpenAIChatModel } from "../src/llm/openaiChatModel.js";
import { MeteredLedger } from "../src/metrics/meteredLedger.js";
import { Metrics } from "../src/metrics/metrics.js";
import { createService, type Service } from "../src/service.js";
import { FakeOpenAIServer, reply } from "./support/fakeOpenAI.js";
import { CALLER, ev } from "./support/events.js";
import { smsActions, spoken, testConfig } from "./support/harness.js";
import { ManualClock } from "../src/engine/clock.js";

/**
 * The metrics as production would wire them: the real service (Fastify, engine, gate, openai
 * client against the local fake model server), `onTurn` → `metrics.observeTurn`, the ledger
 * wrapped in `MeteredLedger`, `aiflow_active_calls` read from the store at every scrape.
 * Assertions are on the rendered Prometheus text only.
 */

// ---- a tiny exposition-format reader -------------------------------------------------------

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The sample-line rule of the brief, and the same with the special values the format allows. */
const SAMPLE_LINE = /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? [0-9.eE+-]+$|^#/;
const SAMPLE_LINE_SPECIAL = /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? ([+-]?Inf|NaN|Nan)$/;

function parseExposition(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1]!] = l[2]!.replace(/\\n/g, "\n").replace(/\\"/g, '"').replace(/\\\\/g, "\\");
    }
    out.push({ name: m[1]!, labels, value: Number(m[3]!.replace(/^Nan$/, "NaN").replace(/^\+?Inf$/, "Infinity")) });
  }
  return out;
}

/** The value of the one sample with this name whose labels include `labels`; 0 when absent. */
function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  const hits = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (hits.length > 1) throw new Error(`${name} ${JSON.stringify(labels)} matches ${hits.length} series`);
  return hits[0]?.value ?? 0;
}

/** Sum over every series of a metric whose labels include `labels`. */
function sum(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  return samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((a, s) => a + s.value, 0);
}

// ---- the service with metrics wired in ----------------------------------------------------

interface MeteredService extends Service {
  metrics: Metrics;
  memory: MemoryLedger;
  turns: TurnRecord[];
  post(event: unknown): Promise<{ status: number; actions: AiFlowAction[] }>;
  scrape(): Promise<Sample[]>;
}

async function startMetered(fake: FakeOpenAIServer, config: AppConfig): Promise<MeteredService> {
  const metrics = new Metrics();
  const memory = new MemoryLedger();
  const turns: TurnRecord[] = [];
  const clock = { now: Date.UTC(2026, 10, 23, 9, 0, 0) };
  const service = createService({
    // Deadlines (server.answerWithinMs) move only when told: no answer depends on machine speed.
    clock: new ManualClock(),
    config,
    model: new OpenAIChatModel({ apiKey: "test-key", baseURL: fake.baseURL, timeoutMs: config.llm.timeoutMs, maxRetries: config.llm.maxRetries }),
    ledger: new MeteredLedger(memory, metrics),
    logger: pino({ level: "silent" }),
    now: () => (clock.now += 1000),
    onTurn: (turn) => {
      turns.push(turn);
      metrics.observeTurn(turn);
    },
  });
  metrics.setActiveCallsProvider(() => service.store.size());
  return {
    ...service,
    metrics,
    memory,
    turns,
    async post(event) {
      const res = await service.app.inject({ method: "POST", url: "/webhook", headers: { "content-type": "application/json" }, payload: JSON.stringify(event) });
      const body = res.body ? (JSON.parse(res.body) as unknown) : undefined;
      const actions = res.statusCode === 200 ? ((Array.isArray(body) ? body : [body]) as AiFlowAction[]) : [];
      return { status: res.statusCode, actions };
    },
    async scrape() {
      return parseExposition(await metrics.render());
    },
  };
}

const LANDLINE = "493012345678";

describe("metrics from real calls", () => {
  const fake = new FakeOpenAIServer();
  let svc: MeteredService;
  let text = "";
  let s: Sample[] = [];

  beforeAll(async () => {
    await fake.start();
    // One SMS per recipient per day, so a second call to the same caller is refused at the gate.
    svc = await startMetered(fake, testConfig({ tasks: { sms: { recipients: { perRecipient: { max: 1, windowSeconds: 86400 } } } } }));

    // 1. Happy path to a sent SMS, then sipgate reports it failed (no_sms_extension: no retry).
    await svc.post(ev.start("m-happy"));
    fake.enqueue(reply.tool("start_sms_flow", { info: "opening_hours" }));
    await svc.post(ev.speak("m-happy", "Können Sie mir die Öffnungszeiten per SMS schicken?"));
    fake.enqueue(reply.tool("record_consent", { consented: true }));
    const sent = await svc.post(ev.speak("m-happy", "Ja, gerne."));
    expect(smsActions(sent.actions)).toHaveLength(1);
    const failed = await svc.post(ev.smsFailed("m-happy", "no_sms_extension"));
    expect(spoken(failed.actions)[0]).toMatch(/SMS-Versand funktioniert bei uns gerade nicht/);
    await svc.post(ev.end("m-happy"));

    // 2. A landline caller gives a premium-rate number: refused by collect_phone_number.
    await svc.post(ev.start("m-premium", { from: LANDLINE }));
    fake.enqueue(reply.tool("start_sms_flow", { info: "address" }));
    await svc.post(ev.speak("m-premium", "Schicken Sie mir die Adresse per SMS?", false, { from: LANDLINE }));
    fake.enqueue(reply.tool("collect_phone_number", { phone_number: "0900 1234567" }));
    const premium = await svc.post(ev.speak("m-premium", "Die Nummer ist 0900 1234567", false, { from: LANDLINE }));
    expect(spoken(premium.actions)[0]).toMatch(/Handynummer/);
    // The model fails on the next turn: the caller hears an apology, the request counts as an error.
    fake.enqueue(reply.error(500));
    const apology = await svc.post(ev.speak("m-premium", "Hallo?", false, { from: LANDLINE }));
    expect(apology.status).toBe(200);
    // Still in the call (no session_end): counts as active.

    // 3. The same caller again: consent is given, the gate refuses the send (per-recipient limit).
    await svc.post(ev.start("m-limit"));
    fake.enqueue(reply.tool("start_sms_flow", { info: "opening_hours" }));
    await svc.post(ev.speak("m-limit", "Bitte die Öffnungszeiten per SMS."));
    fake.enqueue(reply.tool("record_consent", { consented: true }));
    const limited = await svc.post(ev.speak("m-limit", "Ja."));
    expect(smsActions(limited.actions)).toHaveLength(0);

    // 4. A decline.
    await svc.post(ev.start("m-decline"));
    fake.enqueue(reply.tool("start_sms_flow", { info: "address" }));
    await svc.post(ev.speak("m-decline", "Die Adresse per SMS bitte."));
    fake.enqueue(reply.tool("record_consent", { consented: false }));
    await svc.post(ev.speak("m-decline", "Nein, doch nicht."));
    await svc.post(ev.end("m-decline"));

    // 5. An invented tool (its name must not become a label value).
    await svc.post(ev.start("m-invented"));
    fake.enqueue(reply.tool("send_sms_now_please_xyz", {}), reply.text("Wie kann ich helfen?"));
    await svc.post(ev.speak("m-invented", "Hallo"));
    await svc.post(ev.end("m-invented"));

    text = await svc.metrics.render();
    s = parseExposition(text);
  });
  afterAll(async () => {
    await svc.close();
    await fake.close();
  });

  it("the rendered text is valid exposition format", () => {
    const lines = text.split("\n").filter((l) => l !== "");
    const strictFailures = lines.filter((l) => !SAMPLE_LINE.test(l));
    // prom-client prints an empty event-loop histogram's mean/stddev as "Nan" (Prometheus parses
    // float specials case-insensitively); every other line, and every aiflow_ line, passes the strict rule.
    for (const l of strictFailures) {
      expect(l).toMatch(SAMPLE_LINE_SPECIAL);
      expect(l).toMatch(/^nodejs_eventloop_lag_/);
    }
    for (const l of lines.filter((x) => x.startsWith("aiflow_"))) expect(l).toMatch(SAMPLE_LINE);
    // Every sample belongs to a metric with HELP and TYPE.
    const typed = new Set([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => m[1]!));
    for (const x of s) expect(typed.has(x.name.replace(/_(bucket|sum|count)$/, "")) || typed.has(x.name)).toBe(true);
    expect(svc.metrics.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
  });

  it("counts every event by type", () => {
    const byType = (type: string) => svc.turns.filter((t) => t.event === type).length;
    for (const type of ["session_start", "user_speak", "sms_failed", "session_end"]) {
      expect(value(s, "aiflow_events_total", { type })).toBe(byType(type));
    }
    expect(value(s, "aiflow_events_total", { type: "session_start" })).toBe(5);
    expect(value(s, "aiflow_events_total", { type: "sms_failed" })).toBe(1);
    expect(sum(s, "aiflow_events_total")).toBe(svc.turns.length);
  });

  it("observes every turn in the three timing histograms", () => {
    for (const h of ["aiflow_turn_duration_seconds", "aiflow_turn_model_seconds", "aiflow_turn_engine_seconds"]) {
      expect(sum(s, `${h}_count`)).toBe(svc.turns.length);
      expect(value(s, `${h}_bucket`, { type: "user_speak", le: "+Inf" })).toBe(value(s, `${h}_count`, { type: "user_speak" }));
      // Buckets are cumulative.
      const buckets = s.filter((x) => x.name === `${h}_bucket` && x.labels.type === "session_start").map((x) => x.value);
      expect(buckets).toEqual([...buckets].sort((a, b) => a - b));
      expect(s.filter((x) => x.name === `${h}_bucket` && x.labels.type === "session_start").map((x) => x.labels.le)).toEqual([
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "0.75", "1", "1.5", "2", "3", "5", "7.5", "10", "+Inf",
      ]);
    }
    // A greeting needs no model: its model time is 0, in the lowest bucket.
    const starts = value(s, "aiflow_turn_model_seconds_count", { type: "session_start" });
    expect(value(s, "aiflow_turn_model_seconds_bucket", { type: "session_start", le: "0.005" })).toBe(starts);
    const modelMs = svc.turns.reduce((a, t) => a + t.timings.modelMs, 0);
    expect(sum(s, "aiflow_turn_model_seconds_sum")).toBeCloseTo(modelMs / 1000, 6);
  });

  it("counts model requests by outcome and the tokens they used", () => {
    const requests = svc.turns.flatMap((t) => t.llmRequests);
    const errors = requests.filter((r) => r.error !== undefined);
    expect(errors).toHaveLength(1);
    expect(sum(s, "aiflow_model_requests_total", { outcome: "error" })).toBe(1);
    expect(value(s, "aiflow_model_requests_total", { model: errors[0]!.model, outcome: "error" })).toBe(1);
    expect(sum(s, "aiflow_model_requests_total", { outcome: "ok" })).toBe(requests.length - 1);
    expect(sum(s, "aiflow_model_requests_total")).toBe(fake.requests.length);
    const prompt = requests.reduce((a, r) => a + r.promptTokens, 0);
    expect(prompt).toBeGreaterThan(0);
    expect(value(s, "aiflow_tokens_total", { kind: "prompt" })).toBe(prompt);
    // The fake server reports 5 completion tokens per answered request.
    expect(value(s, "aiflow_tokens_total", { kind: "completion" })).toBe(5 * (requests.length - 1));
  });

  it("counts the SMS sent, refused at the gate and failed", () => {
    expect(value(s, "aiflow_sms_sent_total")).toBe(1);
    expect(value(s, "aiflow_sms_refused_total", { reason: "recipient_rate_limited" })).toBe(1);
    expect(sum(s, "aiflow_sms_refused_total")).toBe(1);
    expect(value(s, "aiflow_sms_failed_total", { reason: "no_sms_extension" })).toBe(1);
    expect(sum(s, "aiflow_sms_failed_total")).toBe(1);
  });

  it("counts consent from the ledger: asked, given, declined", () => {
    const kinds = svc.memory.records.map((r) => r.kind);
    expect(value(s, "aiflow_consent_total", { outcome: "asked" })).toBe(kinds.filter((k) => k === "consent_asked").length);
    expect(value(s, "aiflow_consent_total", { outcome: "asked" })).toBe(3);
    expect(value(s, "aiflow_consent_total", { outcome: "given" })).toBe(2);
    expect(value(s, "aiflow_consent_total", { outcome: "declined" })).toBe(1);
  });

  it("counts guard refusals by subject and reason, with one series for invented tools", () => {
    expect(value(s, "aiflow_guard_refusals_total", { subject: "collect_phone_number", reason: "recipient_number_type_not_allowed" })).toBe(1);
    expect(value(s, "aiflow_guard_refusals_total", { subject: "send_sms", reason: "recipient_rate_limited" })).toBe(1);
    expect(value(s, "aiflow_guard_refusals_total", { subject: "_unknown_tool", reason: "unknown_tool" })).toBe(1);
    expect(text).not.toContain("send_sms_now_please_xyz");
    const refusals = svc.turns.flatMap((t) => t.guardDecisions).filter((d) => !d.allowed).length;
    expect(sum(s, "aiflow_guard_refusals_total")).toBe(refusals);
  });

  it("reads active calls from the store at scrape time", async () => {
    expect(value(s, "aiflow_active_calls")).toBe(await svc.store.size());
    expect(value(s, "aiflow_active_calls")).toBe(2); // m-premium and m-limit never ended
    await svc.post(ev.end("m-premium"));
    expect(value(await svc.scrape(), "aiflow_active_calls")).toBe(1);
  });

  it("includes the default Node process metrics on the same registry", () => {
    expect(text).toMatch(/^process_cpu_user_seconds_total \d/m);
    expect(text).toMatch(/^nodejs_heap_size_used_bytes \d/m);
    expect(text).toMatch(/^nodejs_eventloop_lag_seconds /m);
  });
});

describe("Metrics on its own", () => {
  it("has its own registry: two instances do not collide and do not share values", async () => {
    const a = new Metrics({ defaultMetrics: false });
    const b = new Metrics();
    a.observeTurn({ ...emptyTurnRecord("x", "session_start") });
    expect(value(parseExposition(await a.render()), "aiflow_events_total", { type: "session_start" })).toBe(1);
    expect(value(parseExposition(await b.render()), "aiflow_events_total", { type: "session_start" })).toBe(0);
    expect(await a.render()).not.toMatch(/^process_/m);
  });

  it("fallbacks and errors a model wrapper reports", async () => {
    const m = new Metrics({ defaultMetrics: false });
    m.observeModelFallback("gpt-4o", "gpt-4o-mini");
    m.observeModelFallback("gpt-4o", "gpt-4o-mini");
    m.observeModelError("gpt-4o");
    const s = parseExposition(await m.render());
    expect(value(s, "aiflow_model_fallbacks_total", { from: "gpt-4o", to: "gpt-4o-mini" })).toBe(2);
    expect(value(s, "aiflow_model_requests_total", { model: "gpt-4o", outcome: "error" })).toBe(1);
  });

  it("active calls: set directly, or read from a provider that may fail without failing the scrape", async () => {
    const m = new Metrics({ defaultMetrics: false });
    m.setActiveCalls(7);
    expect(value(parseExposition(await m.render()), "aiflow_active_calls")).toBe(7);
    m.setActiveCallsProvider(async () => 4);
    expect(value(parseExposition(await m.render()), "aiflow_active_calls")).toBe(4);
    m.setActiveCallsProvider(async () => {
      throw new Error("store down");
    });
    expect(value(parseExposition(await m.render()), "aiflow_active_calls")).toBe(4);
  });

  it("bounds label values from outside the code", async () => {
    const m = new Metrics({ defaultMetrics: false, maxLabelValues: 3 });
    for (let i = 0; i < 10; i++) {
      const t = emptyTurnRecord("x", "user_speak");
      t.guardDecisions.push({ subject: `tool_${i}`, allowed: false, reason: "batched_after_transition" });
      t.llmRequests.push({ step: "main", model: `model-${i}\n"quoted"\\`, tools: [], ms: 10, promptTokens: 1, completionTokens: 1 });
      m.observeTurn(t);
    }
    const text = await m.render();
    const s = parseExposition(text);
    expect(s.filter((x) => x.name === "aiflow_guard_refusals_total").map((x) => x.labels.subject)).toEqual(["tool_0", "tool_1", "tool_2", "other"]);
    expect(value(s, "aiflow_guard_refusals_total", { subject: "other" })).toBe(7);
    expect(value(s, "aiflow_model_requests_total", { model: 'model-0\n"quoted"\\' })).toBe(1);
    for (const l of text.split("\n").filter((x) => x && !x.startsWith("#"))) expect(l).toMatch(SAMPLE_LINE);
  });

  it("ignores nonsense timings and token counts rather than throwing", async () => {
    const m = new Metrics({ defaultMetrics: false });
    const t = emptyTurnRecord("x", "user_speak");
    t.timings = { totalMs: Number.NaN, modelMs: -5, engineMs: Number.POSITIVE_INFINITY };
    t.llmRequests.push({ step: "main", model: "m", tools: [], ms: 1, promptTokens: Number.NaN, completionTokens: -1 });
    m.observeTurn(t);
    const s = parseExposition(await m.render());
    expect(value(s, "aiflow_turn_duration_seconds_count", { type: "user_speak" })).toBe(1);
    expect(value(s, "aiflow_tokens_total", { kind: "prompt" })).toBe(0);
  });

  it("a duplicate redelivery's withheld SMS counts as refused, not sent", async () => {
    const m = new Metrics({ defaultMetrics: false });
    const t = emptyTurnRecord("x", "user_speak");
    t.duplicate = true;
    t.guardDecisions.push({ subject: "send_sms", allowed: false, reason: "duplicate_event" });
    m.observeTurn(t);
    const s = parseExposition(await m.render());
    expect(value(s, "aiflow_sms_sent_total")).toBe(0);
    expect(value(s, "aiflow_sms_refused_total", { reason: "duplicate_event" })).toBe(1);
  });
});

describe("MeteredLedger", () => {
  it("forwards to the inner ledger and counts only durable appends", async () => {
    const m = new Metrics({ defaultMetrics: false });
    const inner = new MemoryLedger();
    const ledger = new MeteredLedger(inner, m);
    await ledger.ready();
    await ledger.append({ id: "c:t1:consent_asked:0", kind: "consent_asked", callId: "c", at: "2026-11-23T09:00:00.000Z", number: CALLER });
    await ledger.append({ id: "c:t2:sms_failed:0", kind: "sms_failed", callId: "c", at: "2026-11-23T09:00:01.000Z", outcome: "smsc_unavailable" });
    await ledger.append({ id: "c:t2:sms_sent:0", kind: "sms_sent", callId: "c", at: "2026-11-23T09:00:02.000Z", outcome: "sent" });
    inner.failWrites = true;
    await expect(ledger.append({ id: "c:t3:consent_given:0", kind: "consent_given", callId: "c", at: "2026-11-23T09:00:03.000Z" })).rejects.toThrow(/ledger unavailable/);
    await ledger.close();
    expect(inner.records.map((r) => r.kind)).toEqual(["consent_asked", "sms_failed", "sms_sent"]);
    const s = parseExposition(await m.render());
    expect(value(s, "aiflow_consent_total", { outcome: "asked" })).toBe(1);
    expect(value(s, "aiflow_consent_total", { outcome: "given" })).toBe(0);
    expect(value(s, "aiflow_sms_failed_total", { reason: "smsc_unavailable" })).toBe(1);
    // sms_sent is counted from the actions that left, not from the ledger.
    expect(value(s, "aiflow_sms_sent_total")).toBe(0);
  });

  it("a metrics failure never fails an append (the gate would refuse an SMS already on record)", async () => {
    const inner = new MemoryLedger();
    const ledger = new MeteredLedger(inner, {
      observeLedger() {
        throw new Error("metrics bug");
      },
    });
    await expect(ledger.append({ id: "c:t1:consent_given:0", kind: "consent_given", callId: "c", at: "2026-11-23T09:00:00.000Z" })).resolves.toBeUndefined();
    expect(inner.records).toHaveLength(1);
  });
});
