import { join } from "node:path";
import { pino, type Logger } from "pino";
import type { FastifyInstance } from "fastify";
import type { AppConfig } from "./appConfig.js";
import type { BaseConfig } from "./config/schema.js";
import { packageRoot } from "./config/paths.js";
import { Engine } from "./engine/engine.js";
import type { TurnRecord } from "./core/turnRecord.js";
import { PromptLibrary } from "./engine/promptLibrary.js";
import { AGENTS, type TaskConfigs } from "./registry.js";
import type { AgentDef } from "../tools/common/agentDef.js";
import type { SmsSlice } from "./tasks/sms/state.js";
import type { FlowTypes } from "./engine/define.js";
import type { ComposedFlow } from "./engine/defineFlow.js";
import type { EngineOptions } from "./engine/options.js";
import type { Outbox } from "./outbox/outbox.js";
import type { OutboxPoster } from "./outbox/webhookPoster.js";
import { openingLine } from "./config/disclosure.js";
import { createLedger } from "./ledger/createLedger.js";
import type { ConsentLedger } from "./ledger/ledger.js";
import { HashKeyError, NumberHasher } from "./ledger/numberHash.js";
import type { ChatModel } from "./llm/chatModel.js";
import { buildApp } from "./server/app.js";
import { Admission } from "./server/admission.js";
import { LoadMonitor } from "./server/load.js";
import type { HealthInfo } from "./server/platform.js";
import { ConfigError } from "./config/load.js";
import { Metrics } from "./metrics/metrics.js";
import { MeteredLedger } from "./metrics/meteredLedger.js";
import { MemoryRateLimiter, type RateLimiter } from "./store/rateLimiter.js";
import { MemoryCallStore } from "./store/memoryCallStore.js";
import type { CallStore } from "./store/callStore.js";
import { CallPipeline } from "./engine/callPipeline.js";
import { systemClock, type Clock } from "./engine/clock.js";
import { turnLogFields } from "./server/turnLog.js";
import { ReviewRecorder } from "./review/recorder.js";
import { MemoryReviewStore, type ReviewStore } from "./review/reviewStore.js";
import { NO_TRACING, installTracing, type Tracing } from "./core/telemetry.js";
import { tracedLedger, tracedStore } from "./telemetry/traced.js";

// From the package root, not this file: the same code runs from src/ and from dist/src/.
export const PROMPTS_DIR = join(packageRoot(), "prompts");

export interface ServiceOptions {
  config: AppConfig;
  model: ChatModel;
  apiToken?: string;
  ledger?: ConsentLedger;
  store?: CallStore<SmsSlice>;
  limiter?: RateLimiter;
  /** How numbers are written in the shared store's keys (default: `numberHasher(config, process.env)`). */
  hasher?: NumberHasher;
  logger?: Logger;
  now?: () => number;
  /** Answer deadlines (server.answerWithinMs); tests and evals pass a manual clock. */
  clock?: Clock;
  promptsDir?: string;
  onTurn?: (turn: TurnRecord) => void;
  metrics?: Metrics;
  /** Extra fields for GET /healthz: fixed, or read at each request. */
  healthInfo?: HealthInfo;
  /** Closed with the service (e.g. the Redis connection behind store and limiter). */
  closeAlso?: Array<() => Promise<unknown>>;
  /** The callback agent's durable outbox (Redis when instances share one; default in memory). */
  outbox?: Outbox;
  /** The callback agent's signing secret (default: the environment variable `agents.callback.endpoint.secretEnv` names). */
  callbackSecret?: string;
  /** Post due callback reports in the background (default true; tests drive the poster themselves). */
  startPoster?: boolean;
  /**
   * Where the callback agent's reports go: "post" (default) to `agents.callback.endpoint.url` through the
   * outbox and its poster; "log": one log line per ended call, no outbox, no poster, no secret
   * needed (the offline demo without a receiver).
   */
  callbackReports?: "post" | "log";
  /** ADMIN_TOKEN: serves the call review at /calls (never the AI Flow token); without it the page is off. */
  adminToken?: string;
  /** Where call timelines are kept (Redis when instances share one; default in memory, `review.memoryMaxCalls`). */
  reviewStore?: ReviewStore;
  /** Traces (default: none; `npm start` passes startTracing's, by the OTEL_* environment). Installed for the process while the service runs. */
  tracing?: Tracing;
}

