import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { pino } from "pino";
import { parseConfig } from "../../src/appConfig.js";
import type { AppConfig, ConfigInput } from "../../src/appConfig.js";
import type { ConsentLedger } from "../../src/ledger/ledger.js";
import { MemoryLedger } from "../../src/ledger/memoryLedger.js";
import { OpenAIChatModel } from "../../src/llm/openaiChatModel.js";
import { createService, type Service, type ServiceOptions } from "../../src/service.js";
import type { AiFlowAction } from "../../src/aiflow/actions.js";
import { parseEvent } from "../../src/aiflow/events.js";
import type { TurnRecord } from "../../src/core/turnRecord.js";
import { FakeOpenAIServer } from "./fakeOpenAI.js";
import { ManualClock } from "../../src/engine/clock.js";
import type { CallStore } from "../../src/store/callStore.js";
import type { SmsSlice } from "../../src/tasks/sms/state.js";
import { smsConfig, type SmsConfig } from "../../src/tasks/sms/config.js";
import type { ReceptionServices } from "../../tools/reception/agent.js";
import type { RateLimiter } from "../../src/store/rateLimiter.js";
import type { NumberHasher } from "../../src/ledger/numberHash.js";
import type { Tracing } from "../../src/core/telemetry.js";

/** The callback agent's checked-in config, with test-friendly limits, and the endpoint a test's receiver listens on. */
export function callbackTestConfig(url: string, patch: Record<string, unknown> = {}): AppConfig {
  // Many tests text the same caller: the per-recipient window is open unless a test sets it.
  const base = { agents: { callback: { endpoint: { url, backoff: { initialMs: 1000, maxMs: 60_000 } } } }, tasks: { sms: { recipients: { perRecipient: { max: 1_000_000, windowSeconds: 60 } } } } };
  return testConfig(deepMerge(base, patch), "config/callback.yaml");
}

/** The checked-in config with test-friendly limits; `patch` deep-merges over it. */
export function testConfig(patch: Record<string, unknown> = {}, file = "config/agent.yaml"): AppConfig {
  const base = parseYaml(readFileSync(file, "utf8")) as ConfigInput;
  // Tests reuse a few numbers across many calls: the shared abuse windows are wide open
  // unless a test sets them (the limits have tests of their own).
  const open = { max: 1_000_000, windowSeconds: 60 };
  const merged = deepMerge(
    deepMerge(base as Record<string, unknown>, {
      llm: { maxRetries: 0, timeoutMs: 2000 },
      logLevel: "silent",
      // Tests script the model's answer to the consent question; the listed clear answers that skip
      // the model (sms/consent_answers.md) have tests of their own, which turn this on.
      tasks: { sms: { abuse: { perCaller: open, perPrefix: { ...open, prefixDigits: 3 }, perCountry: open, global: open }, consent: { answerByRule: false } } },
      // Load limits off: a loaded test machine must not refuse the calls of tests about other
      // things (test/overload.test.ts sets them, and checks the shipped defaults).
      server: { overload: { maxEventLoopDelayMs: 0, maxCpuCores: 0, maxInFlightTurns: 0, maxNewCallsPerSecond: 0 } },
    }),
    patch,
  );
  return parseConfig(merged, "test config");
}

/** The SMS task's view of an app config: what its tools, gate and rules get. */
/**
 * testConfig with the listed clear consent answers on (tasks.sms.consent.answerByRule; testConfig
 * turns it off) and the per-recipient limit open: the consent rule's own tests.
 */
export function consentRuleConfig(consent: Record<string, unknown> = {}): AppConfig {
  return testConfig({ tasks: { sms: { consent: { answerByRule: true, ...consent }, recipients: { perRecipient: { max: 1000, windowSeconds: 60 } } } } });
}

export const smsConfigOf = (app: AppConfig): SmsConfig => smsConfig(app.tasks.sms, app);

/** The reception agent's services for an app config, as the service builds them (tests that run an engine without the service). */
export function receptionServicesOf(app: AppConfig, deps: { ledger: ConsentLedger; limiter: RateLimiter; hasher: NumberHasher }): ReceptionServices {
  return { config: smsConfigOf(app), ...deps, transfer: app.agents.reception!.transfer };
}

function deepMerge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    out[k] =
      v && typeof v === "object" && !Array.isArray(v) && prev && typeof prev === "object" && !Array.isArray(prev)
        ? deepMerge(prev as Record<string, unknown>, v as Record<string, unknown>)
        : v;
  }
  return out;
}

