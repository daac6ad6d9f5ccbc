import type { AddressInfo } from "node:net";
import type { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { MemoryCallStore } from "../src/store/memoryCallStore.js";
import { RedisCallStore } from "../src/store/redisCallStore.js";
import type { CallStore, OutboxEntry } from "../src/store/callStore.js";
import type { SmsSlice } from "../src/tasks/sms/state.js";
import { reply } from "./support/fakeOpenAI.js";
import { ev } from "./support/events.js";
import { startTestService, testConfig, type TestService } from "./support/harness.js";
import { atConsentQuestion, postAndHangUp, until } from "./support/deadline.js";
import { connectRedis, uniquePrefix } from "./support/redis.js";

/**
 * Review 18b, issue 17 point 4: an HTTP answer whose write failed and whose send could not go back
 * (the caller spoke since) is recorded sms_not_sent (connection_failed), and the call's state stops
 * saying it was sent: the store notes the send for the next turn (CallStore.markNotSent), which
 * forgets it before it runs. The task's result no longer says handed_over (the callback report),
 * the send no longer counts against the per-call limit, and the model is not told "sent to …".
 */

const OPEN = { max: 1000, windowSeconds: 60 };

let redis: Redis;
beforeAll(async () => {
  redis = await connectRedis();
});
afterAll(() => {
  redis?.disconnect();
});

const STORES: Array<[string, () => CallStore<SmsSlice>]> = [
  ["memory store", () => new MemoryCallStore<SmsSlice>()],
  ["Redis store", () => new RedisCallStore<SmsSlice>(redis, { prefix: uniquePrefix() })],
];

describe.each(STORES)("review18b: a lost answer's send, not put back (%s)", (_name, makeStore) => {
  let svc: TestService | undefined;
  afterEach(async () => {
    await svc?.close();
    svc = undefined;
  });

  it("the state stops saying it was sent once the ledger says sms_not_sent", async () => {
    const inner = makeStore();
    let putBackArrived: () => void = () => undefined;
    let putBackGate: Promise<void> | undefined;
    const store = Object.assign(Object.create(inner) as CallStore<SmsSlice>, {
      async putBack(callId: string, entries: OutboxEntry[], processedAtCollect: number) {
        putBackArrived();
        if (putBackGate) await putBackGate;
        return inner.putBack(callId, entries, processedAtCollect);
      },
    });
    svc = await startTestService({ config: testConfig({ server: { answerWithinMs: 0 }, tasks: { sms: { recipients: { perRecipient: OPEN } } } }), store });
    await svc.app.listen({ port: 0, host: "127.0.0.1" });
    const port = (svc.app.server.address() as AddressInfo).port;
    const id = "review18b-lost-answer-state";
    await atConsentQuestion(svc, id);
    svc.fake.reset();
    let release!: () => void;
    putBackGate = new Promise<void>((r) => (release = r));
    const arrived = new Promise<void>((r) => (putBackArrived = r));
    const gate = svc.fake.block();
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }), reply.text("Ja, ich höre Sie."));
    await postAndHangUp(port, ev.speak(id, "Ja, gerne."), gate.arrived);
    gate.release();
    await arrived;
    await svc.post(ev.speak(id, "Hallo?"));
    release();
    const s = svc;
    await until(() => s.memoryLedger.records.some((r) => r.callId === id && r.kind === "sms_not_sent" && r.reason === "connection_failed"), "sms_not_sent recorded");
    // The caller asks; the model's prompt and the task's result are what the state says.
    await svc.post(ev.speak(id, "Haben Sie mir die SMS jetzt geschickt?"));
    const state = (await svc.store.get(id))!;
    expect.soft(state.sms.result?.value.status, "task result after sms_not_sent").not.toBe("handed_over");
    expect.soft(state.sms.sent, "sends the state still counts").toEqual([]);
    const prompt = JSON.stringify(svc.fake.requests.at(-1)?.messages ?? []);
    expect.soft(prompt, "the model is told the SMS was sent").not.toMatch(/sent to 0 1 5 1/);
  });
});
