import { fileURLToPath } from "node:url";
import { pino, type Logger } from "pino";
import type { FastifyInstance } from "fastify";
import type { AppConfig } from "./config/schema.js";
import { Engine } from "./engine/engine.js";
import type { TurnRecord } from "./engine/turnRecord.js";
import { PromptLibrary } from "./engine/promptLibrary.js";
import { smsConsentFlow } from "./flow/smsConsentFlow.js";
import { SmsActionGate } from "./guards/smsGate.js";
import { FileLedger } from "./ledger/fileLedger.js";
import type { ConsentLedger } from "./ledger/ledger.js";
import type { ChatModel } from "./llm/chatModel.js";
import { buildApp } from "./server/app.js";
import { MemoryRateLimiter, type RateLimiter } from "./store/rateLimiter.js";
import { MemorySessionStore } from "./store/memorySessionStore.js";
import type { SessionStore } from "./store/sessionStore.js";

export const PROMPTS_DIR = fileURLToPath(new URL("../prompts", import.meta.url));

export interface ServiceOptions {
  config: AppConfig;
  model: ChatModel;
  apiToken?: string;
  ledger?: ConsentLedger;
  store?: SessionStore;
  limiter?: RateLimiter;
  logger?: Logger;
  now?: () => number;
  promptsDir?: string;
  onTurn?: (turn: TurnRecord) => void;
}

export interface Service {
  app: FastifyInstance;
  engine: Engine;
  store: SessionStore;
  ledger: ConsentLedger;
  logger: Logger;
  close(): Promise<void>;
}

/** The composition root: one place that wires config, model, stores, ledger, engine and HTTP. */
export function createService(opts: ServiceOptions): Service {
  const { config } = opts;
  const now = opts.now ?? Date.now;
  const logger = opts.logger ?? pino({ level: config.logLevel });
  const store = opts.store ?? new MemorySessionStore(now);
  const ledger = opts.ledger ?? new FileLedger(config.ledger.path, config.ledger.numbers);
  const limiter = opts.limiter ?? new MemoryRateLimiter(now);
  const prompts = new PromptLibrary(opts.promptsDir ?? PROMPTS_DIR, config.language);
  const engine = new Engine({
    config,
    prompts,
    flow: smsConsentFlow,
    model: opts.model,
    store,
    ledger,
    limiter,
    gate: new SmsActionGate(),
    log: logger,
    now,
  });
  const app = buildApp({ config, engine, store, apiToken: opts.apiToken, logger, onTurn: opts.onTurn });
  return {
    app,
    engine,
    store,
    ledger,
    logger,
    async close() {
      await app.close();
      await store.close();
      await ledger.close();
    },
  };
}
