import type { AddressInfo } from "node:net";
import { performance } from "node:perf_hooks";
import { pino } from "pino";
import { WebSocket } from "ws";
import type { AiFlowAction } from "../src/aiflow/actions.js";
import { loadConfigFile, parseConfig } from "../src/appConfig.js";
import type { AppConfig } from "../src/appConfig.js";
import { PromptLibrary } from "../src/engine/promptLibrary.js";
import { MemoryLedger } from "../src/ledger/memoryLedger.js";
import { OpenAIChatModel } from "../src/llm/openaiChatModel.js";
import { PROMPTS_DIR, createService } from "../src/service.js";
import { FakeOpenAIServer, type ChatBody, type ScriptedReply } from "../test/support/fakeOpenAI.js";

/**
 * Bench (e), the answer deadline (server.answerWithinMs), in real time: the real service on a real
 * port with the system clock, a model server over real HTTP that takes a set time per request, and
 * a client that plays whole calls as sipgate does, holding lines included (assistant_speak,
 * assistant_speech_ended after the spoken duration, user_input_timeout after the line's input
 * timeout). Also time to first speech over the WebSocket with sentence streaming off and on.
 */

/** Every bench call texts another number: recipient and abuse windows wide open. */
export function openLimits(base: AppConfig): AppConfig {
  const open = { max: 1e9, windowSeconds: 60 };
  return parseConfig({ ...base, logLevel: "silent", tasks: { sms: { ...base.tasks.sms, recipients: { ...base.tasks.sms.recipients, perRecipient: open }, abuse: { perCaller: open, perPrefix: { ...open, prefixDigits: 3 }, perCountry: open, global: open } } } });
}

/**
 * Every consent answer to the model (`tasks.sms.consent.answerByRule` off): row (e) measures turns
 * that wait for the model against the deadline; a "Ja, gerne." decided by rule (row (m)) needs none.
 */
function modelDecidesConsent(c: AppConfig): AppConfig {
  return parseConfig({ ...c, tasks: { ...c.tasks, sms: { ...c.tasks.sms, consent: { ...c.tasks.sms.consent, answerByRule: false } } } });
}

/**
 * No load limits (server.overload all 0): for the benches that measure cost per event by playing
 * calls as fast as the machine allows, where refusing calls would only measure the refusal.
 */
export function noLoadLimits(config: AppConfig): AppConfig {
  return { ...config, server: { ...config.server, overload: { ...config.server.overload, maxEventLoopDelayMs: 0, maxCpuCores: 0, maxInFlightTurns: 0, maxNewCallsPerSecond: 0 } } };
}

/** Nearest-rank percentile (q in 0..1); 0 for no samples. */
export function percentile(xs: number[], q: number): number {
  if (xs.length === 0) return 0;
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));
const round = (x: number) => Math.round(x * 10) / 10;
const stats = (xs: number[]) => ({ n: xs.length, p50Ms: round(percentile(xs, 0.5)), p99Ms: round(percentile(xs, 0.99)), maxMs: round(percentile(xs, 1)) });
type Stats = ReturnType<typeof stats>;

const SMS_REQUEST = "Können Sie mir die Öffnungszeiten per SMS schicken?";
const CONSENT = "Ja, gerne.";

/** The model, scripted by the tools it is offered (calls run concurrently, so no fixed queue); `delayMs` per request. */
export function scriptedByTools(delayMs: number | (() => number), unexpected: string[]) {
  const delay = typeof delayMs === "number" ? () => delayMs : delayMs;
  return (body: ChatBody): ScriptedReply => {
    const tools = (body.tools ?? []).map((t) => t.function.name);
    if (tools.includes("start_sms_flow")) return { kind: "message", toolCalls: [{ name: "start_sms_flow", arguments: { info: "opening_hours" } }], delayMs: delay() };
    if (tools.includes("record_consent")) return { kind: "message", toolCalls: [{ name: "record_consent", arguments: { consented: true } }], delayMs: delay() };
    unexpected.push(tools.join(",") || "(no tools)");
    return { kind: "message", text: "Wie kann ich helfen?", delayMs: delay() };
  };
}

