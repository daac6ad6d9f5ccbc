import { randomBytes } from "node:crypto";
import type { AddressInfo } from "node:net";
import { parseArgs } from "node:util";
import { Redis } from "ioredis";
import { ConfigError, applyEnv, configPathFrom, loadConfigFile } from "./appConfig.js";
import { FlowDefinitionError } from "./core/errors.js";
import type { AppConfig } from "./appConfig.js";
import { createLedger, describeLedger, optOutListProblem } from "./ledger/createLedger.js";
import type { ConsentLedger } from "./ledger/ledger.js";
import { MemoryLedger } from "./ledger/memoryLedger.js";
import { NumberHasher } from "./ledger/numberHash.js";
import type { ChatModel } from "./llm/chatModel.js";
import { createEndpointMonitor, createModel } from "./llm/createModel.js";
import type { EndpointMonitor } from "./llm/endpointMonitor.js";
import { ScriptedModel } from "./llm/scriptedModel.js";
import { Metrics } from "./metrics/metrics.js";
import { npmTookOffline } from "./cli/npmOffline.js";
import { modelUrlProblem } from "./config/modelUrl.js";
import { exposureProblem } from "./server/exposure.js";
import { createService, numberHasher } from "./service.js";
import { MemoryCallStore } from "./store/memoryCallStore.js";
import { MemoryRateLimiter, RedisRateLimiter } from "./store/rateLimiter.js";
import { RedisCallStore } from "./store/redisCallStore.js";
import { RedisReviewStore } from "./review/reviewStore.js";
import { RedisOutbox } from "./outbox/redisOutbox.js";
import { describeDestination, reportDestination } from "./agents/callback/reportDestination.js";
import { startTracing } from "./telemetry/start.js";

const USAGE = `Usage: npm start [-- OPTIONS]        (or: node dist/src/main.js [OPTIONS])

Serves the sipgate AI Flow webhook (POST /webhook, WebSocket /ws, GET /healthz, GET /metrics)
until SIGTERM or SIGINT, then finishes the requests in flight and exits 0.

Options:
  --config PATH   config file (default: config/agent.yaml in the package; CONFIG=PATH does the same)
  --offline       demo: the built-in scripted model instead of an LLM, no API key needed; memory
                  store and ledger; listens on 127.0.0.1 unless HOST is set (same as LLM_MODEL=scripted).
                  The callback agent's demo logs each call's report ("callback report" lines) and posts
                  it only to a receiver named in CALLBACK_URL (then CALLBACK_SIGNING_SECRET is needed);
                  the ready line's "reports" field says which
  -h, --help      this text

Environment (wins over the config file):
  OPENAI_API_KEY, OPENAI_BASE_URL  the model endpoint; at least one is needed (not with --offline);
                                   the URL starts with http:// or https://. Its models list is
                                   checked at start-up (3 s at most) and every 30 s: /healthz shows
                                   it under "model", the log says when it is not reachable
  LLM_MODEL                        overrides llm.model ("scripted" = --offline)
  PORT, HOST                       override server.port, server.host
  AIFLOW_API_TOKEN                 shared secret every request must carry (server.apiTokenHeader);
                                   required on a non-loopback HOST unless server.allowNoToken: true
  LOG_LEVEL                        overrides logLevel: fatal, error, warn, info, debug, trace, silent
  CONFIG                           config file path (--config wins)
  ADMIN_TOKEN                      the call review at /calls (login form, or Authorization: Bearer); off without it
  REDIS_URL, REDIS_PREFIX          call state, locks, SMS limits and the callback outbox in Redis, shared by instances
  CALLBACK_SIGNING_SECRET          agent: callback: the HMAC secret of the report posts (the variable
                                   agents.callback.endpoint.secretEnv names)
  CALLBACK_URL                     overrides agents.callback.endpoint.url (the receiver of the report posts);
                                   with --offline, reports are posted only when it is set
  CALLBACK_SECRET_ENV, CALLBACK_TIMEOUT_MS, CALLBACK_MAX_ATTEMPTS, CALLBACK_POLL_MS,
  CALLBACK_BACKOFF_INITIAL_MS, CALLBACK_BACKOFF_MAX_MS, CALLBACK_BACKOFF_FACTOR
                                   override agents.callback.endpoint.secretEnv, .timeoutMs, .maxAttempts,
                                   .pollMs, .backoff.initialMs, .backoff.maxMs, .backoff.factor
  DATABASE_URL, LEDGER_TABLE       consent ledger in PostgreSQL instead of the ledger.path file
  OTEL_EXPORTER_OTLP_ENDPOINT      OpenTelemetry traces over OTLP/HTTP (off without it); OTEL_SERVICE_NAME,
                                   OTEL_TRACES_SAMPLER, OTEL_EXPORTER_OTLP_HEADERS, _PROTOCOL … as the SDK reads them
  LEDGER_HASH_KEY                  ledger.numbers: hashed: <id>:<secret> (openssl rand -base64 33), the key
                                   numbers in the ledger and the shared SMS limits are HMAC'd with; required
  LEDGER_HASH_KEYS_OLD             <id>:<secret>,… keys before a rotation, so their records stay findable
`;

