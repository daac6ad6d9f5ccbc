import { smsConfig } from "../src/tasks/sms/config.js";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { pathToFileURL } from "node:url";
import autocannon from "autocannon";
import { pino } from "pino";
import { loadScenarios } from "../evals/harness/scenario.js";
import { runTrial, type TrialResult } from "../evals/harness/runTrial.js";
import { loadConfigFile } from "../src/appConfig.js";
import type { AppConfig } from "../src/appConfig.js";
import { CALLER_TURNS } from "../src/aiflow/eventKinds.js";

import { initialCallState } from "../src/tasks/sms/state.js";
import { PromptLibrary } from "../src/engine/promptLibrary.js";
import { receptionFlow } from "../tools/reception/agent.js";
import { parseEvent } from "../src/aiflow/events.js";
import { MemoryLedger } from "../src/ledger/memoryLedger.js";
import { NumberHasher } from "../src/ledger/numberHash.js";
import { MemoryRateLimiter } from "../src/store/rateLimiter.js";
import { ScriptedModel } from "../src/llm/scriptedModel.js";
import { toolSpec } from "../src/llm/toolSchema.js";
import { PROMPTS_DIR, createService } from "../src/service.js";
import { WS_ANSWER, deadlineScenario, openLimits, wsSpeech, type DeadlineResult, type WsSpeechResult } from "./deadline.js";
import { concurrencyScenario, type ConcurrencyResult } from "./concurrency.js";
import { burstMet, burstTarget, concurrencyRows } from "./burstRows.js";
import { capacityOptionsFrom, capacityRows, capacityScenario } from "./capacity.js";
import { capacityMet, capacityNote, capacityTarget, runOnly } from "./only.js";
import { ledgerAppendScenario, type LedgerAppendResult } from "./ledgerAppend.js";
import { BENCH_USAGE, BenchUsageError, benchOutput } from "./outputs.js";
import { tracingNote, tracingRows, tracingScenario } from "./tracing.js";
import { callHistoryTokens, loadTokenizer, tokenCounted } from "./tokens.js";
import { peerCompare, peerNote, peerRows, PEER_MODEL_MS } from "./peerCompare.js";
import { CONSENT_TURN_TARGET, consentTurnMet, consentTurnNote, consentTurnRows, consentTurnScenario } from "./consentTurn.js";

/** The caller's turns, as the transcript names its events (strings). */
const callerTurns: ReadonlySet<string> = CALLER_TURNS;

/**
 * `npm run bench`: every figure is a ratio against a baseline measured in the same run, and
 * each timing a median of several runs (these machines are shared and noisy).
 * Writes results.md and results.json to bench/out/; `--update` overwrites the checked-in
 * bench/results.md and bench/results.json (see outputs.ts).
 */

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 6);
const CONNECTIONS = 20;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
const log = (s: string) => process.stderr.write(s + "\n");

// ---------------------------------------------------------------- (a) webhook overhead
type ServerKind = "bare" | "intake" | "agent";

async function startServer(kind: ServerKind): Promise<{ proc: ChildProcess; url: string }> {
  const { createServer } = await import("node:net");
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  const proc = spawn(process.execPath, ["--import", "tsx", "bench/servers.ts", kind, String(port)], { stdio: ["ignore", "pipe", "inherit"] });
  await new Promise<void>((resolve, reject) => {
    proc.stdout!.on("data", (c) => String(c).includes("ready") && resolve());
    proc.on("exit", (code) => reject(new Error(`${kind} server exited ${code}`)));
  });
  return { proc, url: `http://127.0.0.1:${port}` };
}

/** Calls played so far by this process: every call its own id and caller (autocannon starts each sequence with a fresh context). */
let callsPlayed = 0;

/** One caller's call, as sipgate posts it: greeting, SMS request, consent, goodbye. */
function callMix(): autocannon.Request[] {
  const session = (ctx: Record<string, unknown>) => ({
    id: `bench-${process.pid}-${ctx.call}`,
    account_id: "bench",
    phone_number: "4921112345678",
    direction: "inbound",
    // A different valid German mobile number for every call (4915x + 8 digits).
    from_phone_number: `49151${String((ctx.call as number) % 100_000_000).padStart(8, "0")}`,
    to_phone_number: "4921112345678",
  });
  const step = (event: Record<string, unknown>, first = false): autocannon.Request => ({
    method: "POST",
    path: "/webhook",
    headers: { "content-type": "application/json" },
    setupRequest: (req, context) => {
      const ctx = context as Record<string, unknown>;
      if (first || ctx.call === undefined) ctx.call = ++callsPlayed;
      return { ...req, body: JSON.stringify({ ...event, session: session(ctx) }) };
    },
  });
  return [
    step({ type: "session_start" }, true),
    step({ type: "user_speak", text: "Können Sie mir die Öffnungszeiten per SMS schicken?" }),
    step({ type: "assistant_speech_ended" }),
    step({ type: "user_speak", text: "Ja, gerne." }),
    step({ type: "assistant_speech_ended" }),
    step({ type: "user_speak", text: "Danke, das war's. Tschüss!" }),
    step({ type: "assistant_speech_ended" }),
    step({ type: "session_end" }),
  ];
}

