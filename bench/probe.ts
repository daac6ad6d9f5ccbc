import { createHistogram, monitorEventLoopDelay, performance, type RecordableHistogram } from "node:perf_hooks";
import type { FastifyInstance } from "fastify";
import type { Redis } from "ioredis";
import type { CallStore } from "../src/store/callStore.js";

/**
 * What the concurrency bench asks of the service process, measured inside it: how late its
 * event loop runs, how many Redis commands it sends and how long each takes to come back, and
 * how often each call-store operation runs (with its time), lease attempts refused included.
 * Nothing here changes what the service does; it only counts.
 */

type StoreOp = "arrive" | "arriveAndTake" | "acquireLease" | "renewLease" | "releaseLease" | "nextEvent" | "commit" | "commitAndNext" | "progress" | "collect" | "get" | "size";
const STORE_OPS: readonly StoreOp[] = ["arrive", "arriveAndTake", "acquireLease", "renewLease", "releaseLease", "nextEvent", "commit", "commitAndNext", "progress", "collect", "get", "size"];

export interface HistogramSummary {
  n: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

export interface ProbeStats {
  /** Event-loop delay: how late a 10 ms timer fires (perf_hooks.monitorEventLoopDelay). */
  eventLoop: Omit<HistogramSummary, "n"> & { meanMs: number };
  /** Every command this process sent to Redis (one EVALSHA per store script), by name. */
  redisCommands: Record<string, number>;
  /** Send to reply, as this process sees it (includes waiting for its own event loop). */
  redisRoundTrip: HistogramSummary;
  /** Call-store operations, by name: count and time each took. */
  store: Record<string, HistogramSummary>;
  /** acquireLease calls that found the lease held (by this instance's other pump or another instance). */
  leaseBusy: number;
  /** Webhook requests as the service sees them: headers parsed to answer written. */
  webhookInService: HistogramSummary;
  cpuUs: number;
  /** Of which in the kernel (socket reads and writes, mostly). */
  cpuSystemUs: number;
}

const ms = (ns: number) => Math.round(ns / 1e4) / 100;
const LOOP_RESOLUTION_MS = 10;
/** The histogram holds whole timer intervals (resolution included): the delay is what exceeds it. */
const late = (ns: number) => Math.max(0, ms(ns) - LOOP_RESOLUTION_MS);

function summary(h: RecordableHistogram): HistogramSummary {
  return h.count === 0 ? { n: 0, p50Ms: 0, p99Ms: 0, maxMs: 0 } : { n: h.count, p50Ms: ms(h.percentile(50)), p99Ms: ms(h.percentile(99)), maxMs: ms(h.max) };
}

export class ServiceProbe {
  private readonly loop = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
  private commands: Record<string, number> = {};
  private readonly rtt = createHistogram();
  private readonly ops = new Map<StoreOp, RecordableHistogram>(STORE_OPS.map((op) => [op, createHistogram()]));
  private leaseBusy = 0;
  /** Webhook requests inside the service: from their headers parsed to the answer written. */
  private readonly webhook = createHistogram();
  private cpuAtReset = process.cpuUsage();

  constructor(redis: Redis) {
    this.loop.enable();
    // Every command goes through sendCommand (EVALSHA, EVAL, GET, ZADD, ...): count it and time its reply.
    const send = redis.sendCommand.bind(redis);
    redis.sendCommand = ((command: Parameters<Redis["sendCommand"]>[0], stream?: Parameters<Redis["sendCommand"]>[1]) => {
      const name = command.name.toLowerCase();
      this.commands[name] = (this.commands[name] ?? 0) + 1;
      const t0 = performance.now();
      const done = () => this.rtt.record(Math.max(1, Math.round((performance.now() - t0) * 1e6)));
      command.promise.then(done, done);
      return send(command, stream);
    }) as Redis["sendCommand"];
  }

  /** The store, with every operation counted and timed. */
  store<S extends object>(inner: CallStore<S>): CallStore<S> {
    const ops = this.ops;
    const self = this;
    return new Proxy(inner, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver) as unknown;
        if (typeof value !== "function" || !ops.has(prop as StoreOp)) return value;
        const h = ops.get(prop as StoreOp)!;
        return async (...args: unknown[]) => {
          const t0 = performance.now();
          try {
            const r = (await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args)) as unknown;
            if (prop === "acquireLease" && r === false) self.leaseBusy++;
            return r;
          } finally {
            h.record(Math.max(1, Math.round((performance.now() - t0) * 1e6)));
          }
        };
      },
    });
  }

  reset(): void {
    this.loop.reset();
    this.commands = {};
    this.rtt.reset();
    for (const h of this.ops.values()) h.reset();
    this.leaseBusy = 0;
    this.webhook.reset();
    this.cpuAtReset = process.cpuUsage();
  }

  stats(): ProbeStats {
    const cpu = process.cpuUsage(this.cpuAtReset);
    return {
      eventLoop: { p50Ms: late(this.loop.percentile(50)), p99Ms: late(this.loop.percentile(99)), maxMs: late(this.loop.max), meanMs: late(this.loop.mean) },
      redisCommands: { ...this.commands },
      redisRoundTrip: summary(this.rtt),
      store: Object.fromEntries([...this.ops].map(([op, h]) => [op, summary(h)])),
      leaseBusy: this.leaseBusy,
      webhookInService: summary(this.webhook),
      cpuUs: cpu.user + cpu.system,
      cpuSystemUs: cpu.system,
    };
  }

  /** GET /bench/probe: the figures since the last POST /bench/probe/reset. */
  routes(app: FastifyInstance): void {
    const started = new WeakMap<object, number>();
    app.addHook("onRequest", async (req) => void started.set(req, performance.now()));
    app.addHook("onResponse", async (req) => {
      const t0 = started.get(req);
      if (t0 !== undefined && req.url === "/webhook") this.webhook.record(Math.max(1, Math.round((performance.now() - t0) * 1e6)));
    });
    app.get("/bench/probe", { config: { auth: "open" } }, async () => this.stats());
    app.post("/bench/probe/reset", { config: { auth: "open" } }, async () => {
      this.reset();
      return { ok: true };
    });
  }
}
