import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MemoryLedger } from "../src/ledger/memoryLedger.js";
import { OpenAIChatModel } from "../src/llm/openaiChatModel.js";
import { createService } from "../src/service.js";
import { RedisRateLimiter } from "../src/store/rateLimiter.js";
import { RedisCallStore } from "../src/store/redisCallStore.js";
import { FakeOpenAIServer, reply } from "./support/fakeOpenAI.js";
import { ev } from "./support/events.js";
import { smsActions, spoken, testConfig } from "./support/harness.js";
import { PrivateRedis, connectRedis, freePort, uniquePrefix } from "./support/redis.js";
import type { Redis } from "ioredis";
import { ManualClock } from "../src/engine/clock.js";

let a: Redis;
let b: Redis;
beforeAll(async () => {
  a = await connectRedis();
  b = await connectRedis();
});
afterAll(async () => {
  a.disconnect();
  b.disconnect();
});


describe("versioned call state across a rolling deploy", () => {
  it("state saved by the previous layout is never read as this release's, and this release never writes the old keys", async () => {
    const prefix = uniquePrefix();
    const id = "rolling-deploy";
    // What the previous release (RedisSessionStore) saved: `${prefix}call:${id}`, a call mid-consent.
    const old = { sessionId: id, direction: "inbound", language: "de-DE", step: "confirm_consent", turn: 3, spoken: 4, spokenBeforeTurn: 3, history: [], dtmf: "", inputTimeouts: 0, pendingHangup: false, createdAt: 0, updatedAt: 0, sms: { number: "4915112345678", slots: { info: "address" }, declined: false, sent: [], retryAllowance: 0 } };
    await a.set(`${prefix}call:${id}`, JSON.stringify(old), "EX", 60);
    const fake = new FakeOpenAIServer();
    await fake.start();
    const svc = createService({
      clock: new ManualClock(),
      config: testConfig(),
      model: new OpenAIChatModel({ apiKey: "k", baseURL: fake.baseURL, timeoutMs: 2000, maxRetries: 0 }),
      ledger: new MemoryLedger(),
      logger: pino({ level: "silent" }),
      store: new RedisCallStore(a, { prefix }),
      limiter: new RedisRateLimiter(a, `${prefix}limit:`),
    });
    try {
      expect(await svc.store.get(id)).toBeUndefined();
      // The event starts a call of this release's own: it does not resume the old layout's consent step.
      const r = await svc.app.inject({ method: "POST", url: "/webhook", headers: { "content-type": "application/json" }, payload: JSON.stringify(ev.start(id)) });
      expect(r.json().text).toMatch(/^Guten Tag/);
      expect((await svc.store.get(id))!.step).toBe("main");
      // The old release's key is untouched, and this release wrote only versioned keys.
      expect(JSON.parse((await a.get(`${prefix}call:${id}`))!)).toEqual(old);
      const written = await a.keys(`${prefix}*`);
      expect(written.filter((k) => !k.startsWith(`${prefix}v4:`) && !k.startsWith(`${prefix}limit:`))).toEqual([`${prefix}call:${id}`]);
    } finally {
      await svc.close();
      await fake.close();
      const keys = await a.keys(`${prefix}*`);
      if (keys.length) await a.del(...keys);
    }
  });
});

describe("RedisRateLimiter", () => {
  it("shares windows across instances and is all-or-nothing", async () => {
    const prefix = uniquePrefix();
    const l1 = new RedisRateLimiter(a, prefix);
    const l2 = new RedisRateLimiter(b, prefix);
    const specs = [
      { key: "to:1", max: 2, windowMs: 10_000 },
      { key: "global", max: 10, windowMs: 10_000 },
    ];
    expect(await l1.acquire(specs)).toEqual({ ok: true });
    expect(await l2.acquire(specs)).toEqual({ ok: true });
    expect(await l1.acquire(specs)).toEqual({ ok: false, key: "to:1" });
    // The refused attempt did not count in the global window.
    expect(await a.zcard(`${prefix}global`)).toBe(2);
  });
});

describe("a Redis restart mid-call", () => {
  it("while Redis is down the caller hears an apology and no SMS leaves; afterwards the call goes on", async () => {
    const server = new PrivateRedis(await freePort());
    await server.start();
    const fake = new FakeOpenAIServer();
    await fake.start();
    const { Redis } = await import("ioredis");
    const redis = new Redis(server.url, { maxRetriesPerRequest: 1, enableOfflineQueue: false, retryStrategy: () => 100 });
    redis.on("error", () => undefined); // reconnect noise while the server is down on purpose
    await new Promise((r) => redis.once("ready", r));
    const prefix = uniquePrefix();
    const config = testConfig();
    const svc = createService({
    // Deadlines (server.answerWithinMs) move only when told: no answer depends on machine speed.
    clock: new ManualClock(),
      config,
      model: new OpenAIChatModel({ apiKey: "k", baseURL: fake.baseURL, timeoutMs: 2000, maxRetries: 0 }),
      ledger: new MemoryLedger(),
      logger: pino({ level: "silent" }),
      store: new RedisCallStore(redis, { prefix }),
      limiter: new RedisRateLimiter(redis, `${prefix}limit:`),
    });
    const post = async (e: unknown) => {
      const r = await svc.app.inject({ method: "POST", url: "/webhook", headers: { "content-type": "application/json" }, payload: JSON.stringify(e) });
      return { status: r.statusCode, actions: r.statusCode === 200 ? [].concat(r.json()) : [] };
    };
    try {
      const id = "redis-restart";
      await post(ev.start(id));
      fake.enqueue(reply.tool("start_sms_flow", { info: "address" }));
      expect(spoken((await post(ev.speak(id, "SMS bitte"))).actions)[0]).toMatch(/^Darf ich/);

      await server.stop();
      // The "Ja." said during the outage is kept and queued once Redis is back (a possible "no" is
      // never dropped), then "Ja, gerne." is that yes's verdict: the model confirms both.
      fake.enqueue(reply.tool("record_consent", { consented: true }), reply.tool("record_consent", { consented: true }));
      const during = await post(ev.speak(id, "Ja."));
      expect(during.status).toBe(200);
      expect(smsActions(during.actions)).toHaveLength(0);
      expect(spoken(during.actions)).toEqual(["Entschuldigung, ich habe gerade eine technische Störung. Bitte sagen Sie das gleich noch einmal."]);
      expect((await svc.app.inject({ method: "GET", url: "/healthz" })).statusCode).toBe(503);

      await server.start();
      for (let i = 0; i < 50 && redis.status !== "ready"; i++) await new Promise((r) => setTimeout(r, 100));
      expect((await svc.app.inject({ method: "GET", url: "/healthz" })).statusCode).toBe(200);
      // The state survived (AOF); the caller repeats the answer and the call goes on. The "Ja." kept
      // through the outage counts like a barge-in (the question may not have been heard in full), so
      // the agent asks once more before it sends; the next yes sends.
      const after = await post(ev.speak(id, "Ja, gerne."));
      let sent = smsActions(after.actions);
      if (!sent.length) {
        expect(spoken(after.actions).join(" ")).toMatch(/Darf ich/);
        fake.enqueue(reply.tool("record_consent", { consented: true }));
        sent = smsActions((await post(ev.speak(id, "Ja, bitte."))).actions);
      }
      expect(sent).toHaveLength(1);
    } finally {
      await svc.close();
      redis.disconnect();
      await server.stop();
      await fake.close();
    }
  }, 30_000);
});