/** The server's own CPU time and requests served so far (GET /bench/cpu, see servers.ts). */
async function serverCpu(url: string): Promise<{ cpuUs: number; requests: number }> {
  return (await (await fetch(`${url}/bench/cpu`)).json()) as { cpuUs: number; requests: number };
}

/**
 * Every server gets the same client workload (the same call mix), so client cost cancels out.
 * Also the server process's CPU time per request it answered: what the webhook costs on the
 * server, whatever the client and the neighbours on this machine take.
 */
async function load(url: string, seconds = SECONDS) {
  const before = await serverCpu(url);
  const result = await autocannon({ url, connections: CONNECTIONS, duration: seconds, requests: callMix() });
  const after = await serverCpu(url);
  if (result.non2xx > 0 || result.errors > 0) throw new Error(`load run had ${result.non2xx} non-2xx and ${result.errors} errors`);
  // The /bench/cpu request itself is among those counted after: leave it out.
  const requests = after.requests - before.requests - 1;
  return { rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99, cpuUsPerRequest: (after.cpuUs - before.cpuUs) / Math.max(1, requests) };
}

async function benchWebhook() {
  const bare = await startServer("bare");
  const intake = await startServer("intake");
  const agent = await startServer("agent");
  type Load = Awaited<ReturnType<typeof load>>;
  const runs: Array<{ bare: Load; intake: Load; agent: Load; engine: { p50: number; p99: number; n: number } }> = [];
  try {
    // Warm all up (JIT, connection pools) before anything is measured.
    await load(bare.url, 1);
    await load(intake.url, 1);
    await load(agent.url, 1);
    await fetch(`${agent.url}/bench/engine`);
    for (let i = 0; i < RUNS; i++) {
      log(`(a) run ${i + 1}/${RUNS}`);
      const b = await load(bare.url);
      const n = await load(intake.url);
      const a = await load(agent.url);
      const engine = (await (await fetch(`${agent.url}/bench/engine`)).json()) as { p50: number; p99: number; n: number };
      runs.push({ bare: b, intake: n, agent: a, engine });
    }
  } finally {
    bare.proc.kill();
    intake.proc.kill();
    agent.proc.kill();
  }
  const m = (f: (r: (typeof runs)[number]) => number) => median(runs.map(f));
  return {
    ceilingRps: m((r) => r.bare.rps),
    agentRps: m((r) => r.agent.rps),
    throughputRatio: m((r) => r.agent.rps / r.bare.rps),
    ceilingP50Ms: m((r) => r.bare.p50),
    ceilingP99Ms: m((r) => r.bare.p99),
    agentP50Ms: m((r) => r.agent.p50),
    agentP99Ms: m((r) => r.agent.p99),
    ceilingCpuUs: m((r) => r.bare.cpuUsPerRequest),
    intakeCpuUs: m((r) => r.intake.cpuUsPerRequest),
    intakeRps: m((r) => r.intake.rps),
    agentCpuUs: m((r) => r.agent.cpuUsPerRequest),
    cpuRatio: m((r) => r.agent.cpuUsPerRequest / r.bare.cpuUsPerRequest),
    engineP50Ms: m((r) => r.engine.p50),
    engineP99Ms: m((r) => r.engine.p99),
    turnsMeasured: runs.reduce((a, r) => a + r.engine.n, 0),
    runs,
  };
}

