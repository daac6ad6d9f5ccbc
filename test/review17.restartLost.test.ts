import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { reply } from "./support/fakeOpenAI.js";
import { CALLER, ev } from "./support/events.js";
import { smsActions, spoken, startTestService, testConfig, type TestService } from "./support/harness.js";
import { ledgerKinds, until, postAndHangUp } from "./support/deadline.js";

/**
 * Review of issue 17 (rule 4) after a session restart. The memory store's `ended` flag, set by
 * session_end's commit, is never cleared when an explicit session_start starts the same id again.
 * putBack returns early for an ended call, so a lost answer of the restarted conversation is
 * silently dropped: its send never left, yet nothing records it (no sms_not_sent, no release),
 * and the state still says handed_over.
 */

let svc: TestService;
let port: number;
beforeAll(async () => {
  svc = await startTestService({ config: testConfig({ server: { answerWithinMs: 0 }, tasks: { sms: { recipients: { perRecipient: { max: 1000, windowSeconds: 60 } } } } }) });
  await svc.app.listen({ port: 0, host: "127.0.0.1" });
  port = (svc.app.server.address() as AddressInfo).port;
});
afterAll(async () => svc.close());


describe("review17: a lost answer after a session restart", () => {
  it("its send goes back to the outbox and leaves with the next answer (as before the restart)", async () => {
    const id = "r17-restart-lost";
    await svc.post(ev.start(id));
    await svc.post(ev.end(id));
    await until(async () => (await svc.store.progress(id)).processed >= 2, "the first conversation ended");
    // The same id starts again and reaches the consent question.
    await svc.post(ev.start(id));
    svc.fake.enqueue(reply.tool("start_sms_flow", { info: "address" }));
    const q = await svc.post(ev.speak(id, "Schicken Sie mir die Adresse per SMS?"));
    expect(spoken(q.actions).at(-1)).toMatch(/^Darf ich Ihnen die Informationen per SMS/);
    svc.fake.reset();
    const gate = svc.fake.block();
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
    await postAndHangUp(port, ev.speak(id, "Ja, gerne."), gate.arrived);
    gate.release();
    await until(async () => (await svc.store.progress(id)).processed >= 5, "the yes processed");
    await until(() => ledgerKinds(svc, id).includes("sms_approved"), "sms_approved");
    await new Promise((r) => setTimeout(r, 100));
    const next = await svc.post(ev.speechEnded(id));
    // What must happen (answer.lost.test.ts): the lost send leaves with the next answer, once;
    // or, if it cannot, the ledger records it as not sent. Here it vanishes without a trace.
    const kinds = ledgerKinds(svc, id);
    const notSent = kinds.filter((k) => k === "sms_not_sent").length;
    expect(smsActions(next.actions).filter((a) => a.phone_number === CALLER).length + notSent).toBe(1);
  });
});