export interface DeadlineOptions {
  /** Time the model server takes per request. */
  modelMs: number;
  calls: number;
  /** Calls played at the same time (in batches of this size). */
  concurrency?: number;
  /** How long sipgate takes to speak any line (assistant_speak to assistant_speech_ended). */
  speechMs?: number;
  config?: AppConfig;
}

export interface CallOutcome {
  id: string;
  caller: string;
  /** Exactly one send_sms, to the caller's own number, and the "sent" line heard. */
  completed: boolean;
  sends: number;
  holdingLines: number;
  apologies: number;
  /** Caller utterances repeated after an apology. */
  repeats: number;
  /** Refused as overloaded at session_start (the `overloaded` line and a hangup): neither completed nor failed. */
  refused?: boolean;
  /** From each user_speak until sipgate had the turn's real answer (not a holding line). */
  answerMs: number[];
  problem?: string;
}

export interface DeadlineResult {
  modelMs: number;
  calls: number;
  concurrency: number;
  speechMs: number;
  server: { answerWithinMs: number; maxHoldingLines: number; holdingTimeoutSeconds: number };
  /** Every webhook request's latency, and by event type. */
  http: Stats & { byEvent: Record<string, Stats> };
  /** user_speak to the real answer reaching sipgate (holding lines and their follow-ups in between). */
  answerReached: Stats;
  /** The previous design answered a turn only when it was done: each user_speak turn's duration. */
  previousAnswer: Stats;
  holdingLines: number;
  apologies: number;
  repeats: number;
  completedCalls: number;
  /** Model requests that offered neither start_sms_flow nor record_consent (should be none). */
  unexpectedModelRequests: number;
  problems: string[];
  wallMs: number;
}

/** One webhook request's latency, by event type. */
export interface Latency {
  type: string;
  ms: number;
  /** The call the request belonged to. */
  call?: string;
}

/**
 * Posts one event body (JSON text) to the webhook: the HTTP status and the body text, and the
 * request's own latency when the client knows it apart from its own queueing (`ms`).
 */
export type Post = (body: string) => Promise<{ status: number; text: string; ms?: number }>;

/** What a played call needs: how to post, the lines that are not answers, how long sipgate speaks. */
export interface CallPlayer {
  post: Post;
  holding: string;
  gaveUp: string;
  /** The `overloaded` line: a call refused with it (and a hangup) is counted as refused, not failed. */
  overloaded?: string;
  speechMs: number;
  /** Every request's latency is appended here. */
  latencies: Latency[];
}

/** Plain fetch (a new connection pool per process, fine for a few calls at a time). */
export function fetchPost(url: string): Post {
  return async (body) => {
    const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body });
    return { status: res.status, text: await res.text() };
  };
}

/**
 * One whole call as sipgate plays it: greeting, SMS request (model: start_sms_flow), consent
 * (model: record_consent), the SMS, hangup; every speak followed by assistant_speak and, after
 * the spoken duration, assistant_speech_ended; after a holding line with nothing collected,
 * user_input_timeout when its input timeout runs out; after an apology the caller says it once more.
 */