// ---------------------------------------------------------------- (b) round trips and prompt size
export async function benchRoundTrips() {
  // Tokens counted with the model family's tokenizer (tokens.ts), the same for both designs.
  const tok = await loadTokenizer();
  const estimate = (x: unknown) => tok.count(JSON.stringify(x));
  const scenarios = loadScenarios("evals/scenarios").filter((s) => !s.expectFailure && !s.persona);
  const configs: Record<string, AppConfig> = { "de-DE": loadConfigFile("config/agent.yaml"), "en-US": loadConfigFile("config/agent.en-US.yaml") };
  const results: Array<{ scenario: TrialResult; happy: boolean; lang: string }> = [];
  for (const s of scenarios) results.push({ scenario: await runTrial(s, { config: configs[s.language]!, model: tokenCounted(new ScriptedModel(), tok), modelName: "scripted", trial: 1 }), happy: s.tags.includes("happy"), lang: s.language });

  // The naive baseline: one monolithic prompt with every step's instructions and every tool, and
  // a second completion after every tool call (also the send, which is a code step here).
  const stepOverhead = (lang: string) => {
    const config = configs[lang]!;
    const prompts = new PromptLibrary(PROMPTS_DIR, config.language);
    // Tool schemas and prompt values read only the config; the ledger and limits are not touched here.
    const services = { config: smsConfig(config.tasks.sms, config), ledger: new MemoryLedger(), limiter: new MemoryRateLimiter(), hasher: NumberHasher.full(), transfer: config.agents.reception!.transfer };
    const values = receptionFlow.promptValues(initialCallState({ sessionId: "b", direction: "inbound", language: config.language, step: "main", callerNumber: "4915112345678" }), services);
    const fill = (t: string) => t.replace(/\{([a-z_]+)\}/g, (m, k: string) => values[k] ?? m);
    const spec = (t: (typeof receptionFlow.steps)[number]["tools"][number]) => toolSpec(t.name, prompts.toolDescription(t.name), t.parameters(services), true);
    const llmSteps = receptionFlow.steps.filter((s) => s.kind === "llm");
    const allTools = receptionFlow.steps.flatMap((s) => s.tools).filter((t, i, a) => a.findIndex((x) => x.name === t.name) === i);
    const monolith = estimate([fill(prompts.persona), ...llmSteps.map((s) => fill(prompts.stepPrompt(s.prompt))), allTools.map(spec)]);
    return { monolith };
  };
  const overhead = { "de-DE": stepOverhead("de-DE"), "en-US": stepOverhead("en-US") } as Record<string, ReturnType<typeof stepOverhead>>;

  const measure = (subset: typeof results) => {
    let turns = 0;
    let oursRequests = 0;
    let naiveRequests = 0;
    let oursTokens = 0;
    let naiveTokens = 0;
    let tokenRequestsNaive = 0;
    let maxSequential = 0;
    for (const { scenario, lang } of subset) {
      const o = overhead[lang]!;
      for (const [index, t] of scenario.transcript.entries()) {
        if (!t.events.some((e) => callerTurns.has(e))) continue;
        turns++;
        oursRequests += t.llmRequests.length;
        maxSequential = Math.max(maxSequential, t.llmRequests.length);
        // Naive: every caller turn asks the model, then once more after each tool call (the send too).
        const naiveHere = 1 + t.toolCalls.length;
        naiveRequests += naiveHere;
        const first = t.llmRequests[0];
        if (!first) continue;
        for (const r of t.llmRequests) oursTokens += r.promptTokens;
        // The whole call's history (a monolithic agent sends all of it), the monolithic prompt and every tool.
        const history = callHistoryTokens(tok, scenario.transcript, index);
        naiveTokens += naiveHere * (history + o.monolith);
        tokenRequestsNaive += naiveHere;
      }
    }
    const ourPerRequest = oursTokens / Math.max(1, oursRequests);
    const naivePerRequest = naiveTokens / Math.max(1, tokenRequestsNaive);
    return {
      callerTurns: turns,
      requestsPerTurn: oursRequests / turns,
      naiveRequestsPerTurn: naiveRequests / turns,
      promptTokensPerRequest: ourPerRequest,
      naivePromptTokensPerRequest: naivePerRequest,
      tokenRatio: ourPerRequest / naivePerRequest,
      maxSequentialRequestsInATurn: maxSequential,
    };
  };
  return { happyPath: measure(results.filter((r) => r.happy)), suite: measure(results) };
}

type RoundTrips = Awaited<ReturnType<typeof benchRoundTrips>>;

export function roundTripTargets(roundTrips: RoundTrips) {
  return {
    happyPathRequests: { value: roundTrips.happyPath.requestsPerTurn, target: "≤ 1.2 sequential requests per caller turn", met: roundTrips.happyPath.requestsPerTurn <= 1.2 },
    promptTokens: { value: roundTrips.suite.tokenRatio, target: "≤ ½ of the naive baseline per request", met: roundTrips.suite.tokenRatio <= 0.5 },
  };
}

