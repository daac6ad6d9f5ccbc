import Fastify, { type FastifyInstance } from "fastify";
import { pino } from "pino";
import { Redis } from "ioredis";
import { loadConfigFile, parseConfig } from "../src/appConfig.js";
import { MemoryLedger } from "../src/ledger/memoryLedger.js";
import { OpenAIChatModel } from "../src/llm/openaiChatModel.js";
import { ScriptedModel } from "../src/llm/scriptedModel.js";
import { createService } from "../src/service.js";
import { ManualClock } from "../src/engine/clock.js";
import { buildApp } from "../src/server/app.js";
import { MemoryCallStore } from "../src/store/memoryCallStore.js";
import { RedisRateLimiter } from "../src/store/rateLimiter.js";
import { RedisCallStore } from "../src/store/redisCallStore.js";
import { FakeOpenAIServer } from "../test/support/fakeOpenAI.js";
import { noLoadLimits, openLimits, scriptedByTools } from "./deadline.js";
import { ServiceProbe } from "./probe.js";

/**
 * The servers of bench (a) and of the concurrency bench, each run as its own process:
 *   bare PORT          a Fastify route that answers a fixed action (the ceiling on this machine);
 *   intake PORT        the real app (token hook, webhook intake: secure JSON parse, event schema,
 *                      redelivery hash) with a pipeline that answers a fixed action at once;
 *   agent PORT         the real service with an in-process model that answers instantly, so what
 *                      is measured is webhook + engine overhead;
 *   agent-redis PORT   the real service on the system clock with a RedisCallStore and Redis SMS
 *                      limits (BENCH_REDIS_URL, BENCH_REDIS_PREFIX) and a model over HTTP
 *                      (BENCH_MODEL_URL), probed (event loop, Redis commands, store calls);
 *   model PORT         a local model server answering start_sms_flow / record_consent after a
 *                      random BENCH_MODEL_MIN_MS..BENCH_MODEL_MAX_MS per request.
 * Every server process reports its own CPU time: GET /bench/cpu.
 */
const kind = process.argv[2];
const port = Number(process.argv[3] ?? 0);

/** CPU time of this process (user + system, µs) and requests served: per-event CPU without the client's share. */
function cpuRoute(app: FastifyInstance): void {
  let requests = 0;
  app.addHook("onResponse", async () => void requests++);
  app.get("/bench/cpu", async () => {
    const c = process.cpuUsage();
    // The route's own request is not counted.
    return { cpuUs: c.user + c.system, requests: requests };
  });
}

