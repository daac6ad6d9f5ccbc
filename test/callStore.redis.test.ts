import { rmSync } from "node:fs";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AiFlowAction } from "../src/aiflow/actions.js";
import type { AiFlowEvent } from "../src/aiflow/events.js";
import { initialCallState, type SmsCallState as CallState } from "../src/tasks/sms/state.js";
import { StoreUnavailableError, type CollectRequest } from "../src/store/callStore.js";
import { RedisCallStore } from "../src/store/redisCallStore.js";
import { callStoreContract } from "./callStore.contract.js";
import { PrivateRedis, connectRedis, freePort, uniquePrefix } from "./support/redis.js";

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

let n = 0;
callStoreContract("redis", async () => {
  const store = new RedisCallStore(a, { prefix: uniquePrefix() });
  return { store, id: () => `redis-${++n}`, close: () => store.close() };
});

const session = (id: string) => ({ id, account_id: "1", phone_number: "4921112345678", direction: "inbound" as const, from_phone_number: "4915112345678", to_phone_number: "4921112345678" });
const speak = (id: string, text: string): AiFlowEvent => ({ type: "user_speak", text, barged_in: false, session: session(id) }) as AiFlowEvent;
const say = (id: string, text: string): AiFlowAction => ({ type: "speak", session_id: id, text });
const state = (id: string, turn = 0): CallState => ({ ...initialCallState({ sessionId: id, direction: "inbound", language: "de-DE", step: "main" }), turn });
const http = (seq: number | undefined, o: Partial<CollectRequest> = {}): CollectRequest => ({ via: "http", seq, collecting: true, mayHold: true, maxHoldingLines: 2, ...o });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Two instances of the service: one store each, on its own connection, same prefix. */
function pair() {
  const prefix = uniquePrefix();
  return { prefix, s1: new RedisCallStore(a, { prefix }), s2: new RedisCallStore(b, { prefix }) };
}

describe("RedisCallStore across instances", () => {
  it("50 concurrent arrivals from two connections get distinct seqs 1..50, queued in that order", async () => {
    const { s1, s2 } = pair();
    const c = "burst";
    const arrivals = await Promise.all(
      Array.from({ length: 50 }, (_, i) => (i % 2 ? s1 : s2).arrive(c, { key: `k${i}`, event: speak(c, `${i}`), via: "http", holdingFollowUp: false })),
    );
    const keyOfSeq = new Map<number, string>();
    arrivals.forEach((r, i) => {
      expect(r.kind).toBe("queued");
      keyOfSeq.set((r as { seq: number }).seq, `k${i}`);
    });
    expect([...keyOfSeq.keys()].sort((x, y) => x - y)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));

    expect(await s1.acquireLease(c, "A", 5000)).toBe(true);
    for (let seq = 1; seq <= 50; seq++) {
      const { event } = await (seq % 2 ? s2 : s1).nextEvent(c, "A");
      expect(event).toMatchObject({ seq, key: keyOfSeq.get(seq), attempts: 1 });
      expect(await s1.commit(c, "A", { seq, state: state(c, seq), ttlSeconds: 60, droppable: true })).toBe("committed");
    }
    expect(await s2.progress(c)).toEqual({ processed: 50, queued: 50, ready: { http: 0, ws: 0 }, ended: false });
    expect((await s2.get(c))!.turn).toBe(50);
  });

  it("a collect race from two connections delivers an outbox entry exactly once (50 rounds)", async () => {
    const { s1, s2 } = pair();
    for (let i = 0; i < 50; i++) {
      const c = `race-${i}`;
      await s1.arrive(c, { key: "k", event: speak(c, "x"), via: "http", holdingFollowUp: false });
      await s1.acquireLease(c, "A", 5000);
      await s1.nextEvent(c, "A");
      await s1.commit(c, "A", { seq: 1, state: state(c, 1), ttlSeconds: 60, entry: { seq: 1, via: "http", actions: [say(c, `a${i}`)] }, droppable: true });
      const both = await Promise.all([s1.collect(c, http(undefined)), s2.collect(c, http(undefined))]);
      expect(both.filter((x) => x.kind === "actions")).toMatchObject([{ kind: "actions", actions: [say(c, `a${i}`)] }]);
      expect(both.filter((x) => x.kind === "nothing")).toHaveLength(1);
    }
  });

  it("a late commit racing an answer that gives up: delivered or dropped, never both, never neither (50 rounds)", async () => {
    const { s1, s2 } = pair();
    const outcomes = { delivered: 0, dropped: 0 };
    for (let i = 0; i < 50; i++) {
      const c = `giveup-${i}`;
      await s1.arrive(c, { key: "k", event: speak(c, "x"), via: "http", holdingFollowUp: false });
      expect(await s2.collect(c, http(1))).toEqual({ kind: "hold", count: 1 });
      expect(await s2.collect(c, http(undefined))).toEqual({ kind: "hold", count: 2 });
      await s1.acquireLease(c, "A", 5000);
      await s1.nextEvent(c, "A");
      const [committed, collected] = await Promise.all([
        sleep(Math.random() * 4).then(() => s1.commit(c, "A", { seq: 1, state: state(c, 1), ttlSeconds: 60, entry: { seq: 1, via: "http", actions: [say(c, "late")] }, droppable: true })),
        sleep(Math.random() * 4).then(() => s2.collect(c, http(undefined))),
      ]);
      if (collected.kind === "actions") {
        expect(collected.actions).toEqual([say(c, "late")]);
        expect(committed).toBe("committed");
        outcomes.delivered++;
      } else {
        expect(collected).toEqual({ kind: "give_up", droppedThrough: 1 });
        expect(committed).toBe("dropped");
        expect(await s1.get(c)).toBeUndefined();
        outcomes.dropped++;
      }
      // Nothing left behind to be delivered later.
      expect((await s2.progress(c)).ready).toEqual({ http: 0, ws: 0 });
    }
    expect(outcomes.delivered + outcomes.dropped).toBe(50);
  });

  it("a commit whose seq is not the queue head is a programming error, not an unavailable store", async () => {
    const { s1 } = pair();
    const c = "head";
    await s1.arrive(c, { key: "k", event: speak(c, "x"), via: "http", holdingFollowUp: false });
    await s1.acquireLease(c, "A", 5000);
    const err = await s1.commit(c, "A", { seq: 2, state: state(c), ttlSeconds: 60, droppable: true }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err).not.toBeInstanceOf(StoreUnavailableError);
    expect((err as Error).message).toMatch(/commit of event 2 .* queue head is 1/);
    expect(await s1.progress(c)).toMatchObject({ processed: 0, queued: 1 });
  });

  it("empty action lists, unicode and large numbers survive the round trip through Lua", async () => {
    const { s1 } = pair();
    const c = "roundtrip";
    const actions = [{ type: "speak", session_id: c, text: "Grüße ✓ \"quoted\" / \\ \n", extra: [], n: 1234567890123456 }] as unknown as AiFlowAction[];
    const event = { ...speak(c, "ä"), list: [], big: 9007199254740991 } as unknown as AiFlowEvent;
    await s1.arrive(c, { key: "k", event, via: "ws", holdingFollowUp: false });
    await s1.acquireLease(c, "A", 5000);
    expect((await s1.nextEvent(c, "A")).event).toEqual({ seq: 1, key: "k", event, via: "ws", attempts: 1, heard: 0, barged: 0 });
    await s1.commit(c, "A", { seq: 1, state: state(c, 1), ttlSeconds: 60, entry: { seq: 1, via: "ws", actions }, droppable: false });
    expect(await s1.collect(c, { via: "ws", seq: 1, collecting: false, mayHold: false, maxHoldingLines: 2 })).toMatchObject({ kind: "actions", actions });
  });
});

