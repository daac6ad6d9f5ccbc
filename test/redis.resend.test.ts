import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AiFlowAction } from "../src/aiflow/actions.js";
import type { AiFlowEvent } from "../src/aiflow/events.js";
import { RedisOutbox } from "../src/outbox/redisOutbox.js";
import { RedisRateLimiter } from "../src/store/rateLimiter.js";
import { RedisCallStore } from "../src/store/redisCallStore.js";
import type { CollectRequest } from "../src/store/callStore.js";
import { initialCallState, type SmsCallState as CallState } from "../src/tasks/sms/state.js";
import { connectRedis, uniquePrefix } from "./support/redis.js";
import { DroppingProxy } from "./support/droppingProxy.js";

/*
 * ioredis sends a command again after a reconnect when the dropped connection lost its reply
 * (autoResendUnfulfilledCommands, on by default). Every store script must be safe to run twice:
 * the second run changes nothing and answers as the first did.
 */

let a: Redis;
beforeAll(async () => {
  a = await connectRedis();
});
afterAll(() => {
  a?.disconnect();
});

const session = (id: string) => ({ id, account_id: "1", phone_number: "4921112345678", direction: "inbound" as const, from_phone_number: "4915112345678", to_phone_number: "4921112345678" });
const silence = (id: string): AiFlowEvent => ({ type: "user_input_timeout", session: session(id) }) as AiFlowEvent;
const digit = (id: string, d: string): AiFlowEvent => ({ type: "dtmf_received", digit: d, session: session(id) }) as AiFlowEvent;
const say = (id: string, text: string): AiFlowAction => ({ type: "speak", session_id: id, text });
const state = (id: string, turn = 0): CallState => ({ ...initialCallState({ sessionId: id, direction: "inbound", language: "de-DE", step: "main" }), turn });
const http = (seq: number | undefined, o: Partial<CollectRequest> = {}): CollectRequest => ({ via: "http", seq, collecting: true, mayHold: true, maxHoldingLines: 2, ...o });

/**
 * The client as ioredis behaves when a connection drops after a script ran but before its reply
 * arrived: the same command (same arguments) is sent again and only the second reply is seen.
 */