interface Options {
  help: boolean;
  offline: boolean;
  config?: string;
}

function readOptions(argv: string[]): Options {
  try {
    const { values } = parseArgs({
      args: argv,
      options: { help: { type: "boolean", short: "h", default: false }, offline: { type: "boolean", default: false }, config: { type: "string" } },
      strict: true,
      allowPositionals: false,
    });
    return { help: values.help, offline: values.offline, config: values.config };
  } catch (e) {
    throw new ConfigError(`${(e as Error).message} (npm start -- --help lists the options)`);
  }
}

/** The messages Node gives for a failed listen are not actionable; these name what to change. */
function listenProblem(e: unknown, config: AppConfig): string | undefined {
  const { port, host } = config.server;
  switch ((e as NodeJS.ErrnoException).code) {
    case "EADDRINUSE":
      return `port ${port} on ${host} is already in use (set PORT or server.port)`;
    case "EACCES":
      return `no permission to listen on port ${port} on ${host} (ports below 1024 need privileges; set PORT or server.port)`;
    case "EADDRNOTAVAIL":
    case "ENOTFOUND":
      return `cannot listen on ${host}: not an address of this machine (set HOST or server.host)`;
    default:
      return undefined;
  }
}

/** `npm start`: load and check config, then serve the webhook until SIGTERM / SIGINT. */
async function main(): Promise<void> {
  const env = process.env;
  // `npm start --offline` (without `--`): npm keeps --offline as its own setting and passes it on
  // only as npm_config_offline. Say what to type rather than start against a real model.
  const tookOffline = npmTookOffline(env, process.argv.slice(2), "start");
  if (tookOffline) {
    console.error(`aiflow-sms-agent: ${tookOffline}`);
    process.exit(2);
  }
  const opts = readOptions(process.argv.slice(2));
  if (opts.help) {
    process.stdout.write(USAGE);
    return;
  }
  const config = applyEnv(loadConfigFile(configPathFrom(opts.config === undefined ? [] : ["--config", opts.config], env)), env);
  const demo = opts.offline || config.llm.model === "scripted";
  if (demo) {
    config.llm.model = "scripted";
    // A demo answers anyone who can reach it; keep it on this machine unless asked otherwise.
    if (!env.HOST) config.server.host = "127.0.0.1";
  } else if (!env.OPENAI_API_KEY && !env.OPENAI_BASE_URL) {
    throw new ConfigError(
      "no model endpoint: set OPENAI_API_KEY (OpenAI) or OPENAI_BASE_URL (an OpenAI-compatible server such as Ollama, vLLM or Azure OpenAI), or try the demo with --offline",
    );
  }
  // A model URL without http(s) is named before anything else is asked of the user.
  if (!demo && env.OPENAI_BASE_URL) {
    const problem = modelUrlProblem(env.OPENAI_BASE_URL);
    if (problem) throw new ConfigError(`OPENAI_BASE_URL: ${problem}`);
  }
  const apiToken = env.AIFLOW_API_TOKEN || undefined;
  // The call review's own secret: the AI Flow token (which sipgate holds too) must never open it.
  const adminToken = env.ADMIN_TOKEN || undefined;
  if (adminToken && apiToken && adminToken === apiToken) throw new ConfigError("ADMIN_TOKEN: must differ from AIFLOW_API_TOKEN (sipgate holds that one; it never opens the call review)");
  if (adminToken && adminToken.length < 16) throw new ConfigError("ADMIN_TOKEN: at least 16 characters (openssl rand -base64 24)");
  const exposed = exposureProblem({ host: config.server.host, hasToken: Boolean(apiToken), allowNoToken: config.server.allowNoToken });
  if (exposed) throw new ConfigError(exposed);
  // ledger.numbers: hashed without a valid LEDGER_HASH_KEY stops start-up here, before anything connects.
  const hasher = demo ? demoHasher(config) : numberHasher(config, env);
  // The callback agent's reports: a demo's test calls reach only a receiver named in CALLBACK_URL.
  const reports = config.agent === "callback" ? reportDestination(config.agents.callback!, env, { testCalls: demo }) : undefined;

  const metrics = new Metrics();
  // Failed requests are counted from each turn's record; fallbacks only the model knows.
  // A model URL without http(s) stops start-up here, naming OPENAI_BASE_URL.
  const resilient = demo ? undefined : createModel(config, env, { onFallback: (from, to) => metrics.observeModelFallback(from, to) });
  const model: ChatModel = resilient ?? new ScriptedModel();
  // For the alert on an open circuit breaker (deploy/prometheus/alerts.yml).
  if (resilient) metrics.setOpenCircuitsProvider(() => resilient.openCircuits().length);
  // Is the model endpoint there? Checked while the stores connect; start-up waits for it a few
  // seconds at most, and says so when it is not (callers would hear "technische Störung").
  const modelMonitor: EndpointMonitor | undefined = demo ? undefined : createEndpointMonitor(config, env);
  const firstModelCheck = modelMonitor?.start();

  // REDIS_URL: call state, per-call locks and SMS limits shared by every instance. A demo keeps
  // everything in memory, so its test calls never count against real SMS limits or the real ledger.
  const redisUrl = demo ? undefined : env.REDIS_URL;
  const listProblem = optOutListProblem(config, env, Boolean(redisUrl));
  if (listProblem) throw new ConfigError(listProblem);
  // ioredis resends a command whose reply a dropped connection lost (autoResendUnfulfilledCommands,
  // left on: with it off, ioredis 6 leaves that command's promise pending forever). Every script of
  // the call store, outbox and limiter is safe to run twice (test/redis.resend.test.ts).
  const redis = redisUrl
    ? new Redis(redisUrl, { maxRetriesPerRequest: 1, enableOfflineQueue: false, connectTimeout: 2000, lazyConnect: true })
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
  const ledger: ConsentLedger = demo ? new MemoryLedger(hasher) : createLedger(config, env, hasher);
  try {
    await ledger.ready();
  } catch (e) {
    throw new ConfigError(`${(e as Error).message} (set ledger.path in the config, or DATABASE_URL)`);
  }
  // OTEL_EXPORTER_OTLP_ENDPOINT: traces (docs/observability.md); never a span with the token or the model key in it.
  const tracing = await startTracing(config, env, [apiToken, env.OPENAI_API_KEY]);
  const service = createService({
    config,
    model,
    apiToken,
    tracing,
    ledger,
    metrics,
    // REDIS_PREFIX separates several deployments (or test runs) on one Redis.
    store: redis ? new RedisCallStore(redis, { prefix: env.REDIS_PREFIX || "aiflow:" }) : new MemoryCallStore(Date.now, config.limits.sessionTtlSeconds * 1000),
    limiter: redis ? new RedisRateLimiter(redis, `${env.REDIS_PREFIX || "aiflow:"}limit:`) : new MemoryRateLimiter(),
    hasher,
    // The callback agent's reports wait in Redis too, so any instance posts them, also after one died.
    outbox: redis && config.agent === "callback" ? new RedisOutbox(redis, { prefix: env.REDIS_PREFIX || "aiflow:" }) : undefined,
    callbackSecret: reports?.kind === "post" ? reports.secret : undefined,
    callbackReports: reports?.kind === "shown" ? "log" : "post",
    adminToken,
    // Call timelines in Redis too, so any instance's page shows every call.
    reviewStore: redis ? new RedisReviewStore(redis, config.review.retentionDays * 86_400_000, env.REDIS_PREFIX || "aiflow:") : undefined,
    closeAlso: [...(modelMonitor ? [async () => modelMonitor.stop()] : []), ...(redis ? [() => redis.quit()] : [])],
    // The model's state, never a reason for 503: every instance shares it (src/llm/endpointMonitor.ts).
    healthInfo: demo ? { demo: true, model: "scripted" } : () => ({ model: modelMonitor!.status() }),
  });
  const { app, logger } = service;
  if (modelMonitor) {
    const first = await firstModelCheck!;
    if (!first.reachable) logger.warn({ model: first }, `model endpoint ${first.url} not reachable: ${first.error}`);
    modelMonitor.onChange((s) =>
      s.reachable ? logger.info({ model: s }, `model endpoint ${s.url} reachable again`) : logger.warn({ model: s }, `model endpoint ${s.url} not reachable: ${s.error}`),
    );
  }

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

  try {
    await app.listen({ port: config.server.port, host: config.server.host, backlog: config.server.listenBacklog });
  } catch (e) {
    const problem = listenProblem(e, config);
    throw problem ? new ConfigError(problem) : e;
  }
  // Under `npm start` the server lives as long as npm does. npm forwards SIGTERM and SIGINT (the
  // start script execs node), but a SIGKILL to npm would leave this process holding the port.
  if (env.npm_lifecycle_event === "start") {
    const parent = process.ppid;
    setInterval(() => process.ppid !== parent && void shutdown("npm start exited"), 500).unref();
  }
  const address = app.server.address() as AddressInfo;
  const ready = {
    url: `http://${address.family === "IPv6" ? `[${address.address}]` : address.address}:${address.port}/webhook`,
    model: config.llm.model,
    fallbacks: demo ? [] : config.llm.fallbacks.map((f) => f.model),
    agent: config.agent,
    language: config.language,
    auth: Boolean(apiToken),
    callReview: adminToken ? "/calls" : "off (set ADMIN_TOKEN)",
    endpoint: demo ? "none (built-in scripted model)" : modelMonitor!.status().url,
    ...(modelMonitor ? { modelReachable: modelMonitor.status().reachable } : {}),
    store: redis ? "redis" : "memory",
    ledger: demo ? "memory (demo: nothing is kept)" : describeLedger(ledger),
    ...(reports ? { reports: describeDestination(reports, 'logged as "callback report" lines when each call ends (demo)') } : {}),
  };
  // Loud on purpose: a demo answers like the real service but no LLM is behind it.
  if (demo) logger.warn({ ...ready, demo: true }, "DEMO MODE: scripted model, not a real LLM; sipgate AI Flow agent ready: POST /webhook");
  else logger.info(ready, "sipgate AI Flow agent ready: POST /webhook");
}

/** A demo keeps nothing: with hashed numbers it hashes with a throwaway key, so it needs no LEDGER_HASH_KEY. */
function demoHasher(config: AppConfig): NumberHasher {
  return config.ledger.numbers === "hashed" ? NumberHasher.keyed({ id: "demo", secret: randomBytes(33).toString("base64") }) : NumberHasher.full();
}


main().catch((e) => {
  // One clear line for configuration problems and for prompts or flows that cannot run (a prompt
  // file missing from a deployment names the file); a stack only for real bugs.
  if (e instanceof ConfigError || e instanceof FlowDefinitionError) console.error(`aiflow-sms-agent: ${e.message}`);
  else console.error(e);
  process.exit(1);
});