describe("RedisCallStore keys", () => {
  it("carry the layout version v4 and a call's hash tag, and every key of a call expires", async () => {
    const { prefix, s1 } = pair();
    const c = "keys";
    for (const k of ["k1", "k2"]) await s1.arrive(c, { key: k, event: speak(c, k), via: "http", holdingFollowUp: false });
    await s1.acquireLease(c, "A", 5000);
    await s1.nextEvent(c, "A");
    await s1.commit(c, "A", { seq: 1, state: state(c, 1), ttlSeconds: 600, entry: { seq: 1, via: "http", actions: [say(c, "a")] }, droppable: true });
    expect(await s1.collect(c, http(2, { collecting: false }))).toEqual({ kind: "hold", count: 1 });

    const names = ["state", "queue", "seq", "processed", "outbox", "hold", "lease", "replies"];
    const keys = (await a.keys(`${prefix}*`)).sort();
    expect(keys).toEqual([`${prefix}v4:calls`, ...names.map((k) => `${prefix}v4:call:{${c}}:${k}`)].sort());
    for (const k of keys.filter((k) => k.includes(":call:"))) expect(await a.pttl(k), k).toBeGreaterThan(0);
    expect(await a.pttl(`${prefix}v4:call:{${c}}:state`)).toBeLessThanOrEqual(600_000);

    // After the call ended, what is left (queue, counters, how far answers gave up) expires too.
    await s1.collect(c, http(undefined));
    await s1.collect(c, http(undefined)); // gives up: droppedThrough stays after the end
    await s1.nextEvent(c, "A");
    expect(await s1.commit(c, "A", { seq: 2, state: null, ttlSeconds: 600, droppable: false })).toBe("committed");
    await s1.releaseLease(c, "A");
    const left = await a.keys(`${prefix}v4:call:*`);
    expect(left.length).toBeGreaterThan(0);
    for (const k of left) expect(await a.pttl(k), k).toBeGreaterThan(0);
    expect(await s1.size()).toBe(0);
  });
});

describe("RedisCallStore with Redis down", () => {
  it("arrive and collect fail with StoreUnavailableError when the server stops", async () => {
    const server = new PrivateRedis(await freePort());
    await server.start();
    const redis = new Redis(server.url, { maxRetriesPerRequest: 1, enableOfflineQueue: false, retryStrategy: () => 100 });
    redis.on("error", () => undefined); // reconnect noise while the server is down on purpose
    try {
      await new Promise((r) => redis.once("ready", r));
      const store = new RedisCallStore(redis, { prefix: uniquePrefix() });
      expect(await store.arrive("down", { key: "k", event: speak("down", "x"), via: "http", holdingFollowUp: false })).toEqual({ kind: "queued", seq: 1 });
      await server.stop();
      await expect(store.arrive("down", { key: "k2", event: speak("down", "y"), via: "http", holdingFollowUp: false })).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(store.collect("down", http(1))).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(store.commit("down", "A", { seq: 1, state: null, ttlSeconds: 60, droppable: false })).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(store.size()).rejects.toBeInstanceOf(StoreUnavailableError);
    } finally {
      redis.disconnect();
      await server.stop();
      rmSync(server.dir, { recursive: true, force: true });
    }
  });

  it("a store whose server was never there fails the same way", async () => {
    const redis = new Redis(`redis://127.0.0.1:${await freePort()}`, { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
    redis.on("error", () => undefined);
    try {
      const store = new RedisCallStore(redis, {});
      await expect(store.arrive("nowhere", { key: "k", event: speak("nowhere", "x"), via: "http", holdingFollowUp: false })).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(store.collect("nowhere", http(1))).rejects.toBeInstanceOf(StoreUnavailableError);
    } finally {
      redis.disconnect();
    }
  });
});