function resending(redis: Redis): Redis {
  return new Proxy(redis, {
    get(target, p) {
      if (p === "evalsha" || p === "eval") {
        const send = (target[p] as (...args: unknown[]) => Promise<unknown>).bind(target);
        return async (...args: unknown[]) => {
          await send(...args); // its reply is lost
          return send(...args);
        };
      }
      const v = Reflect.get(target, p, target) as unknown;
      return typeof v === "function" ? (v as (...args: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/** A store whose every script call is resent once, and a plain one on the same keys. */
function stores() {
  const prefix = uniquePrefix();
  return { twice: new RedisCallStore<CallState>(resending(a), { prefix }), once: new RedisCallStore<CallState>(a, { prefix }) };
}

describe("store scripts sent twice (reply lost, command resent)", () => {
  it("arrive: a silence and a digit resent are queued once each, with the seq of the first run", async () => {
    const { twice, once } = stores();
    const c = "arrive";
    expect(await twice.arrive(c, { key: "t", event: silence(c), via: "http", holdingFollowUp: false })).toEqual({ kind: "queued", seq: 1 });
    expect(await twice.arrive(c, { key: "d", event: digit(c, "7"), via: "http", holdingFollowUp: false })).toEqual({ kind: "queued", seq: 2 });
    expect(await once.progress(c)).toMatchObject({ processed: 0, queued: 2 });
    // One re-prompt for the silence, the digit once: nothing else is queued.
    expect(await once.acquireLease(c, "A", 5000)).toBe(true);
    const seen: string[] = [];
    for (;;) {
      const { event } = await once.nextEvent(c, "A");
      if (!event) break;
      seen.push(event.key);
      expect(await once.commit(c, "A", { seq: event.seq, state: state(c, event.seq), ttlSeconds: 60, droppable: true })).toBe("committed");
    }
    expect(seen).toEqual(["t", "d"]);
  });

  it("arrive of a holding line's follow-up resent: still collect only", async () => {
    const { twice, once } = stores();
    const c = "follow-up";
    await once.arrive(c, { key: "k", event: silence(c), via: "http", holdingFollowUp: false });
    expect(await once.collect(c, http(1))).toEqual({ kind: "hold", count: 1 });
    expect(await twice.arrive(c, { key: "f", event: silence(c), via: "http", holdingFollowUp: true })).toEqual({ kind: "collect" });
    expect(await once.progress(c)).toMatchObject({ queued: 1 });
  });

  it("nextEvent counts the attempt once; a new call of it counts again", async () => {
    const { twice, once } = stores();
    const c = "next";
    await once.arrive(c, { key: "k", event: silence(c), via: "http", holdingFollowUp: false });
    await once.acquireLease(c, "A", 5000);
    expect((await twice.nextEvent(c, "A")).event).toMatchObject({ seq: 1, attempts: 1 });
    expect((await once.nextEvent(c, "A")).event).toMatchObject({ seq: 1, attempts: 2 });
  });

  it("yieldEvent gives back one attempt, not two", async () => {
    const { twice, once } = stores();
    const c = "yield";
    await once.arrive(c, { key: "k", event: silence(c), via: "http", holdingFollowUp: false });
    await once.acquireLease(c, "A", 5000);
    await once.nextEvent(c, "A");
    await once.nextEvent(c, "A"); // attempts 2
    await twice.yieldEvent(c, 1); // attempts 1
    expect((await once.nextEvent(c, "A")).event).toMatchObject({ seq: 1, attempts: 2 });
  });

  it("commit resent answers committed (not bad_head): one event off the queue, state and outbox written once", async () => {
    const { twice, once } = stores();
    const c = "commit";
    await once.arrive(c, { key: "k1", event: silence(c), via: "http", holdingFollowUp: false });
    await once.arrive(c, { key: "k2", event: digit(c, "1"), via: "http", holdingFollowUp: false });
    await once.acquireLease(c, "A", 5000);
    await once.nextEvent(c, "A");
    const entry = { seq: 1, via: "http" as const, actions: [say(c, "Sind Sie noch da?")], spokenThrough: 1 };
    expect(await twice.commit(c, "A", { seq: 1, state: state(c, 1), ttlSeconds: 60, entry, droppable: true })).toBe("committed");
    expect(await once.progress(c)).toEqual({ processed: 1, queued: 2, ready: { http: 1, ws: 0 }, ended: false });
    expect((await once.get(c))!.turn).toBe(1);
    expect((await once.nextEvent(c, "A")).event).toMatchObject({ seq: 2, key: "k2", attempts: 1 });
    expect(await once.collect(c, http(undefined))).toMatchObject({ kind: "actions", actions: [say(c, "Sind Sie noch da?")] });
    expect(await once.collect(c, http(undefined, { mayHold: false }))).toEqual({ kind: "nothing" });
  });

  it("commit of the call's end resent answers committed", async () => {
    const { twice, once } = stores();
    const c = "end";
    await once.arrive(c, { key: "k", event: silence(c), via: "http", holdingFollowUp: false });
    await once.acquireLease(c, "A", 5000);
    await once.nextEvent(c, "A");
    expect(await twice.commit(c, "A", { seq: 1, state: null, ttlSeconds: 60, droppable: false })).toBe("committed");
    expect(await once.progress(c)).toMatchObject({ processed: 1, queued: 1, ended: true });
    expect(await once.size()).toBe(0);
  });

  it("collect resent returns the actions it took the first time, and takes nothing twice", async () => {
    const { twice, once } = stores();
    const c = "collect";
    for (const k of ["k1", "k2", "k3"]) await once.arrive(c, { key: k, event: digit(c, k), via: "http", holdingFollowUp: false });
    await once.acquireLease(c, "A", 5000);
    for (const seq of [1, 2]) {
      await once.nextEvent(c, "A");
      await once.commit(c, "A", { seq, state: state(c, seq), ttlSeconds: 60, entry: { seq, via: "http", actions: [say(c, `a${seq}`)] }, droppable: true });
    }
    expect(await twice.collect(c, http(undefined))).toMatchObject({ kind: "actions", actions: [say(c, "a1"), say(c, "a2")] });
    expect((await once.progress(c)).ready).toEqual({ http: 0, ws: 0 });
    // Event 3 is still queued: the next answer holds, and counts its holding lines once each.
    expect(await twice.collect(c, http(3))).toEqual({ kind: "hold", count: 1 });
    expect(await twice.collect(c, http(undefined))).toEqual({ kind: "hold", count: 2 });
    expect(await twice.collect(c, http(undefined))).toEqual({ kind: "give_up", droppedThrough: 3 });
  });

  it("keeps the last replies only, and they expire", async () => {
    const { twice, once } = stores();
    const c = "replies";
    for (let i = 0; i < 200; i++) await twice.arrive(c, { key: `k${i}`, event: silence(c), via: "http", holdingFollowUp: false });
    expect(await once.progress(c)).toMatchObject({ queued: 200 });
    const replies = once.keys(c).find((k) => k.endsWith(":replies"))!;
    expect(await a.hlen(replies)).toBeLessThanOrEqual(129);
    expect(await a.hlen(replies)).toBeGreaterThanOrEqual(64);
    expect(await a.pttl(replies)).toBeGreaterThan(0);
    expect(await a.pttl(replies)).toBeLessThanOrEqual(300_000);
  });

  it("the rate limiter counts a resent acquire once and answers ok", async () => {
    const prefix = uniquePrefix();
    const limiter = new RedisRateLimiter(resending(a), prefix);
    expect(await limiter.acquire([{ key: "n", max: 1, windowMs: 60_000 }], "h")).toEqual({ ok: true });
    expect(await a.zcard(`${prefix}n`)).toBe(1);
    expect(await a.llen(`${prefix}held:h`)).toBe(1);
    expect(await new RedisRateLimiter(a, prefix).acquire([{ key: "n", max: 1, windowMs: 60_000 }])).toEqual({ ok: false, key: "n" });
  });

  it("the rate limiter gives back one hit for a resent release, not two", async () => {
    const prefix = uniquePrefix();
    const limits = [{ key: "n", max: 5, windowMs: 60_000 }];
    const plain = new RedisRateLimiter(a, prefix);
    await plain.acquire(limits, "h");
    await plain.acquire(limits, "h");
    await new RedisRateLimiter(resending(a), prefix).release("h");
    expect(await a.zcard(`${prefix}n`)).toBe(1);
    expect(await a.llen(`${prefix}held:h`)).toBe(1);
  });

  it("the outbox: a resent claim gets the entries the first run claimed; a resent put leaves that claim settled, posted once", async () => {
    const prefix = uniquePrefix();
    const outbox = new RedisOutbox(resending(a), { prefix });
    const t = Date.now();
    await outbox.put("c", '{"v":1}', t);
    const [claim] = await outbox.claimDue(t, 10, 30_000);
    expect(claim).toMatchObject({ version: 1 });
    expect(await outbox.put("c", '{"v":1}', t)).toBe("stored");
    expect(await new RedisOutbox(a, { prefix }).delivered(claim!)).toBe("settled");
  });
});

describe("a real dropped connection: ioredis resends the command, nothing happens twice", () => {
  it("arrive, nextEvent, commit and collect each lose their reply once and still act once", async () => {
    const proxy = new DroppingProxy();
    const port = await proxy.start();
    // As the service connects (src/main.ts): resends on, default reconnect delay.
    const redis = new Redis(`redis://127.0.0.1:${port}`, { maxRetriesPerRequest: 1, enableOfflineQueue: false, connectTimeout: 2000, lazyConnect: true });
    redis.on("error", () => undefined);
    try {
      await redis.connect();
      const prefix = uniquePrefix();
      const store = new RedisCallStore<CallState>(redis, { prefix });
      const check = new RedisCallStore<CallState>(a, { prefix });
      const c = "dropped";
      // Every script cached on the server first, so the lost reply is the script's own, not NOSCRIPT.
      await check.arrive("warm-up", { key: "w", event: silence("warm-up"), via: "http", holdingFollowUp: false });
      await check.acquireLease("warm-up", "W", 5000);
      await check.nextEvent("warm-up", "W");
      await check.commit("warm-up", "W", { seq: 1, state: state("warm-up"), ttlSeconds: 60, droppable: true });
      await check.collect("warm-up", http(1));
      const lost = async <T>(op: () => Promise<T>): Promise<T> => {
        const before = proxy.dropped;
        proxy.dropNextReply();
        const r = await op();
        expect(proxy.dropped).toBe(before + 1);
        return r;
      };

      expect(await lost(() => store.arrive(c, { key: "t", event: silence(c), via: "http", holdingFollowUp: false }))).toEqual({ kind: "queued", seq: 1 });
      expect(await check.progress(c)).toMatchObject({ queued: 1 });
      await check.arrive(c, { key: "d", event: digit(c, "5"), via: "http", holdingFollowUp: false });

      expect(await store.acquireLease(c, "A", 5000)).toBe(true);
      expect((await lost(() => store.nextEvent(c, "A"))).event).toMatchObject({ seq: 1, key: "t", attempts: 1 });

      const entry = { seq: 1, via: "http" as const, actions: [say(c, "Sind Sie noch da?")], spokenThrough: 1 };
      expect(await lost(() => store.commit(c, "A", { seq: 1, state: state(c, 1), ttlSeconds: 60, entry, droppable: true }))).toBe("committed");
      expect(await check.progress(c)).toEqual({ processed: 1, queued: 2, ready: { http: 1, ws: 0 }, ended: false });

      expect(await lost(() => store.collect(c, http(2)))).toMatchObject({ kind: "actions", actions: [say(c, "Sind Sie noch da?")] });
      expect((await check.progress(c)).ready).toEqual({ http: 0, ws: 0 });
      expect((await check.nextEvent(c, "A")).event).toMatchObject({ seq: 2, key: "d", attempts: 1 });
      // Each lost reply cost a connection: the client reconnected and resent.
      expect(proxy.connections).toBe(5);
    } finally {
      redis.disconnect();
      await proxy.close();
    }
  });
});
