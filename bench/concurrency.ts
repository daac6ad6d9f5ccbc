import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import { Redis } from "ioredis";
import { loadConfigFile } from "../src/appConfig.js";
import { PromptLibrary } from "../src/engine/promptLibrary.js";
import { PROMPTS_DIR } from "../src/service.js";
import { freePort } from "../test/support/processes.js";
import { percentile, playWholeCall, type CallOutcome, type CallPlayer, type Latency, type Post } from "./deadline.js";
import type { ProbeStats } from "./probe.js";

/**
 * Bench (f), many calls at once on one instance with Redis: the real service (createService,
 * system clock, RedisCallStore, Redis SMS limits) in its own process, a local model server in
 * another taking a random 100–500 ms per request, and this process playing `calls` whole calls
 * over real HTTP at once, each exactly as bench (e) plays them (holding lines included). Reports
 * every webhook answer's time, holding lines, whether each call ended with one SMS to its own
 * caller, and where the time goes: the service's event-loop delay, its Redis commands per event
 * and their round-trip time, its store operations and refused lease attempts, its CPU per event;
 * this process's own event-loop delay shows the client was not what was slow.
 */

export interface ConcurrencyOptions {
  calls: number;
  /** Calls start evenly spread over this long (all of them are live at once after it). */
  rampMs?: number;
  modelMinMs?: number;
  modelMaxMs?: number;
  /** How long sipgate speaks each line (assistant_speak to assistant_speech_ended). */
  speechMs?: number;
  /** Most connections the client opens to the service (keep-alive); at least one per request in flight. */
  maxSockets?: number;
  /** Extra environment for the service process (BENCH_REDIS_AUTOPIPELINING=1, ...). */
  serviceEnv?: Record<string, string>;
}

export interface ConcurrencyResult {
  calls: number;
  rampMs: number;
  speechMs: number;
  model: { minMs: number; maxMs: number; requests: number; unexpected: number };
  redis: string;
  /** Every webhook request's time, send to last byte (all event types), and by type. */
  http: { n: number; p50Ms: number; p99Ms: number; maxMs: number; over800Ms: number; over1000Ms: number; byEvent: Record<string, { n: number; p50Ms: number; p99Ms: number; maxMs: number }> };
  holdingLines: number;
  apologies: number;
  completedCalls: number;
  /** Calls refused as overloaded at session_start (the `overloaded` line and a hangup): not failed, not admitted. */
  refusedCalls: number;
  /** The webhook answers of the admitted calls only (every request of a call not refused). */
  admitted: { calls: number; n: number; p50Ms: number; p99Ms: number; maxMs: number; over800Ms: number };
  /** server.overload of the service's config, as it ran. */
  overload: { maxEventLoopDelayMs: number; maxCpuCores: number; maxInFlightTurns: number; maxNewCallsPerSecond: number; off: boolean };
  problems: string[];
  service: ProbeStats & { events: number; redisCommandsPerEvent: number; cpuUsPerEvent: number; storeOpsPerEvent: Record<string, number> };
  /** Connections the client opened during the run, and how long each took to be connected. */
  connections: { opened: number; p50Ms: number; p99Ms: number; maxMs: number; over1000Ms: number };
  /** The kernel's TCP counters (Linux, machine-wide): connection attempts dropped at a full listen queue, SYNs sent again. */
  tcp?: { listenOverflows: number; synRetransmits: number };
  /** Redis' own view (INFO): CPU it used, and commands it ran, during the run. */
  redisServer: { cpuMs: number; calls: number };
  client: { eventLoopP99Ms: number; eventLoopMaxMs: number };
  wallMs: number;
}