/** What the transports and tests use of the running agent's pipeline, whichever agent it is. */
export type AgentPipeline = Pick<CallPipeline, "answerHttp" | "handleWs" | "callerSpeaking" | "socketClosed" | "process" | "drain" | "inFlightTurns">;

export interface Service {
  app: FastifyInstance;
  /** The agent `agent:` picked (its flow drawn by `npm run flow:diagram`). */
  flow: ComposedFlow<FlowTypes>["name"];
  pipeline: AgentPipeline;
  store: CallStore<SmsSlice>;
  /** The callback agent's report poster (undefined for other agents). */
  poster?: OutboxPoster;
  outbox?: Outbox;
  ledger: ConsentLedger;
  logger: Logger;
  metrics: Metrics;
  /** The call review's recorder (tests wait for its appends with `flush`). */
  review: ReviewRecorder;
  /** This instance's load against `server.overload` (tests force it over). */
  load: LoadMonitor;
  close(): Promise<void>;
}

/** What the engine needs of the app config, and nothing of any flow. */
export function engineOptions(config: BaseConfig): EngineOptions {
  const { llm, limits, speech, server } = config;
  return {
    language: config.language,
    openingLine: openingLine(config),
    llm: { model: llm.model, temperature: llm.temperature, maxTokens: llm.maxTokens, strictTools: llm.strictTools, steps: llm.steps, onAllModelsFailed: llm.onAllModelsFailed },
    limits,
    speech,
    answer: { withinMs: server.answerWithinMs, maxHoldingLines: server.maxHoldingLines, holdingTimeoutSeconds: server.holdingTimeoutSeconds, leaseMs: server.leaseMs },
  };
}

/**
 * `ledger.numbers` as the service writes numbers: `full`, or keyed-hashed with the keys in
 * LEDGER_HASH_KEY (and LEDGER_HASH_KEYS_OLD). Read once, by whoever starts the service (and the
 * CLIs that build one); a missing or malformed key is a ConfigError naming the variable.
 */
export function numberHasher(config: BaseConfig, env: NodeJS.ProcessEnv): NumberHasher {
  try {
    return NumberHasher.fromConfig(config.ledger.numbers, env);
  } catch (e) {
    if (e instanceof HashKeyError) throw new ConfigError(e.message);
    throw e;
  }
}