if (kind === "bare") {
  const app = Fastify({ logger: false });
  const action = { type: "speak", session_id: "x", text: "Guten Tag, wie kann ich helfen?" };
  app.post("/webhook", async () => action);
  cpuRoute(app);
  await app.listen({ port, host: "127.0.0.1" });
} else if (kind === "intake") {
  const config = openLimits(loadConfigFile("config/agent.yaml"));
  const action = { type: "speak" as const, session_id: "x", text: "Guten Tag, wie kann ich helfen?" };
  const pipeline = { answerHttp: async () => ({ kind: "actions" as const, actions: [action] }), handleWs: async () => undefined, callerSpeaking: () => undefined, socketClosed: () => undefined };
  const app = buildApp({ config, pipeline, store: new MemoryCallStore(), logger: pino({ level: "silent" }) });
  cpuRoute(app);
  await app.listen({ port, host: "127.0.0.1" });
} else if (kind === "model") {
  const min = Number(process.env.BENCH_MODEL_MIN_MS ?? 100);
  const max = Number(process.env.BENCH_MODEL_MAX_MS ?? 500);
  const unexpected: string[] = [];
  const fake = new FakeOpenAIServer();
  await fake.start();
  fake.onRequest(scriptedByTools(() => Math.round(min + Math.random() * (max - min)), unexpected));
  // The bench asks over IPC how many requests came and how many were unexpected.
  process.on("message", (m) => {
    if (m === "stats") process.send!({ requests: fake.requests.length, unexpected: unexpected.length });
  });
  console.log(`ready ${fake.baseURL}`);
} else if (kind === "agent-redis") {
  const shipped = openLimits(loadConfigFile("config/agent.yaml"));
  // BENCH_OVERLOAD=off: no load limits (what the service does when it never refuses a call).
  const limited = process.env.BENCH_OVERLOAD === "off" ? noLoadLimits(shipped) : shipped;
  // BENCH_MAX_NEW_CALLS=N: another server.overload.maxNewCallsPerSecond, to try a limit against the burst.
  const newCalls = process.env.BENCH_MAX_NEW_CALLS;
  const config = newCalls ? { ...limited, server: { ...limited.server, overload: { ...limited.server.overload, maxNewCallsPerSecond: Number(newCalls) } } } : limited;
  const prefix = process.env.BENCH_REDIS_PREFIX ?? "bench:";
  // As src/main.ts connects (plus BENCH_REDIS_AUTOPIPELINING to try ioredis' auto-pipelining).
  const redis = new Redis(process.env.BENCH_REDIS_URL!, { maxRetriesPerRequest: 1, enableOfflineQueue: false, connectTimeout: 2000, lazyConnect: true, enableAutoPipelining: process.env.BENCH_REDIS_AUTOPIPELINING === "1" });
  redis.on("error", (e: Error) => console.error(`redis: ${e.message}`));
  await redis.connect();
  const probe = new ServiceProbe(redis);
  const service = createService({
    config,
    model: new OpenAIChatModel({ apiKey: "k", baseURL: process.env.BENCH_MODEL_URL!, timeoutMs: config.llm.timeoutMs, maxRetries: 0 }),
    store: probe.store(new RedisCallStore(redis, { prefix })),
    limiter: new RedisRateLimiter(redis, `${prefix}limit:`),
    ledger: new MemoryLedger(),
    logger: pino({ level: "silent" }),
    closeAlso: [() => redis.quit()],
  });
  probe.routes(service.app);
  cpuRoute(service.app);
  // As npm start listens (server.listenBacklog) unless BENCH_LISTEN_BACKLOG says otherwise.
  const backlog = process.env.BENCH_LISTEN_BACKLOG ? Number(process.env.BENCH_LISTEN_BACKLOG) : config.server.listenBacklog;
  await service.app.listen({ port, host: "127.0.0.1", backlog });
} else if (kind === "agent") {
  const base = loadConfigFile("config/agent.yaml");
  // Every bench call texts another number; the shared abuse windows would otherwise refuse most sends.
  const open = { max: 1e9, windowSeconds: 60 };
  // Calls as fast as autocannon plays them: no load limits (bench (a) measures the cost per event).
  const config = noLoadLimits(parseConfig({ ...base, logLevel: "silent", tasks: { sms: { ...base.tasks.sms, recipients: { ...base.tasks.sms.recipients, perRecipient: open }, abuse: { perCaller: open, perPrefix: { ...open, prefixDigits: 3 }, perCountry: open, global: open } } } }));
  const engineMs: number[] = [];
  const service = createService({
    // Deadlines (server.answerWithinMs) move only when told: no answer depends on machine speed.
    clock: new ManualClock(),
    config,
    model: new ScriptedModel(),
    ledger: new MemoryLedger(),
    logger: pino({ level: "silent" }),
    onTurn: (t) => void engineMs.push(t.timings.engineMs),
  });
  service.app.get("/bench/engine", async () => {
    const sorted = [...engineMs].sort((a, b) => a - b);
    const p = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? 0;
    const out = { n: sorted.length, p50: p(0.5), p99: p(0.99) };
    engineMs.length = 0;
    return out;
  });
  cpuRoute(service.app);
  await service.app.listen({ port, host: "127.0.0.1" });
} else {
  console.error("usage: servers.ts bare|intake|agent|agent-redis|model PORT");
  process.exit(2);
}
if (kind !== "model") console.log("ready");
process.on("SIGINT", () => process.exit(0));
process.on("SIGTERM", () => process.exit(0));
