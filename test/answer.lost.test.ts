import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { reply } from "./support/fakeOpenAI.js";
import { CALLER, ev } from "./support/events.js";
import { smsActions, spoken, startTestService, testConfig, type TestService } from "./support/harness.js";
import { atConsentQuestion, ledgerKinds, until, postAndHangUp } from "./support/deadline.js";

/**
 * Issue 17, defect 7: an HTTP answer that could not be written (sipgate's request was gone) loses
 * nothing. Its actions go back to the call's outbox and leave with the next answer; if the call
 * ends first, a send among them is recorded as not sent (sms_not_sent, call_ended) and the task's
 * result is not handed_over.
 * Over a real socket: the test's client hangs up its request while the model is still thinking.
 */

let svc: TestService;
let port: number;
beforeAll(async () => {
  // No deadline: the answer waits for the turn, so the client can hang up before it is written.
  svc = await startTestService({ config: testConfig({ server: { answerWithinMs: 0 }, tasks: { sms: { recipients: { perRecipient: { max: 1000, windowSeconds: 60 } } } } }) });
  await svc.app.listen({ port: 0, host: "127.0.0.1" });
  port = (svc.app.server.address() as AddressInfo).port;
});
afterAll(async () => svc.close());

describe("an answer that never reached sipgate", () => {
  it("its send_sms and lines leave with the call's next answer, once", async () => {
    const id = "lost-answer-next";
    await atConsentQuestion(svc, id);
    svc.fake.reset();
    const gate = svc.fake.block();
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
    await postAndHangUp(port, ev.speak(id, "Ja, gerne."), gate.arrived);
    gate.release();
    await until(async () => (await svc.store.progress(id)).processed >= 3 && (await svc.store.progress(id)).ready.http > 0, "the lost answer back in the outbox", { tries: 600 });
    const next = await svc.post(ev.speechEnded(id));
    expect(smsActions(next.actions)).toEqual([expect.objectContaining({ phone_number: CALLER })]);
    expect(spoken(next.actions).join(" ")).toMatch(/abgeschickt|unterwegs/);
    expect((await svc.post(ev.speechEnded(id))).status).toBe(204);
    // One approval, handed over by the answer that carried it this time; never "not sent".
    await until(() => ledgerKinds(svc, id).includes("sms_handed_over"), "sms_handed_over recorded");
    const approval = svc.memoryLedger.records.find((r) => r.callId === id && r.kind === "sms_approved")!;
    expect(svc.memoryLedger.records.filter((r) => r.callId === id && (r.kind === "sms_handed_over" || r.kind === "sms_not_sent"))).toEqual([expect.objectContaining({ kind: "sms_handed_over", ref: approval.id })]);
  });

  it("the call ends before another answer: the send is recorded as not sent, and the task's result is not handed_over", async () => {
    const id = "lost-answer-end";
    await atConsentQuestion(svc, id);
    svc.fake.reset();
    const gate = svc.fake.block();
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
    await postAndHangUp(port, ev.speak(id, "Ja, gerne."), gate.arrived);
    gate.release();
    await until(async () => (await svc.store.progress(id)).ready.http > 0, "the lost answer back in the outbox", { tries: 600 });
    const before = (await svc.store.get(id))!;
    expect(before.sms.result?.value.status).toBe("handed_over");
    await svc.post(ev.end(id));
    await until(() => ledgerKinds(svc, id).includes("sms_not_sent"), "sms_not_sent recorded");
    const approval = svc.memoryLedger.records.find((r) => r.callId === id && r.kind === "sms_approved")!;
    expect(svc.memoryLedger.records.filter((r) => r.callId === id && (r.kind === "sms_handed_over" || r.kind === "sms_not_sent"))).toEqual([expect.objectContaining({ kind: "sms_not_sent", reason: "call_ended", ref: approval.id })]);
  });
});
