import { rmSync } from "node:fs";
import { Redis } from "ioredis";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { RedisOutbox } from "../src/outbox/redisOutbox.js";
import { OutboxPoster, type OutboxPosterOptions } from "../src/outbox/webhookPoster.js";
import { PrivateRedis, connectRedis, freePort, uniquePrefix } from "./support/redis.js";
import { logLines, startReceiver, type Received, type Receiver, type Reply } from "./support/webhookReceiver.js";

/**
 * Several instances sharing one Redis outbox: each "instance" is a poster with its own Redis
 * connection. Leases run on the test's clock (`clock.t`), so a lease ends when the test says.
 */

const SECRET = "whsec_test_redis_fedcba9876543210";
const T0 = 1_700_000_000_000;
const LEASE = 30_000;

let clock: { t: number; now: () => number };
let logs: ReturnType<typeof logLines>;
let cleanup: Array<() => Promise<void> | void>;

beforeEach(() => {
  clock = { t: T0, now: () => clock.t };
  logs = logLines();
  cleanup = [];
});

afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  expect(logs.lines.join("")).not.toContain(SECRET);
  expect(logs.lines.join("")).not.toContain("Mustermann");
});

async function connection(): Promise<Redis> {
  const r = await connectRedis();
  cleanup.push(() => r.disconnect());
  return r;
}

async function receiver(reply: (r: Received, n: number) => Reply): Promise<Receiver> {
  const r = await startReceiver(reply);
  cleanup.push(() => r.close());
  return r;
}

function poster(outbox: RedisOutbox, url: string, o: Partial<OutboxPosterOptions> = {}): OutboxPoster {
  const p = new OutboxPoster({
    outbox,
    url,
    secret: SECRET,
    timeoutMs: 2000,
    maxAttempts: 5,
    backoff: { initialMs: 1000, maxMs: 60_000, factor: 2 },
    pollMs: 5,
    batch: 4,
    leaseMs: LEASE,
    log: pino({ level: "debug" }, logs),
    now: clock.now,
    ...o,
  });
  cleanup.push(() => p.stop());
  return p;
}

/** Two instances' outboxes on one Redis (same prefix, own connections, the test's clock); A's connection, to kill it. */
async function twoInstances(): Promise<{ connA: Redis; a: RedisOutbox; b: RedisOutbox }> {
  const prefix = uniquePrefix();
  const connA = await connection();
  return { connA, a: new RedisOutbox(connA, { prefix, now: clock.now }), b: new RedisOutbox(await connection(), { prefix, now: clock.now }) };
}

const body = (i: number) => JSON.stringify({ callId: `call-${i}`, caller: "Erika Mustermann", turn: i });