/** The composition root: one place that wires config, model, stores, ledger, engine and HTTP. */
export function createService(opts: ServiceOptions): Service {
  const { config } = opts;
  const now = opts.now ?? Date.now;
  const logger = opts.logger ?? pino({ level: config.logLevel });
  const tracing = opts.tracing ?? NO_TRACING;
  const uninstallTracing = installTracing(tracing);
  const store: CallStore<SmsSlice> = tracedStore(opts.store ?? new MemoryCallStore<SmsSlice>(now, config.limits.sessionTtlSeconds * 1000), tracing);
  const metrics = opts.metrics ?? new Metrics({ defaultMetrics: false });
  metrics.setActiveCallsProvider(() => store.size());
  metrics.setCallerWaitBound(config.alerts.callerWaitP95Seconds);
  const retentionMs = config.review.retentionDays * 86_400_000;
  const reviewStore = opts.reviewStore ?? new MemoryReviewStore(retentionMs, config.review.memoryMaxCalls, now);
  const review = new ReviewRecorder({
    store: reviewStore,
    transcripts: config.review.transcripts,
    homeCountry: config.homeCountry,
    agent: config.agent,
    log: logger.child({ component: "call-review" }),
    onCallEnded: (call) => metrics.observeCallEnded(call),
    now,
  });
  // Counted (and shown in the call's review) only once durably recorded.
  const hasher = opts.hasher ?? numberHasher(config, process.env);
  const ledger = new MeteredLedger(tracedLedger(opts.ledger ?? createLedger(config, process.env, hasher), tracing), metrics, (rec) => review.ledger(rec));
  // Fail at start-up, not on every send: the gate refuses all sends when the list cannot be read.
  if (config.ledger.optOutList && !ledger.optedOut) throw new ConfigError("ledger.optOutList: this consent ledger keeps no do-not-text list; use the file or PostgreSQL ledger, or set ledger.optOutList: false");
  const limiter = opts.limiter ?? new MemoryRateLimiter(now);
  const prompts = new PromptLibrary(opts.promptsDir ?? PROMPTS_DIR, config.language);
  const options = engineOptions(config);
  /** The engine and pipeline for one agent's flow: the only part that differs between agents. */
  const wire = <F extends FlowTypes>(flow: ComposedFlow<F>, services: F["services"]): CallPipeline<F> => {
    const engine = new Engine<F>({ flow, services, options, prompts, model: opts.model, log: logger, now });
    return new CallPipeline<F>({
      engine,
      // The store keeps whatever JSON state the pipeline commits; this agent's pipeline is the only writer of its calls.
      store: store as CallStore<F["state"]>,
      options,
      prompts,
      log: logger,
      clock: opts.clock ?? systemClock,
      // One "event handled" line per committed turn, the same for both transports.
      onTurn: (turn, event, via) => {
        logger.info(turnLogFields(turn, event, via), "event handled");
        metrics.observeTurn(turn);
        review.turn(turn, event);
        try {
          opts.onTurn?.(turn);
        } catch (e) {
          // An observer's bug must not cost the caller the answer (it may carry a send_sms already on record).
          logger.error({ err: e }, "onTurn observer failed");
        }
      },
      onAnswer: (kind, actions) => {
        metrics.observeAnswer(kind);
        review.answered(kind, actions);
      },
    });
  };
  // The agent `agent:` picks, from the one registry (src/registry.ts): its services, and what it runs beside the calls.
  const agent = AGENTS[config.agent] as unknown as AgentDef<FlowTypes, unknown, TaskConfigs>;
  const own = (config.agents as Record<string, unknown>)[config.agent];
  const host = { app: config, tasks: config.tasks, ledger, limiter, hasher, logger, metrics, now, run: { outbox: opts.outbox, callbackSecret: opts.callbackSecret, startPoster: opts.startPoster, callbackReports: opts.callbackReports } };
  const { services, poster, outbox } = agent.start(host, own);
  const pipeline: AgentPipeline = wire(agent.flow, services);
  const page = opts.adminToken ? { adminToken: opts.adminToken, store: reviewStore, listCalls: config.review.listCalls, retentionDays: config.review.retentionDays, now } : undefined;
  // Over its limits the instance refuses new calls (a line and a hangup); running calls go on.
  const overload = config.server.overload;
  const load = new LoadMonitor(overload, () => pipeline.inFlightTurns());
  metrics.setOverloadProvider(() => load.over());
  const admission = new Admission(pipeline, load, prompts, options, { transferTo: overload.transferTo, callerIdName: overload.callerIdName, onRefused: (reason) => metrics.observeRefusedCall(reason) });
  const app = buildApp({ config, pipeline: admission, store, apiToken: opts.apiToken, logger, metrics, healthInfo: opts.healthInfo, load, review: { recorder: review, page } });
  return {
    app,
    flow: config.agent,
    pipeline,
    poster,
    outbox,
    store,
    ledger,
    logger,
    metrics,
    review,
    load,
    async close() {
      load.close();
      // Fastify stops taking requests and waits for the ones in flight: turns finish first.
      await app.close();
      // Turns that missed their deadline still run in the background: they finish and commit first.
      await pipeline.drain();
      await review.flush();
      // Posts in flight finish; what is not due yet waits in the outbox for the next start.
      await poster?.stop();
      await outbox?.close();
      await store.close();
      await ledger.close();
      for (const c of opts.closeAlso ?? []) await c();
      // What the last turns traced is exported before the process goes.
      uninstallTracing();
      await tracing.shutdown();
    },
  };
}
