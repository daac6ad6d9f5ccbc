import { rmSync } from "node:fs";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OutboxUnavailableError } from "../src/outbox/outbox.js";
import { RedisOutbox } from "../src/outbox/redisOutbox.js";
import { outboxContract } from "./outbox.contract.js";
import { PrivateRedis, connectRedis, freePort, uniquePrefix } from "./support/redis.js";
import { InvalidArgumentError } from "../src/core/errors.js";

let a: Redis;
let b: Redis;
beforeAll(async () => {
  a = await connectRedis();
  b = await connectRedis();
});
afterAll(async () => {
  a?.disconnect();
  b?.disconnect();
});

// Two instances: one outbox each, on its own connection, same prefix.
outboxContract("redis", async (opts) => {
  const prefix = uniquePrefix();
  const outbox = new RedisOutbox(a, { ...opts, prefix });
  const other = new RedisOutbox(b, { ...opts, prefix });
  return { outbox, other, close: async () => (await outbox.close(), await other.close()) };
});

describe("RedisOutbox keys", () => {
  it("live under <prefix>outbox:v1:{outbox}: and what is over expires", async () => {
    const prefix = uniquePrefix();
    const outbox = new RedisOutbox(a, { prefix, tombstoneMs: 60_000, deadLetterMs: 120_000 });
    const base = `${prefix}outbox:v1:{outbox}:`;
    await outbox.put("c1", '{"x":1}', Date.now());
    await outbox.put("c2", '{"x":2}', Date.now());
    expect((await a.keys(`${prefix}*`)).sort()).toEqual([`${base}due`, `${base}e:c1`, `${base}e:c2`]);
    expect(await a.hgetall(`${base}e:c1`)).toMatchObject({ body: '{"x":1}', final: "0", attempts: "0", version: "1", token: "" });
    const claims = await outbox.claimDue(Date.now(), 10, 5000);
    const c1 = claims.find((c) => c.key === "c1")!;
    const c2 = claims.find((c) => c.key === "c2")!;
    expect(await a.zscore(`${base}due`, "c1")).toBe(String(c1.leaseUntil));
    await outbox.delivered(c1);
    await outbox.deadLetter(c2, "http 400");
    expect((await a.keys(`${prefix}*`)).sort()).toEqual([`${base}d:c2`, `${base}dead`, `${base}t:c1`, `${base}t:c2`]);
    for (const k of [`${base}t:c1`, `${base}t:c2`]) expect(await a.pttl(k)).toBeGreaterThan(50_000);
    expect(await a.pttl(`${base}t:c1`)).toBeLessThanOrEqual(60_000);
    expect(await a.pttl(`${base}d:c2`)).toBeGreaterThan(60_000);
    expect(await a.pttl(`${base}d:c2`)).toBeLessThanOrEqual(120_000);
    expect(outbox.indexKeys).toEqual({ due: `${base}due`, dead: `${base}dead` });
    expect(outbox.keysOf("c2")).toEqual({ entry: `${base}e:c2`, tombstone: `${base}t:c2`, deadLetter: `${base}d:c2` });
  });

  it("refuses a prefix with a hash tag of its own", () => {
    expect(() => new RedisOutbox(a, { prefix: "x{y}:" })).toThrow(InvalidArgumentError);
  });
});

describe("RedisOutbox with Redis down", () => {
  it("scripts are sent again to a server that forgot them; every operation fails with OutboxUnavailableError when the server stops", async () => {
    const server = new PrivateRedis(await freePort());
    await server.start();
    const redis = new Redis(server.url, { maxRetriesPerRequest: 1, enableOfflineQueue: false, retryStrategy: () => 100 });
    redis.on("error", () => undefined); // reconnect noise while the server is down on purpose
    try {
      await new Promise((r) => redis.once("ready", r));
      const outbox = new RedisOutbox(redis, { prefix: uniquePrefix() });
      await outbox.put("k", "{}", 0);
      // A server that forgot the scripts (restart, SCRIPT FLUSH) is sent them again. On this
      // private server: a flush on the shared one would add commands to other tests' counts.
      await redis.script("FLUSH");
      expect(await outbox.put("k", '{"v":2}', 0)).toBe("stored");
      const [claim] = await outbox.claimDue(1, 10, 1000);
      expect(claim).toMatchObject({ key: "k", body: '{"v":2}', version: 2 });
      await server.stop();
      await expect(outbox.put("k", "{}", 0)).rejects.toBeInstanceOf(OutboxUnavailableError);
      await expect(outbox.claimDue(1, 10, 1000)).rejects.toBeInstanceOf(OutboxUnavailableError);
      await expect(outbox.delivered(claim!)).rejects.toBeInstanceOf(OutboxUnavailableError);
      await expect(outbox.retryLater(claim!, 2, "x")).rejects.toBeInstanceOf(OutboxUnavailableError);
      await expect(outbox.deadLetter(claim!, "x")).rejects.toBeInstanceOf(OutboxUnavailableError);
      await expect(outbox.deadLetters()).rejects.toBeInstanceOf(OutboxUnavailableError);
      await expect(outbox.pending()).rejects.toBeInstanceOf(OutboxUnavailableError);
    } finally {
      redis.disconnect();
      await server.stop();
      rmSync(server.dir, { recursive: true, force: true });
    }
  });
});