describe("OutboxPoster on Redis, several instances", () => {
  it("an instance that posted and died before recording it: another instance posts it again after the lease, same body and Idempotency-Key", async () => {
    const rx = await receiver(() => ({ status: 200 }));
    const { connA, a, b } = await twoInstances();
    await a.put("call-1", body(1), T0, { final: true });

    // Instance A's process dies right after the receiver answered: it never calls delivered.
    const dying = poster(a, rx.url, {
      fetch: async (url, init) => {
        const res = await fetch(url, init);
        connA.disconnect();
        return res;
      },
    });
    expect(await dying.runOnce()).toMatchObject({ claimed: 1, delivered: 0, failed: 1 });
    expect(rx.received).toHaveLength(1);

    const survivor = poster(b, rx.url);
    clock.t = T0 + LEASE - 1;
    expect(await survivor.runOnce()).toMatchObject({ claimed: 0 });
    expect(await b.pending()).toBe(1);
    clock.t = T0 + LEASE;
    expect(await survivor.runOnce()).toMatchObject({ claimed: 1, delivered: 1 });
    clock.t = T0 + 10 * LEASE;
    expect(await survivor.runOnce()).toMatchObject({ claimed: 0 });

    expect(rx.received.map((r) => [r.body, r.headers["idempotency-key"]])).toEqual([
      [body(1), "call-1"],
      [body(1), "call-1"],
    ]);
    expect(await b.pending()).toBe(0);
    expect(await b.put("call-1", body(1), clock.t)).toBe("ignored_delivered");
  });

  it("an instance that claimed and died before posting: another instance posts it once, after the lease", async () => {
    const rx = await receiver(() => ({ status: 200 }));
    const { connA, a, b } = await twoInstances();
    await a.put("call-1", body(1), T0, { final: true });
    expect(await a.claimDue(T0, 4, LEASE)).toHaveLength(1);
    connA.disconnect();

    const survivor = poster(b, rx.url);
    expect(await survivor.runOnce()).toMatchObject({ claimed: 0 });
    clock.t = T0 + LEASE;
    expect(await survivor.runOnce()).toMatchObject({ claimed: 1, delivered: 1 });
    expect(rx.received.map((r) => r.body)).toEqual([body(1)]);
    expect(await b.pending()).toBe(0);
  });

  it("two instances polling the same outbox post each entry exactly once", async () => {
    const prefix = uniquePrefix();
    const rx = await receiver((_, n) => ({ status: 200, delayMs: n % 3 }));
    const a = new RedisOutbox(await connection(), { prefix });
    const b = new RedisOutbox(await connection(), { prefix });
    const n = 30;
    for (let i = 0; i < n; i++) await (i % 2 ? a : b).put(`call-${i}`, body(i), Date.now(), { final: true });
    // Real time here: both loops poll on their own, as two instances do.
    const pa = poster(a, rx.url, { now: Date.now });
    const pb = poster(b, rx.url, { now: Date.now });
    pa.start();
    pb.start();
    for (let i = 0; i < 1000 && ((await a.pending()) > 0 || rx.received.length < n); i++) await new Promise((r) => setTimeout(r, 5));
    await Promise.all([pa.stop(), pb.stop()]);

    const keys = rx.received.map((r) => String(r.headers["idempotency-key"]));
    expect(keys.sort()).toEqual(Array.from({ length: n }, (_, i) => `call-${i}`).sort());
    for (const r of rx.received) expect(r.body).toBe(body(Number(String(r.headers["idempotency-key"]).slice(5))));
    expect(await b.pending()).toBe(0);
    const delivered = logs.lines.map((l) => JSON.parse(l) as { msg: string; key: string }).filter((l) => l.msg === "outbox: delivered");
    expect(delivered).toHaveLength(n);
  });

  it("a Redis outage is logged, not thrown; after the restart the next cycle delivers", async () => {
    const server = new PrivateRedis(await freePort());
    await server.start();
    cleanup.push(async () => {
      await server.stop();
      rmSync(server.dir, { recursive: true, force: true });
    });
    const redis = new Redis(server.url, { maxRetriesPerRequest: 1, enableOfflineQueue: false, retryStrategy: () => 50 });
    redis.on("error", () => undefined); // reconnect noise while the server is down on purpose
    cleanup.push(() => redis.disconnect());
    await new Promise((r) => redis.once("ready", r));
    const rx = await receiver(() => ({ status: 200 }));
    const outbox = new RedisOutbox(redis, { prefix: uniquePrefix(), now: clock.now });
    await outbox.put("call-1", body(1), T0, { final: true });
    const p = poster(outbox, rx.url);

    await server.stop();
    expect(await p.runOnce()).toMatchObject({ claimed: 0, failed: 1 });
    const warn = logs.lines.map((l) => JSON.parse(l) as Record<string, unknown>).at(-1);
    expect(warn).toMatchObject({ level: 40, err: "outbox_unavailable", msg: expect.stringContaining("next cycle") });

    await server.start(); // AOF: the entry survived
    await new Promise((r) => (redis.status === "ready" ? r(undefined) : redis.once("ready", r)));
    expect(await p.runOnce()).toMatchObject({ claimed: 1, delivered: 1 });
    expect(rx.received.map((r) => r.body)).toEqual([body(1)]);
  });
});