/** Row (b)'s lines of results.md (bench/roundTripsAlone.ts writes them alone too). */
export function roundTripRows(roundTrips: RoundTrips, ok: (met: boolean) => string): string {
  const f = (x: number, d = 2) => x.toFixed(d);
  const t = roundTripTargets(roundTrips);
  return `| (b) LLM requests per caller turn, happy path | ${f(roundTrips.happyPath.requestsPerTurn)} | naive: ${f(roundTrips.happyPath.naiveRequestsPerTurn)} | ${f(roundTrips.happyPath.requestsPerTurn / roundTrips.happyPath.naiveRequestsPerTurn)}× | ≤ 1.2 | ${ok(t.happyPathRequests.met)} |
| (b) LLM requests per caller turn, eval suite | ${f(roundTrips.suite.requestsPerTurn)} | naive: ${f(roundTrips.suite.naiveRequestsPerTurn)} | ${f(roundTrips.suite.requestsPerTurn / roundTrips.suite.naiveRequestsPerTurn)}× | | |
| (b) prompt tokens per request, happy path | ${f(roundTrips.happyPath.promptTokensPerRequest, 0)} | naive: ${f(roundTrips.happyPath.naivePromptTokensPerRequest, 0)} | ${f(roundTrips.happyPath.tokenRatio, 3)}× | | |
| (b) prompt tokens per request, eval suite | ${f(roundTrips.suite.promptTokensPerRequest, 0)} | naive: ${f(roundTrips.suite.naivePromptTokensPerRequest, 0)} | ${f(roundTrips.suite.tokenRatio, 3)}× | ≤ 0.5× | ${ok(t.promptTokens.met)} |`;
}

export function roundTripNote(roundTrips: RoundTrips): string {
  return `- (b) the offline eval suite (${roundTrips.suite.callerTurns} caller turns; happy path: ${roundTrips.happyPath.callerTurns}) through the real engine. The naive baseline is built here from the same transcripts: one monolithic prompt with every step's instructions and all tools, the whole call's history (rebuilt from the transcript: caller lines, the model's tool calls with their results, spoken lines), and a second completion after every tool call (the send included). Prompt tokens of both designs are counted with the o200k_base tokenizer (gpt-tokenizer, bench/tokens.ts) over each request's messages and tools as JSON.`;
}

// ---------------------------------------------------------------- (c) time to first speech (WebSocket)
const TTFT = 300;
const TOKEN = 25;
const SLOW_TTFT = 1000;
const wsSamples = () => Math.max(5, RUNS * 3);

/** Sentence streaming on (speech.streamSentences): the first sentence leaves while the model still writes. */
async function benchFirstSpeech() {
  const streamed = await wsSpeech({ ttftMs: TTFT, tokenMs: TOKEN, streamSentences: true, samples: wsSamples() });
  const firstSentenceWords = WS_ANSWER.split(". ")[0]!.split(" ").length;
  const ideal = TTFT + (firstSentenceWords - 1) * TOKEN;
  const samples = streamed.samples.map((s) => s.firstSpeakMs);
  return { result: { ttftMs: TTFT, tokenMs: TOKEN, idealMs: ideal, firstSpeechMs: median(samples), ratio: median(samples) / ideal, samples }, streamed };
}

// ---------------------------------------------------------------- (e) answer deadline
const DEADLINE_CALLS = Number(process.env.BENCH_DEADLINE_CALLS ?? 20);
const DEADLINE_MODELS_MS = [3000, 300];

/** Whole calls over the webhook against a slow and a quick model; first speech over the WebSocket with streaming off and on. */
async function benchDeadline(streamedAt300: WsSpeechResult) {
  const webhook: DeadlineResult[] = [];
  for (const modelMs of DEADLINE_MODELS_MS) {
    log(`(e) webhook, model ${modelMs} ms per request, ${DEADLINE_CALLS} calls`);
    webhook.push(await deadlineScenario({ modelMs, calls: DEADLINE_CALLS, concurrency: 5, speechMs: 300 }));
  }
  log("(e) WebSocket, streaming off and on");
  const websocket: WsSpeechResult[] = [streamedAt300];
  for (const [ttftMs, streamSentences] of [[TTFT, false], [SLOW_TTFT, true], [SLOW_TTFT, false]] as const) websocket.push(await wsSpeech({ ttftMs, tokenMs: TOKEN, streamSentences, samples: wsSamples() }));
  return { webhook, websocket };
}

