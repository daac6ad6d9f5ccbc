import { join } from "node:path";
import { pino, type Logger } from "pino";
import type { FastifyInstance } from "fastify";
import type { AppConfig } from "./config/schema.js";
import { packageRoot } from "./config/paths.js";
import { Engine } from "./engine/engine.js";
import type { TurnRecord } from "./core/turnRecord.js";
import { PromptLibrary } from "./engine/promptLibrary.js";
import { smsConsentFlow } from "./agents/reception/flow.js";
import type { SmsSlice } from "./tasks/sms/state.js";
import type { ReceptionFlowTypes } from "./agents/reception/flow.js";
import type { EngineOptions } from "./engine/options.js";
import { openingLine } from "./config/disclosure.js";
import { FileLedger } from "./ledger/fileLedger.js";
import type { ConsentLedger } from "./ledger/ledger.js";
import type { ChatModel } from "./llm/chatModel.js";
import { buildApp } from "./server/app.js";
import { Metrics } from "./metrics/metrics.js";
import { MeteredLedger } from "./metrics/meteredLedger.js";
import { MemoryRateLimiter, type RateLimiter } from "./store/rateLimiter.js";
import { MemoryCallStore } from "./store/memoryCallStore.js";
import type { CallStore } from "./store/callStore.js";
import { CallPipeline } from "./engine/callPipeline.js";
import { systemClock, type Clock } from "./engine/clock.js";
import { turnLogFields } from "./server/turnLog.js";

// From the package root, not this file: the same code runs from src/ and from dist/src/.
export const PROMPTS_DIR = join(packageRoot(), "prompts");

export interface ServiceOptions {
  config: AppConfig;
  model: ChatModel;
  apiToken?: string;
  ledger?: ConsentLedger;
  store?: CallStore<SmsSlice>;
  limiter?: RateLimiter;
  logger?: Logger;
  now?: () => number;
  /** Answer deadlines (server.answerWithinMs); tests and evals pass a manual clock. */
  clock?: Clock;
  promptsDir?: string;
  onTurn?: (turn: TurnRecord) => void;
  metrics?: Metrics;
  /** Extra fields for GET /healthz. */
  healthInfo?: Record<string, unknown>;
  /** Closed with the service (e.g. the Redis connection behind store and limiter). */
  closeAlso?: Array<() => Promise<unknown>>;
}

export interface Service {
  app: FastifyInstance;
  engine: Engine<ReceptionFlowTypes>;
  pipeline: CallPipeline<ReceptionFlowTypes>;
  store: CallStore<SmsSlice>;
  ledger: ConsentLedger;
  logger: Logger;
  metrics: Metrics;
  close(): Promise<void>;
}

/** What the engine needs of the app config, and nothing of any flow. */
export function engineOptions(config: AppConfig): EngineOptions {
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

/** The composition root: one place that wires config, model, stores, ledger, engine and HTTP. */
export function createService(opts: ServiceOptions): Service {
  const { config } = opts;
  const now = opts.now ?? Date.now;
  const logger = opts.logger ?? pino({ level: config.logLevel });
  const store: CallStore<SmsSlice> = opts.store ?? new MemoryCallStore<SmsSlice>(now, config.limits.sessionTtlSeconds * 1000);
  const metrics = opts.metrics ?? new Metrics({ defaultMetrics: false });
  metrics.setActiveCallsProvider(() => store.size());
  // Counted only once durably recorded.
  const ledger = new MeteredLedger(opts.ledger ?? new FileLedger(config.ledger.path, config.ledger.numbers), metrics);
  const limiter = opts.limiter ?? new MemoryRateLimiter(now);
  const prompts = new PromptLibrary(opts.promptsDir ?? PROMPTS_DIR, config.language);
  const options = engineOptions(config);
  const engine = new Engine<ReceptionFlowTypes>({
    flow: smsConsentFlow,
    services: { config, ledger, limiter },
    options,
    prompts,
    model: opts.model,
    log: logger,
    now,
  });
  const pipeline = new CallPipeline<ReceptionFlowTypes>({
    engine,
    store,
    options,
    prompts,
    log: logger,
    clock: opts.clock ?? systemClock,
    // One "event handled" line per committed turn, the same for both transports.
    onTurn: (turn, event, via) => {
      logger.info(turnLogFields(turn, event, via), "event handled");
      metrics.observeTurn(turn);
      try {
        opts.onTurn?.(turn);
      } catch (e) {
        // An observer's bug must not cost the caller the answer (it may carry a send_sms already on record).
        logger.error({ err: e }, "onTurn observer failed");
      }
    },
    onAnswer: (kind) => metrics.observeAnswer(kind),
  });
  const app = buildApp({ config, pipeline, store, apiToken: opts.apiToken, logger, metrics, healthInfo: opts.healthInfo });
  return {
    app,
    engine,
    pipeline,
    store,
    ledger,
    logger,
    metrics,
    async close() {
      // Fastify stops taking requests and waits for the ones in flight: turns finish first.
      await app.close();
      // Turns that missed their deadline still run in the background: they finish and commit first.
      await pipeline.drain();
      await store.close();
      await ledger.close();
      for (const c of opts.closeAlso ?? []) await c();
    },
  };
}