export async function playWholeCall(p: CallPlayer, id: string, caller: string): Promise<CallOutcome> {
  const session = { id, account_id: "bench", phone_number: "4921112345678", direction: "inbound", from_phone_number: caller, to_phone_number: "4921112345678" };
  const { holding: HOLDING, gaveUp: GAVE_UP, speechMs, latencies } = p;
  const heard: Array<{ action: AiFlowAction; at: number }> = [];
  const out: CallOutcome = { id, caller, completed: false, sends: 0, holdingLines: 0, apologies: 0, repeats: 0, answerMs: [] };

  const post = async (event: Record<string, unknown>): Promise<AiFlowAction[]> => {
    const t0 = performance.now();
    const res = await p.post(JSON.stringify({ ...event, session }));
    const text = res.text;
    const at = performance.now();
    latencies.push({ type: String(event.type), ms: res.ms ?? at - t0, call: id });
    if (res.status !== 200 && res.status !== 204) throw new Error(`${id}: ${String(event.type)} answered HTTP ${res.status}: ${text}`);
    const body = res.status === 200 && text ? (JSON.parse(text) as AiFlowAction | AiFlowAction[]) : [];
    const actions = Array.isArray(body) ? body : [body];
    for (const action of actions) heard.push({ action, at });
    return actions;
  };

  /** sipgate plays the actions: each speak with assistant_speak and assistant_speech_ended; after a holding line's speech, its input timeout. */
  const play = async (actions: AiFlowAction[]): Promise<void> => {
    for (const a of actions) {
      if (a.type !== "speak") continue;
      const text = (a as { text?: string }).text ?? "";
      if (text === HOLDING) out.holdingLines++;
      if (text === GAVE_UP) out.apologies++;
      // assistant_speak goes out when speech starts; the speech does not wait for its answer.
      const started = post({ type: "assistant_speak", text, duration_ms: speechMs, speech_started_at: Date.now() });
      await sleep(speechMs);
      const speechEnded = performance.now();
      const late = [...(await post({ type: "assistant_speech_ended" })), ...(await started)];
      if (late.length) {
        await play(late);
        continue;
      }
      const timeoutS = (a as { user_input_timeout_seconds?: number }).user_input_timeout_seconds;
      if (text === HOLDING && timeoutS !== undefined) {
        // Nothing came with the speech's end: sipgate reports the silence after the line's input timeout.
        await sleep(speechEnded + timeoutS * 1000 - performance.now());
        await play(await post({ type: "user_input_timeout" }));
      }
    }
  };

  /** The caller says something; after an apology ("please say that again") once more. */
  const say = async (text: string, done: (a: AiFlowAction) => boolean): Promise<boolean> => {
    for (let attempt = 0; attempt < 2; attempt++) {
      if (attempt > 0) out.repeats++;
      const from = heard.length;
      const t0 = performance.now();
      await play(await post({ type: "user_speak", text, barged_in: false }));
      const mine = heard.slice(from);
      const answer = mine.find(({ action }) => action.type !== "speak" || ![HOLDING, GAVE_UP].includes((action as { text?: string }).text ?? ""));
      if (answer) out.answerMs.push(answer.at - t0);
      if (mine.some(({ action }) => done(action))) return true;
      if (!mine.some(({ action }) => (action as { text?: string }).text === GAVE_UP)) return false;
    }
    return false;
  };

  const spoken = (a: AiFlowAction) => (a.type === "speak" ? ((a as { text?: string }).text ?? "") : "");
  try {
    const greeting = await post({ type: "session_start" });
    if (p.overloaded && greeting.some((a) => spoken(a) === p.overloaded) && greeting.some((a) => a.type === "hangup")) {
      // Refused: the caller hears the line and sipgate ends the call (session_end in finally).
      await play(greeting);
      out.refused = true;
      return out;
    }
    await play(greeting);
    if (!(await say(SMS_REQUEST, (a) => spoken(a).startsWith("Darf ich Ihnen")))) out.problem = "no consent question after the SMS request";
    else if (!(await say(CONSENT, (a) => spoken(a).includes("abgeschickt")))) out.problem = "no 'sent' line after consenting";
  } finally {
    await post({ type: "session_end" });
  }
  const sends = heard.filter(({ action }) => action.type === "send_sms").map(({ action }) => action as AiFlowAction & { phone_number: string });
  out.sends = sends.length;
  if (!out.problem && sends.length !== 1) out.problem = `${sends.length} send_sms`;
  if (!out.problem && sends[0]!.phone_number !== caller) out.problem = `send_sms to ${sends[0]!.phone_number}, not the caller ${caller}`;
  out.completed = !out.problem;
  return out;
}

