import { afterAll, beforeAll, expect, it } from "vitest";
import type { Redis } from "ioredis";
import { RedisCallStore } from "../src/store/redisCallStore.js";
import { reply } from "./support/fakeOpenAI.js";
import { ev } from "./support/events.js";
import { smsActions, startTestService, testConfig, type TestService } from "./support/harness.js";
import { connectRedis, uniquePrefix } from "./support/redis.js";

let svc: TestService;
let redis: Redis;
beforeAll(async () => {
  redis = await connectRedis();
  svc = await startTestService({ config: testConfig({ tasks: { sms: { recipients: { perRecipient: { max: 1000, windowSeconds: 60 } } } } }), store: new RedisCallStore(redis, { prefix: uniquePrefix() }) });
});
afterAll(async () => {
  await svc.close();
  redis.disconnect();
});
async function until(check: () => Promise<boolean> | boolean) {
  for (let i = 0; i < 400; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error("condition not reached");
}
async function pastDeadline(event: unknown) {
  const before = svc.deadlineClock.pending;
  const a = svc.post(event);
  await until(() => svc.deadlineClock.pending > before);
  svc.deadlineClock.advance(800);
  return a;
}
const kinds = (id: string) => svc.memoryLedger.records.filter((r) => r.callId === id).map((r) => r.kind);

it("on Redis: a slow 'no' whose answer was given up on still holds", async () => {
  const id = "rr-no";
  await svc.post(ev.start(id));
  svc.fake.enqueue(reply.tool("start_sms_flow", { info: "address" }));
  await svc.post(ev.speak(id, "SMS bitte"));
  const gate = svc.fake.block();
  svc.fake.enqueue(reply.tool("record_consent", { consented: false }));
  const no = pastDeadline(ev.speak(id, "Nein."));
  await gate.arrived;
  await no;
  await pastDeadline(ev.speechEnded(id));
  await pastDeadline(ev.timeout(id));
  gate.release();
  await until(() => kinds(id).includes("consent_declined"));
  await until(async () => { const p = await svc.store.progress(id); return p.processed >= p.queued; });
  svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
  const yes = await svc.post(ev.speak(id, "Ja."));
  expect(smsActions(yes.actions)).toEqual([]);
});

it("on Redis: a late send_sms still waiting at session_end is recorded as not sent (call ended)", async () => {
  const id = "rr-end";
  await svc.post(ev.start(id));
  svc.fake.enqueue(reply.tool("start_sms_flow", { info: "address" }));
  await svc.post(ev.speak(id, "SMS bitte"));
  const gate = svc.fake.block();
  svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
  const yes = pastDeadline(ev.speak(id, "Ja."));
  await gate.arrived;
  await yes;
  gate.release();
  await until(async () => (await svc.store.progress(id)).ready.http > 0);
  await svc.post(ev.end(id));
  expect(kinds(id)).toEqual(expect.arrayContaining(["sms_approved", "sms_not_sent"]));
});
