import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Redis } from "ioredis";
import { reply } from "./support/fakeOpenAI.js";
import { CALLER, ev } from "./support/events.js";
import { smsActions, spoken, startTestService, testConfig, type TestService } from "./support/harness.js";
import { atConsentQuestion, ledgerKinds } from "./support/deadline.js";
import { connectRedis, uniquePrefix } from "./support/redis.js";
import { RedisCallStore } from "../src/store/redisCallStore.js";
import type { SmsSlice } from "../src/tasks/sms/state.js";

/**
 * Issue 17, point 5: the store loses a call's state mid-call (Redis lost the keys: a flush, an
 * eviction, a failover without the data). The call starts over, but what the ledger says of it
 * still holds: a caller who declined is not asked again, one who got the SMS is not texted twice.
 */

let redis: Redis;
let store: RedisCallStore<SmsSlice>;
let svc: TestService;
beforeAll(async () => {
  redis = await connectRedis();
  store = new RedisCallStore<SmsSlice>(redis, { prefix: uniquePrefix() });
  svc = await startTestService({ store, config: testConfig({ tasks: { sms: { recipients: { perRecipient: { max: 1000, windowSeconds: 60 } } } } }) });
});
afterAll(async () => {
  await svc.close();
  redis.disconnect();
});

const QUESTION = /^Darf ich Ihnen die Informationen per SMS/;

async function loseState(id: string): Promise<void> {
  await redis.del(...store.keys(id));
  expect(await store.get(id)).toBeUndefined();
}

/** The caller asks for the SMS again and says yes to anything; the model plays along. */
async function askAgain(id: string) {
  svc.fake.reset();
  svc.fake.enqueue(reply.tool("start_sms_flow", { info: "address" }), reply.tool("record_consent", { consented: true }), reply.tool("send_confirmation_sms"));
  const again = await svc.post(ev.speak(id, "Schicken Sie mir doch die Adresse per SMS."));
  const yes = await svc.post(ev.speak(id, "Ja, gerne."));
  return [...again.actions, ...yes.actions];
}

describe("a call whose state the store lost mid-call", () => {
  it("after a no: the question is not put again and nothing is sent", async () => {
    const id = "lost-after-no";
    await atConsentQuestion(svc, id);
    svc.fake.enqueue(reply.tool("record_consent", { consented: false }));
    await svc.post(ev.speak(id, "Nein, danke."));
    expect(ledgerKinds(svc, id)).toContain("consent_declined");
    await loseState(id);
    const heard = await askAgain(id);
    expect(smsActions(heard)).toEqual([]);
    expect(spoken(heard).some((t) => QUESTION.test(t))).toBe(false);
    expect((await store.get(id))!.sms.declined).toBe(true);
  });

  it("after the SMS left: no second one", async () => {
    const id = "lost-after-send";
    await atConsentQuestion(svc, id);
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
    const sent = await svc.post(ev.speak(id, "Ja."));
    expect(smsActions(sent.actions)).toEqual([expect.objectContaining({ phone_number: CALLER })]);
    await loseState(id);
    const heard = await askAgain(id);
    expect(smsActions(heard)).toEqual([]);
    expect(ledgerKinds(svc, id).filter((k) => k === "sms_approved")).toHaveLength(1);
  });
});
