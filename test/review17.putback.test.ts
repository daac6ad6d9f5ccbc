import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { reply } from "./support/fakeOpenAI.js";
import { ev } from "./support/events.js";
import { smsActions, startTestService, testConfig, type TestService } from "./support/harness.js";
import { atConsentQuestion, ledgerKinds, until, postAndHangUp } from "./support/deadline.js";
import { MemoryCallStore } from "../src/store/memoryCallStore.js";
import type { SmsSlice } from "../src/tasks/sms/state.js";
import type { OutboxEntry } from "../src/store/callStore.js";

/**
 * Review of issue 17 (rule 4: a lost HTTP answer puts its entries back). Between an answer's
 * collect (the send leaves the outbox) and its putBack (the write failed: on the "close" path
 * that is when the socket closes, later than the collect), a caller's "no" can arrive and be
 * evaluated. Its turn sees no pending send (nextEvent's pendingSends come from the outbox), so
 * it withdraws nothing. putBack then returns the send to the outbox, where no verdict is queued
 * after it any more: it leaves with the next answer, after the caller said no.
 * The store's putBack is held (a gate in a wrapper) only to pin that interleaving down.
 */

let svc: TestService;
let port: number;
let putBackArrived: () => void = () => undefined;
let putBackGate: Promise<void> | undefined;
beforeAll(async () => {
  const inner = new MemoryCallStore<SmsSlice>();
  const store = Object.assign(Object.create(inner) as MemoryCallStore<SmsSlice>, {
    async putBack(callId: string, entries: OutboxEntry[], processedAtCollect: number) {
      putBackArrived();
      if (putBackGate) await putBackGate;
      return inner.putBack(callId, entries, processedAtCollect);
    },
  });
  svc = await startTestService({ config: testConfig({ server: { answerWithinMs: 0 }, tasks: { sms: { recipients: { perRecipient: { max: 1000, windowSeconds: 60 } } } } }), store });
  await svc.app.listen({ port: 0, host: "127.0.0.1" });
  port = (svc.app.server.address() as AddressInfo).port;
});
afterAll(async () => svc.close());


describe("review17: a lost answer's send put back after the caller's 'no'", () => {
  it("the send does not leave after the 'no' was evaluated", async () => {
    const id = "r17-putback-after-no";
    await atConsentQuestion(svc, id);
    svc.fake.reset();
    let releasePutBack!: () => void;
    putBackGate = new Promise<void>((r) => (releasePutBack = r));
    const putBackCalled = new Promise<void>((r) => (putBackArrived = r));
    const gate = svc.fake.block();
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
    await postAndHangUp(port, ev.speak(id, "Ja, gerne."), gate.arrived);
    gate.release();
    // The yes's answer collected the send, its write failed, the put-back is on its way.
    await putBackCalled;
    // Meanwhile the caller (who never heard anything after the question) says no; whatever the
    // model makes of it, it may only take back what it sees as pending.
    svc.fake.enqueue(reply.tool("record_consent", { consented: false }), reply.text("In Ordnung."));
    const no = await svc.post(ev.speak(id, "Nein, doch nicht!"));
    expect(no.status).toBeLessThan(300);
    releasePutBack();
    await until(async () => (await svc.store.progress(id)).ready.http > 0 || ledgerKinds(svc, id).includes("sms_not_sent"), "the lost answer back in the outbox, or recorded as not sent");
    const next = await svc.post(ev.speechEnded(id));
    // What must happen: a send put back after a caller verdict that followed it was evaluated
    // must not leave (it is withdrawn, recorded as sms_not_sent, or re-judged by the next verdict).
    expect(smsActions([...no.actions, ...next.actions])).toEqual([]);
    // Every approval has its one outcome, and it says the send never left.
    const records = svc.memoryLedger.records.filter((r) => r.callId === id);
    const approvals = records.filter((r) => r.kind === "sms_approved");
    expect(approvals).toHaveLength(1);
    expect(records.filter((r) => r.ref === approvals[0]!.id)).toEqual([expect.objectContaining({ kind: "sms_not_sent" })]);
  });
});
