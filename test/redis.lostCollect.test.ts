import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CollectRequest } from "../src/store/callStore.js";
import { RedisCallStore } from "../src/store/redisCallStore.js";
import type { SmsSlice } from "../src/tasks/sms/state.js";
import { atConsentQuestion, ledgerKinds, until } from "./support/deadline.js";
import { DroppingProxy } from "./support/droppingProxy.js";
import { ev } from "./support/events.js";
import { reply } from "./support/fakeOpenAI.js";
import { smsActions, spoken, startTestService, testConfig, type TestService } from "./support/harness.js";
import { connectRedis, uniquePrefix } from "./support/redis.js";

/*
 * An answer's collect whose reply a dropped Redis connection lost (issue 17, points 5 and 7, through
 * the webhook on real Redis). ioredis sends the collect again once it has reconnected, and the
 * store answers the resent request id with the first run's reply; until then the answer cannot
 * wait. It leaves by its deadline with a holding line, and what the collect took goes back to the
 * outbox when the reply comes: the send leaves with the next answer, once, and is never lost.
 * The collects run on their own connection through a proxy that drops the reply and refuses to
 * reconnect for a while; everything else on a direct one.
 */

let direct: Redis;
let proxied: Redis;
let proxy: DroppingProxy;
let svc: TestService;

beforeAll(async () => {
  direct = await connectRedis();
  proxy = new DroppingProxy();
  const port = await proxy.start();
  // As the service connects (src/main.ts): resends on, no offline queue, default reconnect delays.
  proxied = new Redis(`redis://127.0.0.1:${port}`, { maxRetriesPerRequest: 1, enableOfflineQueue: false, connectTimeout: 2000, lazyConnect: true });
  proxied.on("error", () => undefined);
  await proxied.connect();
  const prefix = uniquePrefix();
  const main = new RedisCallStore<SmsSlice>(direct, { prefix });
  const collects = new RedisCallStore<SmsSlice>(proxied, { prefix });
  // The collect script cached on the server first: the lost reply is the script's own, not NOSCRIPT.
  await collects.collect("warm-up", { via: "http", collecting: true, mayHold: false, maxHoldingLines: 0 });
  const store = Object.assign(Object.create(main) as RedisCallStore<SmsSlice>, {
    collect: (callId: string, r: CollectRequest, requestId?: string) => collects.collect(callId, r, requestId),
  });
  svc = await startTestService({ config: testConfig({ tasks: { sms: { recipients: { perRecipient: { max: 1000, windowSeconds: 60 } } } } }), store });
});

afterAll(async () => {
  await svc?.close();
  proxied?.disconnect();
  direct?.disconnect();
  await proxy?.close();
});

describe("a collect whose reply a dropped Redis connection lost", () => {
  it("the answer leaves by its deadline with a holding line; the send it took goes back and leaves with the next answer, once", async () => {
    const id = "lost-collect";
    await atConsentQuestion(svc, id);
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
    // The yes's collect runs (it takes the send), its reply is lost, and Redis cannot be reached again for now.
    proxy.dropNextReply();
    proxy.refusing = true;
    const dropped = proxy.dropped;
    const yes = svc.post(ev.speak(id, "Ja, gerne."));
    await until(() => proxy.dropped > dropped, "the collect's reply dropped");
    expect((await svc.store.progress(id)).ready.http, "the collect ran: the send left the outbox").toBe(0);
    // The deadline comes while ioredis waits to resend.
    svc.deadlineClock.advance(800);
    const held = await yes;
    expect(spoken(held.actions)).toEqual(["Einen Moment bitte."]);
    expect(smsActions(held.actions)).toEqual([]);

    // Redis is back: ioredis resends the collect, the store answers with what it took the first time, and that goes back.
    proxy.refusing = false;
    await until(async () => (await svc.store.progress(id)).ready.http > 0, "the send back in the outbox", { tries: 600, everyMs: 10 });
    const next = await svc.post(ev.speechEnded(id));
    expect(smsActions(next.actions)).toHaveLength(1);
    expect(spoken(next.actions).at(-1)).toMatch(/abgeschickt/);
    expect(ledgerKinds(svc, id).filter((k) => k === "sms_approved")).toHaveLength(1);
    expect(ledgerKinds(svc, id)).not.toContain("sms_not_sent");
    // Nothing twice.
    const after = await svc.post(ev.speechEnded(id));
    expect(smsActions(after.actions)).toEqual([]);
  });
});