// ---------------------------------------------------------------- (f) many calls at once on Redis
const CONCURRENT_CALLS = Number(process.env.BENCH_CONCURRENT_CALLS ?? 1000);

/** One instance on Redis, a model taking 100–500 ms, CONCURRENT_CALLS whole calls started within a second (see concurrency.ts). */
async function benchConcurrency(): Promise<ConcurrencyResult> {
  log(`(f) ${CONCURRENT_CALLS} calls at once, one instance on Redis, model 100–500 ms`);
  return concurrencyScenario({ calls: CONCURRENT_CALLS });
}

// ---------------------------------------------------------------- (g) consent-ledger append
const LEDGER_APPENDS = Number(process.env.BENCH_LEDGER_APPENDS ?? 300);

/** One append's time: four PostgreSQL instances at once against one alone, and the file ledger (see ledgerAppend.ts). */
async function benchLedgerAppend(): Promise<LedgerAppendResult> {
  log(`(g) consent-ledger append, ${LEDGER_APPENDS} appends per writer: PostgreSQL alone, four instances at once; file`);
  return ledgerAppendScenario({ appends: LEDGER_APPENDS });
}

function ledgerRows(g: LedgerAppendResult, answerWithinMs: number, ok: (met: boolean) => string): string {
  const p = g.postgres;
  const share = (ms: number) => `${Math.round((ms / answerWithinMs) * 100)} % of server.answerWithinMs`;
  const chain = (c: { records: number; ok: boolean }) => (c.ok ? `chain of ${c.records} verified` : `**chain of ${c.records} did not verify**`);
  return [
    `| (g) consent-ledger append p50 / p99, PostgreSQL, 4 instances appending at once (4 processes, a pool each) | ${p.fourAtOnce.p50Ms} / ${p.fourAtOnce.p99Ms} ms (max ${p.fourAtOnce.maxMs} ms; ${p.fourAtOnce.n} appends; p99 ${share(p.fourAtOnce.p99Ms)}; ${chain(p.chain)}) | one instance alone: ${p.alone.p50Ms} / ${p.alone.p99Ms} ms | p50 ${p.ratioP50}×, p99 ${p.ratioP99}× | p99 ≤ ${answerWithinMs} ms | ${ok(p.fourAtOnce.p99Ms <= answerWithinMs && p.chain.ok)} |`,
    `| (g) consent-ledger append p50 / p99, file ledger, one writer | ${g.file.oneWriter.p50Ms} / ${g.file.oneWriter.p99Ms} ms (max ${g.file.oneWriter.maxMs} ms; ${g.file.oneWriter.n} appends; ${chain(g.file.chain)}) | | | p99 ≤ ${answerWithinMs} ms | ${ok(g.file.oneWriter.p99Ms <= answerWithinMs && g.file.chain.ok)} |`,
  ].join("\n");
}

// ---------------------------------------------------------------- (d) memory per live call
async function benchMemory() {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error("run with node --expose-gc (npm run bench does)");
  const N = Number(process.env.BENCH_CALLS ?? 5000);
  const service = createService({ config: openLimits(loadConfigFile("config/agent.yaml")), model: new ScriptedModel(), ledger: new MemoryLedger(), logger: pino({ level: "silent" }) });
  const handle = async (e: unknown) => {
    const p = parseEvent(e);
    if (p.kind === "event") await service.pipeline.process(p.event);
  };
  // Warm up code paths before measuring.
  for (let i = 0; i < 50; i++) await handle({ type: "session_start", session: { id: `warm-${i}`, from_phone_number: "4915112345678" } });
  for (let i = 0; i < 50; i++) await handle({ type: "session_end", session: { id: `warm-${i}` } });
  gc();
  const before = process.memoryUsage();
  for (let i = 0; i < N; i++) {
    const session = { id: `mem-${i}`, account_id: "b", phone_number: "4921112345678", from_phone_number: `49151${String(i).padStart(8, "0")}`, to_phone_number: "4921112345678" };
    await handle({ type: "session_start", session });
    await handle({ type: "user_speak", text: "Können Sie mir die Öffnungszeiten per SMS schicken?", session });
  }
  gc();
  const after = process.memoryUsage();
  const live = await service.store.size();
  await service.close();
  const perCall = (after.heapUsed + after.external - before.heapUsed - before.external) / live;
  return { calls: live, bytesPerCall: Math.round(perCall), callsPerGiB: Math.floor(2 ** 30 / perCall) };
}