/** Plays `calls` whole calls over the webhook against a model taking `modelMs` per request. */
export async function deadlineScenario(opts: DeadlineOptions): Promise<DeadlineResult> {
  const speechMs = opts.speechMs ?? 300;
  const concurrency = opts.concurrency ?? 5;
  const config = modelDecidesConsent(opts.config ?? openLimits(loadConfigFile("config/agent.yaml")));
  const prompts = new PromptLibrary(PROMPTS_DIR, config.language);
  const HOLDING = prompts.line("holding");
  const GAVE_UP = prompts.line("holding_gave_up");
  const unexpected: string[] = [];
  const fake = new FakeOpenAIServer();
  await fake.start();
  fake.onRequest(scriptedByTools(opts.modelMs, unexpected));
  const turnMs: number[] = [];
  const service = createService({
    config,
    model: new OpenAIChatModel({ apiKey: "k", baseURL: fake.baseURL, timeoutMs: config.llm.timeoutMs, maxRetries: 0 }),
    ledger: new MemoryLedger(),
    logger: pino({ level: "silent" }),
    // No clock given: the system clock, since real time is what is measured here.
    onTurn: (t) => {
      if (t.event === "user_speak" && t.llmRequests.length > 0) turnMs.push(t.timings.totalMs);
    },
  });
  await service.app.listen({ port: 0, host: "127.0.0.1" });
  const url = `http://127.0.0.1:${(service.app.server.address() as AddressInfo).port}/webhook`;
  const latencies: Latency[] = [];

  const player: CallPlayer = { post: fetchPost(url), holding: HOLDING, gaveUp: GAVE_UP, speechMs, latencies };
  const playCall = (i: number) => {
    const id = `deadline-${opts.modelMs}-${i}`;
    // A different valid German mobile number for every call, so per-recipient limits never meet.
    const caller = `49151${String(30_000_000 + opts.modelMs * 1000 + i).padStart(8, "0")}`;
    return playWholeCall(player, id, caller);
  };

  const started = performance.now();
  const outcomes: CallOutcome[] = [];
  try {
    for (let i = 0; i < opts.calls; i += concurrency) {
      const batch = Array.from({ length: Math.min(concurrency, opts.calls - i) }, (_, k) => playCall(i + k));
      outcomes.push(...(await Promise.all(batch)));
    }
  } finally {
    await service.close();
    await fake.close();
  }
  const wallMs = performance.now() - started;
  const types = [...new Set(latencies.map((l) => l.type))];
  const sum = (f: (o: CallOutcome) => number) => outcomes.reduce((a, o) => a + f(o), 0);
  return {
    modelMs: opts.modelMs,
    calls: opts.calls,
    concurrency,
    speechMs,
    server: { answerWithinMs: config.server.answerWithinMs, maxHoldingLines: config.server.maxHoldingLines, holdingTimeoutSeconds: config.server.holdingTimeoutSeconds },
    http: { ...stats(latencies.map((l) => l.ms)), byEvent: Object.fromEntries(types.map((t) => [t, stats(latencies.filter((l) => l.type === t).map((l) => l.ms))])) },
    answerReached: stats(outcomes.flatMap((o) => o.answerMs)),
    previousAnswer: stats(turnMs),
    holdingLines: sum((o) => o.holdingLines),
    apologies: sum((o) => o.apologies),
    repeats: sum((o) => o.repeats),
    completedCalls: outcomes.filter((o) => o.completed).length,
    unexpectedModelRequests: unexpected.length,
    problems: outcomes.filter((o) => o.problem).map((o) => `${o.id}: ${o.problem}`),
    wallMs: Math.round(wallMs),
  };
}

// ---------------------------------------------------------------- first speech over the WebSocket

export const WS_ANSWER = "Wir haben Montag bis Freitag geöffnet. Dienstags auch am Nachmittag von 15 bis 18 Uhr. Kann ich sonst noch helfen?";

export interface WsSpeechOptions {
  ttftMs: number;
  tokenMs: number;
  streamSentences: boolean;
  samples: number;
  config?: AppConfig;
}

export interface WsSpeechResult {
  ttftMs: number;
  tokenMs: number;
  streamSentences: boolean;
  /** Time the model takes for the whole answer (time to first token + one token a word). */
  generationMs: number;
  /** user_speak to the first speak frame of any kind (a holding line counts). */
  firstSpeakMs: number;
  /** user_speak to the first frame of the answer itself. */
  firstAnswerMs: number;
  /** user_speak to the frame that ends the answer. */
  fullAnswerMs: number;
  /** Samples in which a holding line came before the answer. */
  holdingLines: number;
  samples: Array<{ firstSpeakMs: number; firstAnswerMs: number; fullAnswerMs: number; holding: boolean; answerFrames: number }>;
}

