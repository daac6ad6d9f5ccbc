import { Redis } from "ioredis";
import { ConfigError, applyEnv, configPathFrom, loadConfigFile } from "./config/load.js";
import { createLedger, describeLedger } from "./ledger/createLedger.js";
import { createModel } from "./llm/createModel.js";
import { Metrics } from "./metrics/metrics.js";
import { createService } from "./service.js";
import { MemorySessionStore } from "./store/memorySessionStore.js";
import { MemoryRateLimiter, RedisRateLimiter } from "./store/rateLimiter.js";
import { RedisSessionStore } from "./store/redisSessionStore.js";

/** `npm start`: load and check config, then serve the webhook until SIGTERM / SIGINT. */
async function main(): Promise<void> {
  const env = process.env;
  const config = applyEnv(loadConfigFile(configPathFrom(process.argv.slice(2), env)), env);
  if (!env.OPENAI_API_KEY && !env.OPENAI_BASE_URL) {
    throw new ConfigError(
      "no model endpoint: set OPENAI_API_KEY (OpenAI) or OPENAI_BASE_URL (an OpenAI-compatible server such as Ollama, vLLM or Azure OpenAI)",
    );
  }
  const metrics = new Metrics();
  // Failed requests are counted from each turn's record; fallbacks only the model knows.
  const model = createModel(config, env, { onFallback: (from, to) => metrics.observeModelFallback(from, to) });

  // REDIS_URL: call state, per-call locks and SMS limits shared by every instance.
  const redis = env.REDIS_URL
    ? new Redis(env.REDIS_URL, { maxRetriesPerRequest: 1, enableOfflineQueue: false, connectTimeout: 2000, lazyConnect: true })
    : undefined;
  if (redis) {
    // Connection errors surface as failed commands (fail closed) and in /healthz; log them once each.
    let lastError = "";
    redis.on("error", (e: Error) => {
      if (e.message !== lastError) console.error(`redis: ${e.message}`);
      lastError = e.message;
    });
    redis.on("ready", () => (lastError = ""));
    try {
      await redis.connect();
    } catch (e) {
      throw new ConfigError(`cannot reach Redis at REDIS_URL: ${(e as Error).message}`);
    }
  }
  const ledger = createLedger(config, env);
  try {
    await ledger.ready();
  } catch (e) {
    throw new ConfigError(`${(e as Error).message} (set ledger.path in the config, or DATABASE_URL)`);
  }
  const service = createService({
    config,
    model,
    apiToken: env.AIFLOW_API_TOKEN || undefined,
    ledger,
    metrics,
    // REDIS_PREFIX separates several deployments (or test runs) on one Redis.
    store: redis ? new RedisSessionStore(redis, { prefix: env.REDIS_PREFIX || "aiflow:", lockTtlMs: config.llm.timeoutMs * 4 + 5000 }) : new MemorySessionStore(),
    limiter: redis ? new RedisRateLimiter(redis, `${env.REDIS_PREFIX || "aiflow:"}limit:`) : new MemoryRateLimiter(),
    closeAlso: redis ? [() => redis.quit()] : [],
  });
  const { app, logger } = service;

  let closing = false;
  const shutdown = async (signal: string) => {
    if (closing) return;
    closing = true;
    logger.info({ signal }, "shutting down: finishing in-flight requests");
    await service.close();
    process.exit(0);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));

  await app.listen({ port: config.server.port, host: config.server.host });
  logger.info(
    {
      model: config.llm.model,
      fallbacks: config.llm.fallbacks.map((f) => f.model),
      language: config.language,
      auth: Boolean(env.AIFLOW_API_TOKEN),
      endpoint: env.OPENAI_BASE_URL ?? "api.openai.com",
      store: redis ? "redis" : "memory",
      ledger: describeLedger(ledger),
    },
    "sipgate AI Flow agent ready: POST /webhook",
  );
}

main().catch((e) => {
  // One clear line for configuration problems; a stack only for real bugs.
  if (e instanceof ConfigError) console.error(`aiflow-sms-agent: ${e.message}`);
  else console.error(e);
  process.exit(1);
});