const round = (x: number) => Math.round(x * 10) / 10;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/** A Redis for the bench: TEST_REDIS_URL or REDIS_URL if set (under a prefix of its own, removed afterwards), else a private redis-server. */
export async function benchRedis(): Promise<{ url: string; label: string; stop: () => Promise<void> }> {
  const given = process.env.TEST_REDIS_URL || process.env.REDIS_URL;
  if (given) return { url: given, label: "the Redis at TEST_REDIS_URL / REDIS_URL", stop: async () => undefined };
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "bench-redis-"));
  // As a production Redis without persistence on every write would run: no fsync on the hot path.
  const proc = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir], { stdio: "ignore" });
  const url = `redis://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
    r.on("error", () => undefined);
    try {
      await r.connect();
      await r.ping();
      r.disconnect();
      break;
    } catch (e) {
      r.disconnect();
      if (i > 100) throw new Error(`redis-server on port ${port} did not start: ${(e as Error).message}`);
      await sleep(50);
    }
  }
  const stop = async () => {
    if (proc.exitCode === null) {
      const exited = new Promise((r) => proc.once("exit", r));
      proc.kill("SIGTERM");
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  return { url, label: "a private redis-server (no persistence)", stop };
}

/** A server process of bench/servers.ts; resolves with its first "ready" line. */
async function startChild(kind: string, env: Record<string, string>): Promise<{ proc: ChildProcess; port: number; line: string }> {
  const port = await freePort();
  // BENCH_CPU_PROF=DIR: the service writes a CPU profile there (node --cpu-prof) when it stops.
  const prof = kind === "agent-redis" && process.env.BENCH_CPU_PROF ? ["--cpu-prof", "--cpu-prof-dir", process.env.BENCH_CPU_PROF] : [];
  const proc = spawn(process.execPath, [...prof, "--import", "tsx", "bench/servers.ts", kind, String(port)], { stdio: ["ignore", "pipe", "inherit", "ipc"], env: { ...process.env, ...env } });
  const line = await new Promise<string>((resolve, reject) => {
    let buf = "";
    proc.stdout!.on("data", (c) => {
      buf += String(c);
      const l = buf.split("\n").find((x) => x.startsWith("ready"));
      if (l) resolve(l);
    });
    proc.once("exit", (code) => reject(new Error(`${kind} server exited ${code}`)));
  });
  return { proc, port, line };
}

async function stopChild(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null) return;
  const exited = new Promise((r) => proc.once("exit", r));
  proc.kill("SIGTERM");
  await exited;
}

/** New connections the client opened and how long each took to connect (a dropped SYN is retried after 1 s, 3 s, 7 s). */
interface Connects {
  ms: number[];
}

/** POSTs over keep-alive connections (node:http), one connection per request in flight up to maxSockets. */
function keepAlivePost(agent: http.Agent, port: number, path: string, connects: Connects): Post {
  return (body) =>
    new Promise((resolve, reject) => {
      const req = http.request({ host: "127.0.0.1", port, path, method: "POST", agent, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } }, (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (text += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
        res.on("error", reject);
      });
      req.on("error", reject);
      req.once("socket", (socket) => {
        if (!socket.connecting) return;
        const t0 = performance.now();
        socket.once("connect", () => connects.ms.push(performance.now() - t0));
      });
      req.end(body);
    });
}

async function getJson<T>(port: number, path: string, method = "GET"): Promise<T> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { method });
  if (!res.ok) throw new Error(`${method} ${path}: HTTP ${res.status}`);
  return (await res.json()) as T;
}

/** The kernel's TCP counters (Linux: /proc/net/netstat), machine-wide; undefined elsewhere. */
function tcpCounters(): { listenOverflows: number; synRetransmits: number } | undefined {
  try {
    const lines = readFileSync("/proc/net/netstat", "utf8").split("\n");
    const names = lines[0]!.split(" ");
    const values = lines[1]!.split(" ").map(Number);
    const get = (k: string) => values[names.indexOf(k)] ?? 0;
    return { listenOverflows: get("ListenOverflows"), synRetransmits: get("TCPSynRetrans") };
  } catch {
    return undefined;
  }
}

/** Redis' own CPU (ms) and commands run so far. */
async function redisInfo(redis: Redis): Promise<{ cpuMs: number; calls: number }> {
  const info = await redis.info();
  const num = (k: string) => Number(new RegExp(`^${k}:([\\d.]+)`, "m").exec(info)?.[1] ?? 0);
  return { cpuMs: (num("used_cpu_user") + num("used_cpu_sys")) * 1000, calls: num("total_commands_processed") };
}

/** Plays `calls` whole calls at once against one service instance on Redis; see the file comment. */
export async function concurrencyScenario(opts: ConcurrencyOptions): Promise<ConcurrencyResult> {
  const rampMs = opts.rampMs ?? 1000;
  const speechMs = opts.speechMs ?? 1000;
  const modelMinMs = opts.modelMinMs ?? 100;
  const modelMaxMs = opts.modelMaxMs ?? 500;
  const config = loadConfigFile("config/agent.yaml");
  const prompts = new PromptLibrary(PROMPTS_DIR, config.language);
  const redis = await benchRedis();
  const prefix = `bench:${process.pid}:${Date.now().toString(36)}:`;
  const children: ChildProcess[] = [];
  const admin = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  admin.on("error", () => undefined);
  const agent = new http.Agent({ keepAlive: true, maxSockets: opts.maxSockets ?? Math.max(64, 2 * opts.calls) });
  try {
    await admin.connect();
    const model = await startChild("model", { BENCH_MODEL_MIN_MS: String(modelMinMs), BENCH_MODEL_MAX_MS: String(modelMaxMs) });
    children.push(model.proc);
    const modelUrl = model.line.split(" ")[1]!;
    const service = await startChild("agent-redis", { BENCH_REDIS_URL: redis.url, BENCH_REDIS_PREFIX: prefix, BENCH_MODEL_URL: modelUrl, ...opts.serviceEnv });
    children.push(service.proc);
    const latencies: Latency[] = [];
    const connects: Connects = { ms: [] };
    const player: CallPlayer = { post: keepAlivePost(agent, service.port, "/webhook", connects), holding: prompts.line("holding"), gaveUp: prompts.line("holding_gave_up"), overloaded: prompts.line("overloaded"), speechMs, latencies };

    // A few calls first: code paths compiled, connections open, Lua scripts loaded.
    await Promise.all(Array.from({ length: 10 }, (_, i) => playWholeCall(player, `warm-${i}`, `49151${String(49_000_000 + i).padStart(8, "0")}`)));
    latencies.length = 0;
    connects.ms.length = 0;
    await getJson(service.port, "/bench/probe/reset", "POST");
    const tcpBefore = tcpCounters();
    const redisBefore = await redisInfo(admin);
    const clientLoop = monitorEventLoopDelay({ resolution: 10 });
    clientLoop.enable();

    const started = performance.now();
    const outcomes: CallOutcome[] = await Promise.all(
      Array.from({ length: opts.calls }, async (_, i) => {
        await sleep((i * rampMs) / opts.calls);
        // A different valid German mobile number for every call: each SMS must reach its own caller.
        return playWholeCall(player, `many-${i}`, `49151${String(40_000_000 + i).padStart(8, "0")}`).catch((e: Error): CallOutcome => ({ id: `many-${i}`, caller: "", completed: false, sends: 0, holdingLines: 0, apologies: 0, repeats: 0, answerMs: [], problem: e.message }));
      }),
    );
    const wallMs = performance.now() - started;
    clientLoop.disable();
    const probe = await getJson<ProbeStats>(service.port, "/bench/probe");
    const redisAfter = await redisInfo(admin);
    const tcpAfter = tcpCounters();
    const modelStats = await new Promise<{ requests: number; unexpected: number }>((resolve) => {
      model.proc.once("message", (m) => resolve(m as { requests: number; unexpected: number }));
      model.proc.send("stats");
    });

    const ms = latencies.map((l) => l.ms);
    const stats = (xs: number[]) => ({ n: xs.length, p50Ms: round(percentile(xs, 0.5)), p99Ms: round(percentile(xs, 0.99)), maxMs: round(percentile(xs, 1)) });
    const types = [...new Set(latencies.map((l) => l.type))];
    const events = latencies.length;
    const sum = (f: (o: CallOutcome) => number) => outcomes.reduce((a, o) => a + f(o), 0);
    const commands = Object.values(probe.redisCommands).reduce((a, b) => a + b, 0);
    const refusedIds = new Set(outcomes.filter((o) => o.refused).map((o) => o.id));
    const admittedMs = latencies.filter((l) => !refusedIds.has(l.call ?? "")).map((l) => l.ms);
    const off = opts.serviceEnv?.BENCH_OVERLOAD === "off";
    const shippedLimits = off ? { maxEventLoopDelayMs: 0, maxCpuCores: 0, maxInFlightTurns: 0, maxNewCallsPerSecond: 0 } : config.server.overload;
    const newCalls = opts.serviceEnv?.BENCH_MAX_NEW_CALLS;
    const limits = newCalls ? { ...shippedLimits, maxNewCallsPerSecond: Number(newCalls) } : shippedLimits;
    return {
      calls: opts.calls,
      rampMs,
      speechMs,
      model: { minMs: modelMinMs, maxMs: modelMaxMs, ...modelStats },
      redis: redis.label,
      http: { ...stats(ms), over800Ms: ms.filter((x) => x > 800).length, over1000Ms: ms.filter((x) => x > 1000).length, byEvent: Object.fromEntries(types.map((t) => [t, stats(latencies.filter((l) => l.type === t).map((l) => l.ms))])) },
      holdingLines: sum((o) => o.holdingLines),
      apologies: sum((o) => o.apologies),
      completedCalls: outcomes.filter((o) => o.completed).length,
      refusedCalls: refusedIds.size,
      admitted: { calls: opts.calls - refusedIds.size, ...stats(admittedMs), over800Ms: admittedMs.filter((x) => x > 800).length },
      overload: { maxEventLoopDelayMs: limits.maxEventLoopDelayMs, maxCpuCores: limits.maxCpuCores, maxInFlightTurns: limits.maxInFlightTurns, maxNewCallsPerSecond: limits.maxNewCallsPerSecond, off },
      problems: outcomes.filter((o) => o.problem).map((o) => `${o.id}: ${o.problem}`),
      service: {
        ...probe,
        events,
        redisCommandsPerEvent: round(commands / Math.max(1, events)),
        cpuUsPerEvent: Math.round(probe.cpuUs / Math.max(1, events)),
        storeOpsPerEvent: Object.fromEntries(Object.entries(probe.store).map(([op, h]) => [op, round(h.n / Math.max(1, events))])),
      },
      redisServer: { cpuMs: Math.round(redisAfter.cpuMs - redisBefore.cpuMs), calls: redisAfter.calls - redisBefore.calls },
      // Whole timer intervals: the delay is what exceeds the 10 ms resolution.
      connections: { opened: connects.ms.length, p50Ms: round(percentile(connects.ms, 0.5)), p99Ms: round(percentile(connects.ms, 0.99)), maxMs: round(percentile(connects.ms, 1)), over1000Ms: connects.ms.filter((x) => x > 1000).length },
      tcp: tcpAfter && tcpBefore ? { listenOverflows: tcpAfter.listenOverflows - tcpBefore.listenOverflows, synRetransmits: tcpAfter.synRetransmits - tcpBefore.synRetransmits } : undefined,
      client: { eventLoopP99Ms: round(Math.max(0, clientLoop.percentile(99) / 1e6 - 10)), eventLoopMaxMs: round(Math.max(0, clientLoop.max / 1e6 - 10)) },
      wallMs: Math.round(wallMs),
    };
  } finally {
    agent.destroy();
    for (const c of children.reverse()) await stopChild(c);
    // A shared Redis keeps nothing of the bench; a private one goes altogether.
    if (admin.status === "ready") {
      let cursor = "0";
      do {
        const [next, keys] = await admin.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
        cursor = next;
        if (keys.length) await admin.del(...keys);
      } while (cursor !== "0");
    }
    admin.disconnect();
    await redis.stop();
  }
}

// `node --import tsx bench/concurrency.ts [calls]`: one run, printed as JSON (bench/run.ts reports it as (f)).
if (process.argv[1]?.endsWith("concurrency.ts")) {
  const calls = Number(process.argv[2] ?? process.env.BENCH_CONCURRENT_CALLS ?? 1000);
  const serviceEnv = Object.fromEntries(["BENCH_REDIS_AUTOPIPELINING", "BENCH_LISTEN_BACKLOG", "BENCH_OVERLOAD", "BENCH_MAX_NEW_CALLS"].flatMap((k) => (process.env[k] ? [[k, process.env[k]!]] : [])));
  concurrencyScenario({ calls, serviceEnv }).then(
    (r) => {
      console.log(JSON.stringify(r, null, 2));
      process.exit(0);
    },
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}