/** Median of each figure over `samples` calls: session_start, then one question answered by a streaming model. */
export async function wsSpeech(opts: WsSpeechOptions): Promise<WsSpeechResult> {
  const base = opts.config ?? openLimits(loadConfigFile("config/agent.yaml"));
  const config = parseConfig({ ...base, speech: { ...base.speech, streamSentences: opts.streamSentences } });
  const HOLDING = new PromptLibrary(PROMPTS_DIR, config.language).line("holding");
  const words = WS_ANSWER.split(" ").length;
  const generationMs = opts.ttftMs + words * opts.tokenMs;
  const fake = new FakeOpenAIServer();
  await fake.start();
  // Streamed: word by word after the first token; not streamed: the whole answer when generation ends.
  fake.onRequest((body) => (body.stream === true ? { kind: "message", text: WS_ANSWER, ttftMs: opts.ttftMs, tokenDelayMs: opts.tokenMs } : { kind: "message", text: WS_ANSWER, delayMs: generationMs }));
  const service = createService({
    config,
    model: new OpenAIChatModel({ apiKey: "k", baseURL: fake.baseURL, timeoutMs: 10_000, maxRetries: 0 }),
    ledger: new MemoryLedger(),
    logger: pino({ level: "silent" }),
  });
  await service.app.listen({ port: 0, host: "127.0.0.1" });
  const url = `ws://127.0.0.1:${(service.app.server.address() as AddressInfo).port}/ws`;
  const samples: WsSpeechResult["samples"] = [];
  try {
    for (let i = 0; i < opts.samples; i++) {
      const ws = new WebSocket(url, { perMessageDeflate: false });
      await new Promise((r, j) => (ws.once("open", r), ws.once("error", j)));
      const id = `ws-speech-${opts.streamSentences ? "on" : "off"}-${opts.ttftMs}-${i}`;
      const session = { id, account_id: "b", phone_number: "4921112345678", from_phone_number: "4915112345678", to_phone_number: "4921112345678" };
      const speaks: Array<{ at: number; text: string }> = [];
      ws.on("message", (d) => {
        const a = JSON.parse(String(d)) as { type: string; text?: string };
        if (a.type === "speak") speaks.push({ at: performance.now(), text: a.text ?? "" });
      });
      ws.send(JSON.stringify({ type: "session_start", session }));
      const until = async (ok: () => boolean, what: string) => {
        const limit = performance.now() + 15_000;
        while (!ok()) {
          if (performance.now() > limit) throw new Error(`WebSocket bench: no ${what} within 15 s (${id})`);
          await sleep(1);
        }
      };
      await until(() => speaks.length >= 1, "greeting");
      const greeting = speaks.length;
      const sent = performance.now();
      ws.send(JSON.stringify({ type: "user_speak", text: "Wann haben Sie geöffnet?", session }));
      const answer = () => speaks.slice(greeting).filter((s) => s.text !== HOLDING);
      await until(() => answer().some((s) => s.text.endsWith("Kann ich sonst noch helfen?")), "whole answer");
      const after = speaks.slice(greeting);
      samples.push({
        firstSpeakMs: after[0]!.at - sent,
        firstAnswerMs: answer()[0]!.at - sent,
        fullAnswerMs: answer().at(-1)!.at - sent,
        holding: after.some((s) => s.text === HOLDING),
        answerFrames: answer().length,
      });
      ws.close();
    }
  } finally {
    await service.close();
    await fake.close();
  }
  const med = (f: (s: (typeof samples)[number]) => number) => Math.round(percentile(samples.map(f), 0.5));
  return {
    ttftMs: opts.ttftMs,
    tokenMs: opts.tokenMs,
    streamSentences: opts.streamSentences,
    generationMs,
    firstSpeakMs: med((s) => s.firstSpeakMs),
    firstAnswerMs: med((s) => s.firstAnswerMs),
    fullAnswerMs: med((s) => s.fullAnswerMs),
    holdingLines: samples.filter((s) => s.holding).length,
    samples,
  };
}
