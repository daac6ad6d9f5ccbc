import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RedisOutbox } from "../src/outbox/redisOutbox.js";
import { verifySignature } from "../src/outbox/signing.js";
import { RedisCallStore } from "../src/store/redisCallStore.js";
import type { CallbackReport } from "../src/agents/callback/report.js";
import { reply } from "./support/fakeOpenAI.js";
import { ev } from "./support/events.js";
import { callbackTestConfig, startTestService, type TestService } from "./support/harness.js";
import { connectRedis, uniquePrefix } from "./support/redis.js";
import { startReceiver, type Receiver } from "./support/webhookReceiver.js";

/**
 * The callback agent on several instances sharing one Redis: the report of a call handled by
 * one instance waits in the shared outbox and is posted by another after the first is gone,
 * also when the call's session_end never came (posted when its state expires).
 */

let redisA: Redis;
let redisB: Redis;
let receiver: Receiver;
let calls = 0;
const prefix = uniquePrefix();

beforeAll(async () => {
  redisA = await connectRedis();
  redisB = await connectRedis();
  // The receiver is down at first (503), then takes posts.
  receiver = await startReceiver(() => (++calls === 1 ? { status: 503 } : { status: 200 }));
});
afterAll(async () => {
  await receiver.close();
  redisA.disconnect();
  redisB.disconnect();
});

async function instance(redis: Redis): Promise<TestService> {
  return startTestService({
    config: callbackTestConfig(receiver.url),
    store: new RedisCallStore(redis, { prefix }),
    callback: { outbox: new RedisOutbox(redis, { prefix }), startPoster: false },
  });
}

describe("callback reports on Redis", () => {
  it("instance A takes the call and is gone before posting; instance B posts the report, retrying after the receiver's 503", async () => {
    const a = await instance(redisA);
    const id = `cb-redis-${Date.now()}`;
    await a.post(ev.start(id));
    a.fake.enqueue(reply.tool("note_callback_detail", { field: "name", value: "Eva Roth" }));
    await a.post(ev.speak(id, "Eva Roth"));
    a.fake.enqueue(reply.tool("confirm_callback_detail", { field: "name", correct: true }), reply.text("Worum geht es?"));
    await a.post(ev.speak(id, "Ja."));
    await a.post(ev.end(id));
    // A goes away without ever posting (its poster never ran).
    await a.close();
    expect(receiver.received).toHaveLength(0);

    const b = await instance(redisB);
    try {
      expect((await b.poster!.runOnce()).retried).toBe(1);
      b.clock.advance(1_100);
      expect((await b.poster!.runOnce()).delivered).toBe(1);
      expect(receiver.received).toHaveLength(2);
      const [first, second] = receiver.received;
      expect(second!.body).toBe(first!.body);
      expect(second!.headers["idempotency-key"]).toBe(id);
      expect(verifySignature("test-secret", { timestamp: second!.headers["x-signature-timestamp"], signature: second!.headers["x-signature"] }, second!.body, { nowSeconds: Number(second!.headers["x-signature-timestamp"]) })).toBe(true);
      const report = JSON.parse(second!.body) as CallbackReport;
      expect(report).toMatchObject({ callId: id, request: { name: "Eva Roth", confirmed: { name: true }, complete: false }, call: { ended: "session_end" } });
      expect(await b.outbox!.pending()).toBe(0);
    } finally {
      await b.close();
    }
  });

  it("a call without session_end on A is posted by B once the call's state would have expired", async () => {
    receiver.received.length = 0;
    const a = await instance(redisA);
    const id = `cb-redis-expired-${Date.now()}`;
    await a.post(ev.start(id));
    a.fake.enqueue(reply.tool("note_callback_detail", { field: "name", value: "Tom Berger" }));
    await a.post(ev.speak(id, "Tom Berger"));
    await a.close();

    const b = await instance(redisB);
    try {
      await b.poster!.runOnce();
      expect(receiver.received.filter((r) => r.headers["idempotency-key"] === id)).toHaveLength(0);
      b.clock.advance(3_600_000 + 60_000 + 1_000);
      for (let i = 0; i < 3; i++) await b.poster!.runOnce();
      const mine = receiver.received.filter((r) => r.headers["idempotency-key"] === id);
      expect(mine).toHaveLength(1);
      expect(JSON.parse(mine[0]!.body)).toMatchObject({ callId: id, request: { name: "Tom Berger" }, call: { ended: "state_expired" } });
    } finally {
      await b.close();
    }
  });
});
