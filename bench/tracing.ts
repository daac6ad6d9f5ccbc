import { readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { pathToFileURL } from "node:url";
import { pino } from "pino";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { loadConfigFile, parseConfig } from "../src/appConfig.js";
import type { AppConfig } from "../src/appConfig.js";
import { NO_TRACING, installTracing, telemetry, type Tracing } from "../src/core/telemetry.js";
import { ManualClock } from "../src/engine/clock.js";
import { MemoryLedger } from "../src/ledger/memoryLedger.js";
import { ScriptedModel } from "../src/llm/scriptedModel.js";
import { createService } from "../src/service.js";
import { OtelTracing } from "../src/telemetry/otelTracing.js";
import { noLoadLimits } from "./deadline.js";

/**
 * Bench row (h): what tracing costs per call event, in one process and one run.
 *   off      the service as it runs without OTEL_EXPORTER_OTLP_ENDPOINT (the no-op tracer);
 *   on       OtelTracing exporting every span (OTLP/HTTP protobuf, batched) to a local sink;
 *   facade   the no-op tracer's own share: how many tracing calls an event makes (counted), times
 *            what one no-op call costs over calling the work directly (timed over many calls):
 *            the difference between "off" and a build without the tracing code path.
 * The same calls are played through the real service (webhook via inject, engine, gate, memory
 * store and ledger, the scripted model) for off and on, alternating, each CPU figure the median
 * of several rounds. Runs alone: `npx tsx bench/tracing.ts` prints the JSON and the rows, and
 * with `--update` puts them into the checked-in bench/results.json and bench/results.md in place of
 * the (h) rows there (the rest of the run's figures stay); `npm run bench` includes it.
 */

export interface TracingResult {
  events: number;
  rounds: number;
  offCpuUsPerEvent: number;
  onCpuUsPerEvent: number;
  onRatio: number;
  spansPerEvent: number;
  facadeCallsPerEvent: number;
  facadeNsPerCall: number;
  facadeUsPerEvent: number;
  facadeRatio: number;
}

const CALLS = Number(process.env.BENCH_TRACING_CALLS ?? 200);
const ROUNDS = Number(process.env.BENCH_TRACING_ROUNDS ?? 5);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;

function benchConfig(): AppConfig {
  const base = loadConfigFile("config/agent.yaml");
  const open = { max: 1e9, windowSeconds: 60 };
  // Calls as fast as the machine allows: no load limits (the cost per event is measured, not refusals).
  return noLoadLimits(parseConfig({ ...base, logLevel: "silent", tasks: { sms: { ...base.tasks.sms, recipients: { ...base.tasks.sms.recipients, perRecipient: open }, abuse: { perCaller: open, perPrefix: { ...open, prefixDigits: 3 }, perCountry: open, global: open } } } }));
}

let played = 0;
/** One caller's call as bench (a) plays it: greeting, SMS request, consent, goodbye. */
function callEvents(): Array<Record<string, unknown>> {
  const n = ++played;
  const session = { id: `trace-bench-${n}`, account_id: "bench", phone_number: "4921112345678", direction: "inbound", from_phone_number: `49151${String(n % 100_000_000).padStart(8, "0")}`, to_phone_number: "4921112345678" };
  return [
    { type: "session_start" },
    { type: "user_speak", text: "Können Sie mir die Öffnungszeiten per SMS schicken?" },
    { type: "assistant_speech_ended" },
    { type: "user_speak", text: "Ja, gerne." },
    { type: "assistant_speech_ended" },
    { type: "user_speak", text: "Danke, das war's. Tschüss!" },
    { type: "assistant_speech_ended" },
    { type: "session_end" },
  ].map((e) => ({ ...e, session }));
}

/** Plays `calls` calls, 20 at a time, through a fresh service with this tracer; returns CPU µs and events. */
async function play(config: AppConfig, tracing: Tracing, calls: number): Promise<{ cpuUs: number; events: number }> {
  const service = createService({ clock: new ManualClock(), config, model: new ScriptedModel(), ledger: new MemoryLedger(), logger: pino({ level: "silent" }), tracing });
  await service.app.ready();
  let events = 0;
  const playOne = async () => {
    for (const e of callEvents()) {
      const res = await service.app.inject({ method: "POST", url: "/webhook", headers: { "content-type": "application/json" }, payload: JSON.stringify(e) });
      if (res.statusCode >= 300) throw new Error(`bench call answered ${res.statusCode}: ${res.body}`);
      events++;
    }
  };
  const before = process.cpuUsage();
  for (let done = 0; done < calls; done += 20) await Promise.all(Array.from({ length: Math.min(20, calls - done) }, playOne));
  // Closing flushes what tracing still buffers: its export is part of its cost.
  await service.close();
  const c = process.cpuUsage(before);
  return { cpuUs: c.user + c.system, events };
}

/** Counts the tracing calls the engine makes (as the no-op tracer, nothing recorded). */
function countingTracer(): { tracing: Tracing; count: () => number } {
  let n = 0;
  const tracing: Tracing = {
    enabled: false,
    span: (name, attrs, work, kind) => (n++, NO_TRACING.span(name, attrs, work, kind)),
    note: () => void n++,
    event: () => void n++,
    callEvent: (e, via, key, work) => (n++, NO_TRACING.callEvent(e, via, key, work)),
    turn: (c, k, s, t, work) => (n++, NO_TRACING.turn(c, k, s, t, work)),
    traceparent: () => (n++, undefined),
    delivered: () => void n++,
    bind: (fn) => (n++, fn),
    shutdown: async () => {},
  };
  return { tracing, count: () => n };
}

/** ns one no-op `telemetry.span` costs over calling its work directly (the facade's forwarding, the closures). */
function facadeNsPerCall(): number {
  const uninstall = installTracing(NO_TRACING);
  const N = 1_000_000;
  let sink = 0;
  const work = (x: number) => x + 1;
  const direct = () => {
    const t = process.hrtime.bigint();
    for (let i = 0; i < N; i++) sink = work(sink);
    return Number(process.hrtime.bigint() - t);
  };
  const traced = () => {
    const t = process.hrtime.bigint();
    for (let i = 0; i < N; i++) sink = telemetry.span("bench", () => ({ "aiflow.i": i }), () => work(sink));
    return Number(process.hrtime.bigint() - t);
  };
  const diffs: number[] = [];
  for (let r = 0; r < Math.max(3, ROUNDS); r++) diffs.push((traced() - direct()) / N);
  uninstall();
  if (sink < 0) console.log(sink);
  return Math.max(0, median(diffs));
}

export async function tracingScenario(): Promise<TracingResult> {
  const config = benchConfig();
  // A local OTLP/HTTP sink: the exporter's serialization and posting count, the receiver's work is tiny.
  let spansBytes = 0;
  const sink = createServer((req, res) => {
    req.on("data", (c: Buffer) => (spansBytes += c.length));
    req.on("end", () => res.writeHead(200).end());
  });
  await new Promise<void>((r) => sink.listen(0, "127.0.0.1", () => r()));
  const url = `http://127.0.0.1:${(sink.address() as AddressInfo).port}/v1/traces`;
  let spans = 0;
  const onTracing = () => {
    const exporter = new OTLPTraceExporter({ url });
    const counting = { export: exporter.export.bind(exporter), shutdown: () => exporter.shutdown(), forceFlush: () => exporter.forceFlush() };
    return new OtelTracing(config, {
      ...counting,
      export: (batch, done) => {
        spans += batch.length;
        counting.export(batch, done);
      },
    }, []);
  };

  // Warm-up (JIT, caches), then off and on alternating.
  await play(config, NO_TRACING, Math.min(40, CALLS));
  await play(config, onTracing(), Math.min(40, CALLS));
  spans = 0;
  const off: number[] = [];
  const on: number[] = [];
  let events = 0;
  let onEvents = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const a = await play(config, NO_TRACING, CALLS);
    off.push(a.cpuUs / a.events);
    const b = await play(config, onTracing(), CALLS);
    on.push(b.cpuUs / b.events);
    events += a.events + b.events;
    onEvents += b.events;
  }
  const counter = countingTracer();
  const counted = await play(config, counter.tracing, 20);
  const callsPerEvent = counter.count() / counted.events;
  await new Promise<void>((r) => sink.close(() => r()));
  if (spansBytes === 0) throw new Error("tracing on exported nothing: the bench would compare nothing");

  const ns = facadeNsPerCall();
  const offCpu = median(off);
  const onCpu = median(on);
  const facadeUs = (callsPerEvent * ns) / 1000;
  return {
    events,
    rounds: ROUNDS,
    offCpuUsPerEvent: offCpu,
    onCpuUsPerEvent: onCpu,
    onRatio: onCpu / offCpu,
    spansPerEvent: spans / onEvents,
    facadeCallsPerEvent: callsPerEvent,
    facadeNsPerCall: ns,
    facadeUsPerEvent: facadeUs,
    facadeRatio: facadeUs / offCpu,
  };
}