export interface TestService extends Service {
  fake: FakeOpenAIServer;
  memoryLedger: MemoryLedger;
  clock: { now: number; advance(ms: number): void };
  /** Drives server.answerWithinMs: a holding line comes only when a test advances it. */
  deadlineClock: ManualClock;
  /** POST an event to /webhook through the real Fastify app. */
  post(event: unknown, headers?: Record<string, string>): Promise<{ status: number; body: unknown; actions: AiFlowAction[] }>;
}

/** The real service (Fastify, engine, gate, openai client) against a local fake model server. */
export async function startTestService(
  opts: {
    config?: AppConfig;
    apiToken?: string;
    fake?: FakeOpenAIServer;
    onTurn?: (turn: TurnRecord) => void;
    deadlineClock?: ManualClock;
    store?: CallStore<SmsSlice>;
    /** Another ledger than the in-memory one (`memoryLedger` is then unused): the real file or PostgreSQL ledger. */
    ledger?: ConsentLedger;
    /** The callback agent's outbox, signing secret ("test-secret" by default) and whether its poster runs on its own (default: no, tests drive it). */
    callback?: Pick<ServiceOptions, "outbox" | "callbackSecret" | "startPoster">;
    /** The call review: its page's token and where timelines are kept. */
    review?: Pick<ServiceOptions, "adminToken" | "reviewStore">;
    /** Traces (default none, as createService): see test/telemetry.traces.test.ts. */
    tracing?: Tracing;
  } = {},
): Promise<TestService> {
  const fake = opts.fake ?? new FakeOpenAIServer();
  if (!fake.baseURL) await fake.start();
  const config = opts.config ?? testConfig();
  const memoryLedger = new MemoryLedger();
  const deadlineClock = opts.deadlineClock ?? new ManualClock();
  const clock = {
    now: Date.UTC(2026, 10, 23, 9, 0, 0),
    advance(ms: number) {
      this.now += ms;
    },
  };
  const model = new OpenAIChatModel({ apiKey: "test-key", baseURL: fake.baseURL, timeoutMs: config.llm.timeoutMs, maxRetries: config.llm.maxRetries });
  const service = createService({
    config,
    model,
    apiToken: opts.apiToken,
    ledger: opts.ledger ?? memoryLedger,
    logger: pino({ level: "silent" }),
    now: () => clock.now,
    onTurn: opts.onTurn,
    // Answer deadlines move only when a test advances this clock: no answer depends on machine speed.
    clock: deadlineClock,
    store: opts.store,
    callbackSecret: opts.callback?.callbackSecret ?? "test-secret",
    outbox: opts.callback?.outbox,
    startPoster: opts.callback?.startPoster ?? false,
    adminToken: opts.review?.adminToken,
    reviewStore: opts.review?.reviewStore,
    tracing: opts.tracing,
  });
  const post: TestService["post"] = async (event, headers = {}) => {
    const res = await service.app.inject({
      method: "POST",
      url: "/webhook",
      headers: { "content-type": "application/json", ...headers },
      payload: typeof event === "string" ? event : JSON.stringify(event),
    });
    const body = res.body ? (JSON.parse(res.body) as unknown) : undefined;
    const actions = res.statusCode === 200 ? ((Array.isArray(body) ? body : [body]) as AiFlowAction[]) : [];
    return { status: res.statusCode, body, actions };
  };
  return {
    ...service,
    fake,
    memoryLedger,
    clock,
    deadlineClock,
    post,
    async close() {
      await service.close();
      await fake.close();
    },
  };
}

/** One event straight into the engine, for tests that assert on the turn record (guard decisions, tool calls). */
export async function engineTurn(svc: Service, event: unknown): Promise<TurnRecord> {
  const p = parseEvent(event);
  if (p.kind !== "event") throw new Error(`not a known event: ${JSON.stringify(event)}`);
  return svc.pipeline.process(p.event);
}

export const spoken = (actions: AiFlowAction[]): string[] =>
  actions.filter((a): a is Extract<AiFlowAction, { type: "speak" }> => a.type === "speak").map((a) => a.text ?? "");
export const smsActions = (actions: AiFlowAction[]) => actions.filter((a): a is Extract<AiFlowAction, { type: "send_sms" }> => a.type === "send_sms");