// ---------------------------------------------------------------- report
function deadlineRows(d: Awaited<ReturnType<typeof benchDeadline>>): string {
  const f = (x: number, digits = 0) => x.toFixed(digits);
  const secs = (ms: number) => (ms >= 1000 ? `${f(ms / 1000, 1)} s` : `${ms} ms`);
  const rows: string[] = [];
  for (const r of d.webhook) {
    const m = `model ${secs(r.modelMs)} per request`;
    rows.push(`| (e) webhook answer time p50 / p99, ${m} | ${f(r.http.p50Ms)} / ${f(r.http.p99Ms)} ms (max ${f(r.http.maxMs)} ms; ${r.http.n} requests) | previously: the whole turn, ≈ model time: ${f(r.previousAnswer.p50Ms)} / ${f(r.previousAnswer.p99Ms)} ms | ${f(r.http.p99Ms / r.previousAnswer.p99Ms, 2)}× | | |`);
    rows.push(`| (e) SMS request or consent to the real answer at sipgate p50 / p99, ${m} | ${f(r.answerReached.p50Ms)} / ${f(r.answerReached.p99Ms)} ms | previously: the same, with the webhook held open | | | |`);
    const problems = r.problems.length ? `; ${r.problems.slice(0, 3).join("; ")}${r.problems.length > 3 ? "; …" : ""}` : "";
    rows.push(`| (e) holding lines / apologies / calls completed with one SMS to the caller, ${m} | ${r.holdingLines} / ${r.apologies} / ${r.completedCalls} of ${r.calls}${r.repeats ? ` (${r.repeats} repeated after an apology)` : ""}${r.unexpectedModelRequests ? `, ${r.unexpectedModelRequests} unexpected model requests` : ""}${problems} | | | | |`);
  }
  for (const w of d.websocket) {
    rows.push(`| (e) WebSocket, TTFT ${w.ttftMs} ms, streaming ${w.streamSentences ? "on" : "off"}: first speak frame / first answer frame / whole answer | ${w.firstSpeakMs} / ${w.firstAnswerMs} / ${w.fullAnswerMs} ms (holding line first in ${w.holdingLines} of ${w.samples.length}) | whole generation: ${w.generationMs} ms | | | |`);
  }
  return rows.join("\n");
}