/** The rows of bench/results.md. */
export function tracingRows(t: TracingResult, ok: (met: boolean) => string): string {
  const f = (x: number, d = 1) => x.toFixed(d);
  return [
    `| (h) server CPU per event, tracing off / on (every span exported over OTLP/HTTP) | ${f(t.offCpuUsPerEvent, 0)} / ${f(t.onCpuUsPerEvent, 0)} µs (${f(t.spansPerEvent)} spans per event; ${t.events} events) | tracing off: ${f(t.offCpuUsPerEvent, 0)} µs | ${f(t.onRatio, 2)}× | | |`,
    `| (h) tracing off: the no-op tracer's share of an event | ${f(t.facadeUsPerEvent, 2)} µs (${f(t.facadeCallsPerEvent)} calls × ${f(t.facadeNsPerCall)} ns) | CPU per event, tracing off: ${f(t.offCpuUsPerEvent, 0)} µs | ${(t.facadeRatio * 100).toFixed(2)} % | ≤ 1 % | ${ok(t.facadeRatio <= 0.01)} |`,
  ].join("\n");
}

/** How row (h) is measured, for the notes under the table. */
export function tracingNote(t: TracingResult, alone?: string): string {
  return `- (h) bench/tracing.ts${alone ? `, run alone (\`npx tsx bench/tracing.ts --update\`, ${alone})` : ", in this process"}: the same calls as (a) through the real service (inject, engine, gate, memory store and ledger, scripted model), ${t.rounds} rounds, each playing them with tracing off (the no-op tracer, as without OTEL_EXPORTER_OTLP_ENDPOINT) and then on (every span batched and exported over OTLP/HTTP protobuf to a local sink), CPU time of the process per event (the in-process client, \`inject\`, included), medians. The no-op tracer's share: the tracing calls an event makes (counted) times what one no-op call costs over calling its work directly (timed over 1 million calls, ${Math.max(3, t.rounds)} times, median), i.e. off against a build without the tracing code path.`;
}

/** Row (h) into the checked-in results, the other rows as they were measured. */
function updateCheckedIn(t: TracingResult): void {
  const ok = (m: boolean) => (m ? "met" : "**missed**");
  const json = JSON.parse(readFileSync("bench/results.json", "utf8")) as Record<string, unknown> & { targets: Record<string, unknown> };
  json.tracing = { ...t, measuredAlone: new Date().toISOString() };
  json.targets.tracingOff = { value: t.facadeRatio, target: "tracing off costs ≤ 1 % of an event's CPU", met: t.facadeRatio <= 0.01 };
  writeFileSync("bench/results.json", JSON.stringify(json, null, 2));
  const lines = readFileSync("bench/results.md", "utf8").split("\n").filter((l) => !l.startsWith("| (h) ") && !l.startsWith("- (h) "));
  const lastRow = lines.findLastIndex((l) => /^\| \([a-z]\) /.test(l));
  lines.splice(lastRow + 1, 0, tracingRows(t, ok));
  const lastNote = lines.findLastIndex((l) => /^- \([a-z]\) /.test(l));
  lines.splice(lastNote + 1, 0, tracingNote(t, `${process.version}, ${new Date().toISOString()}`));
  writeFileSync("bench/results.md", lines.join("\n"));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const result = await tracingScenario();
  console.log(JSON.stringify(result, null, 2));
  console.log(tracingRows(result, (m) => (m ? "met" : "**missed**")));
  if (process.argv.includes("--update")) updateCheckedIn(result);
  process.exit(0);
}