async function main() {
  // Decided before the minute of measuring, so a mistyped flag fails at once.
  const output = benchOutput(process.argv.slice(2), process.env);
  if (!output) {
    console.log(BENCH_USAGE);
    return;
  }
  if (output.only) return runOnly(output.only, output, log);
  const started = Date.now();
  log("(d) memory per live call");
  const memory = await benchMemory();
  log("(b) LLM round trips and prompt size");
  const roundTrips = await benchRoundTrips();
  const peer = await peerCompare({ modelMs: PEER_MODEL_MS, runs: RUNS, log });
  log("(c) time to first speech over WebSocket");
  const { result: firstSpeech, streamed } = await benchFirstSpeech();
  log("(a) webhook overhead");
  const webhook = await benchWebhook();
  log("(e) answer deadline");
  const deadline = await benchDeadline(streamed);
  const concurrency = await benchConcurrency();
  const ledger = await benchLedgerAppend();
  const capacity = await capacityScenario(capacityOptionsFrom([], process.env));
  log("(h) tracing cost");
  const tracing = await tracingScenario();
  log("(m) consent turn by rule and by model");
  const consentTurn = await consentTurnScenario({ modelMs: Number(process.env.BENCH_CONSENT_MODEL_MS ?? 300), calls: Number(process.env.BENCH_CONSENT_CALLS ?? 20) });
  const answerWithinMs = deadline.webhook[0]!.server.answerWithinMs;
  const concurrencyMet = burstMet(concurrency, answerWithinMs);
  const targets = {
    webhookThroughput: { value: webhook.throughputRatio, target: "≥ 0.5× the bare route", met: webhook.throughputRatio >= 0.5 },
    engineP99: { value: webhook.engineP99Ms, target: "< 5 ms", met: webhook.engineP99Ms < 5 },
    ...roundTripTargets(roundTrips),
    peerWallTime: { value: peer.wallRatioStopAtTools, target: "wall time per call ≤ ½ of OpenAI Agents JS's with stopAtToolNames", met: peer.wallRatioStopAtTools <= 0.5 },
    firstSpeech: { value: firstSpeech.ratio, target: "≤ 1.1× the ideal", met: firstSpeech.ratio <= 1.1 },
    memory: { value: memory.callsPerGiB, target: "≥ 10,000 calls per GiB", met: memory.callsPerGiB >= 10_000 },
    concurrency: burstTarget(concurrency, answerWithinMs),
    capacity: capacityTarget(capacity),
    ledgerAppend: {
      value: ledger.postgres.fourAtOnce.p99Ms,
      target: `p99 of one consent-ledger append ≤ server.answerWithinMs (${answerWithinMs} ms) with four PostgreSQL instances appending at once, and with the file ledger; each chain verified`,
      met: ledger.postgres.fourAtOnce.p99Ms <= answerWithinMs && ledger.postgres.chain.ok && ledger.file.oneWriter.p99Ms <= answerWithinMs && ledger.file.chain.ok,
    },
    tracingOff: { value: tracing.facadeRatio, target: "tracing off costs ≤ 1 % of an event's CPU", met: tracing.facadeRatio <= 0.01 },
    consentTurn: { value: consentTurn.after.consentP50Ms / consentTurn.before.consentP50Ms, target: CONSENT_TURN_TARGET, met: consentTurnMet(consentTurn) },
  };
  const machine = { node: process.version, cpus: (await import("node:os")).cpus().length, runs: RUNS, secondsPerLoadRun: SECONDS, connections: CONNECTIONS, date: new Date().toISOString(), durationS: Math.round((Date.now() - started) / 1000) };
  const results = { machine, targets, webhook, roundTrips, peer, firstSpeech, memory, deadline, concurrency, ledger, tracing, capacity, consentTurn };
  mkdirSync(output.dir, { recursive: true });
  writeFileSync(output.json, JSON.stringify(results, null, 2));
  const f = (x: number, d = 2) => x.toFixed(d);
  const ok = (m: boolean) => (m ? "met" : "**missed**");
  const md = `# Benchmark results

\`npm run bench\` on ${machine.cpus} cores, Node ${machine.node}, ${machine.date}; medians of ${RUNS} runs, ${SECONDS} s × ${CONNECTIONS} connections per load run; ${machine.durationS} s in all.
Every figure is compared with a baseline measured in the same run.

| | measured | baseline (same run) | ratio | target | |
|---|---|---|---|---|---|
| (a) webhook throughput, realistic call mix | ${f(webhook.agentRps, 0)} req/s | bare Fastify route: ${f(webhook.ceilingRps, 0)} req/s | ${f(webhook.throughputRatio)}× | ≥ 0.5× | ${ok(targets.webhookThroughput.met)} |
| (a) latency p50 / p99 | ${f(webhook.agentP50Ms, 1)} / ${f(webhook.agentP99Ms, 1)} ms | ${f(webhook.ceilingP50Ms, 1)} / ${f(webhook.ceilingP99Ms, 1)} ms | | | |
| (a) server CPU per event: bare route / webhook intake, fixed answer / whole service | ${f(webhook.ceilingCpuUs, 0)} / ${f(webhook.intakeCpuUs, 0)} / ${f(webhook.agentCpuUs, 0)} µs (intake alone: ${f(webhook.intakeRps, 0)} req/s) | bare Fastify route: ${f(webhook.ceilingCpuUs, 0)} µs | ${f(webhook.cpuRatio, 1)}× | | |
| (a) engine overhead per event p50 / p99 | ${f(webhook.engineP50Ms, 3)} / ${f(webhook.engineP99Ms, 3)} ms (${webhook.turnsMeasured} events) | | | p99 < 5 ms | ${ok(targets.engineP99.met)} |
${roundTripRows(roundTrips, ok)}
${peerRows(peer, ok(targets.peerWallTime.met))}
| (c) time to first speech over WebSocket | ${f(firstSpeech.firstSpeechMs, 0)} ms | ideal (TTFT ${firstSpeech.ttftMs} ms + first sentence): ${firstSpeech.idealMs} ms | ${f(firstSpeech.ratio)}× | ≤ 1.1× | ${ok(targets.firstSpeech.met)} |
| (d) memory per live call (memory store) | ${memory.bytesPerCall} bytes | | ${memory.callsPerGiB} calls/GiB | ≥ 10,000 calls/GiB | ${ok(targets.memory.met)} |
${deadlineRows(deadline)}
${concurrencyRows(concurrency, answerWithinMs, ok(concurrencyMet))}
${ledgerRows(ledger, answerWithinMs, ok)}
${tracingRows(tracing, ok)}
${consentTurnRows(consentTurn, ok)}
${capacityRows(capacity, ok(capacityMet(capacity)))}

How each row is measured:
- (a) \`autocannon\` (same client workload for all) against child processes on loopback: a bare Fastify route answering a fixed action, the real app's webhook intake answering a fixed action, and the real service (webhook, validation, engine, gate, in-memory store and ledger) with an in-process model that answers at once. Each connection plays whole calls: greeting, SMS request, consent, send, goodbye, hangup. Engine overhead is each event's time outside model requests, from the turn records.
- (a) CPU per event: each server process's own CPU time (user + system) over a load run, divided by the requests it answered; "webhook intake" is the real app (token hook, body limits, secure JSON parse, event schema, redelivery hash, answer) with a pipeline that answers a fixed action at once, so the step from the bare route to it is the HTTP layer's share and the rest is the engine's (queue, lease, state, turn, gate, ledger).
${roundTripNote(roundTrips)}
- (c) a local model server streaming at a set time to first token and ${firstSpeech.tokenMs} ms a word; measured from sending \`user_speak\` to receiving the first \`speak\` frame.
- (d) heap after ${memory.calls} calls in the consent step (greeting and SMS request answered), after GC, minus the heap before.
- (e) the real service on a port with the system clock and defaults \`server.answerWithinMs\` ${deadline.webhook[0]!.server.answerWithinMs} ms, \`maxHoldingLines\` ${deadline.webhook[0]!.server.maxHoldingLines}, \`holdingTimeoutSeconds\` ${deadline.webhook[0]!.server.holdingTimeoutSeconds}; a local model server taking a set time per request over HTTP. Webhook: ${deadline.webhook[0]!.calls} whole calls per model speed, ${deadline.webhook[0]!.concurrency} at a time, played as sipgate does: greeting, SMS request (model: \`start_sms_flow\`), consent (model: \`record_consent\`), the SMS, hangup; every speak is followed by \`assistant_speak\` and, ${deadline.webhook[0]!.speechMs} ms later, \`assistant_speech_ended\`; after a holding line with nothing collected, \`user_input_timeout\` when its input timeout runs out; after an apology the caller says it once more. Answer time is every webhook request's latency; "previously" is each SMS-request and consent turn's duration, which is what the webhook answer took when the turn held it. WebSocket: as (c), the answer (${WS_ANSWER.split(" ").length} words, ${TOKEN} ms a word) streamed sentence by sentence or, with streaming off, requested whole and spoken as one frame; medians of ${wsSamples()} calls.
- (f) the real service (createService, system clock, RedisCallStore, Redis SMS limits) alone in its own process, as \`npm start\` runs it, on ${concurrency.redis}; a local model server in another process taking a random ${concurrency.model.minMs}–${concurrency.model.maxMs} ms per request; this process plays ${concurrency.calls} whole calls as in (e) over keep-alive HTTP connections (one per request in flight), started evenly within ${concurrency.rampMs / 1000} s so all are live at once, each line spoken for ${concurrency.speechMs} ms. Answer time is each webhook request from sending to its last byte; "in the service" from its headers parsed to its answer written. Where the time goes is measured inside the service: event-loop delay (perf_hooks.monitorEventLoopDelay), every Redis command it sends (ioredis sendCommand) and each call-store operation with its time, refused lease attempts, its CPU; the kernel's machine-wide TCP counters show connection attempts dropped at a full listen queue.
- (g) each writer a process of its own (bench/ledgerWriter.ts) with the real ledger (PostgresLedger with a pool of its own, or FileLedger), appending ${ledger.appendsPerWriter} records one after another after 5 to warm up, each awaited as the gate awaits its evidence before a send_sms leaves; PostgreSQL on ${ledger.postgres.server}. "Alone" is one such process, then four start at the same moment on another table: every append locks the chain-head row in its transaction, so the four take turns, and the ratio is what that costs. The file ledger: one process, lock file, write, fsync per append, on ${tmpdir()}. Afterwards each chain is read back and verified (positions 1..N, links, no id twice).
${peerNote(peer)}
${tracingNote(tracing)}
${consentTurnNote(consentTurn)}
${capacityNote(capacity)}
`;
  writeFileSync(output.md, md);
  console.log(md);
  log(`written: ${output.md}, ${output.json}${output.checkedIn ? "" : " (npm run bench -- --update writes the checked-in bench/results.*)"}`);
}

// Imported (bench/roundTripsAlone.ts), it only lends its parts.
if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) main().then(
  () => process.exit(0),
  (e) => {
    if (e instanceof BenchUsageError) {
      console.error(`bench: ${e.message}\n\n${BENCH_USAGE}`);
      process.exit(2);
    }
    console.error(e);
    process.exit(1);
  },
);
