import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { reply } from "./support/fakeOpenAI.js";
import { CALLER, ev } from "./support/events.js";
import { smsActions, spoken, startTestService, testConfig, type TestService } from "./support/harness.js";
import { atConsentQuestion, postPending, slowTurn } from "./support/deadline.js";
import type { AiFlowAction } from "../src/aiflow/actions.js";

/**
 * Review of issue 17 (rule 2): words that overtook a yes's send are evaluated in the consent step,
 * with that step's tools. The step's prompt tells the model to answer "a different or corrected
 * number" with collect_phone_number (not record_consent), and "another number, without saying it"
 * with a question and no tool. Both mean the caller does NOT want the SMS at the number of the
 * pending send; the recheck lets that send leave anyway.
 */

const SENT = /abgeschickt|unterwegs|verschickt|geschickt\./;

let svc: TestService;
beforeAll(async () => {
  svc = await startTestService({ config: testConfig({ server: { leaseMs: 300 }, tasks: { sms: { recipients: { perRecipient: { max: 1000, windowSeconds: 60 } } } } }) });
});
afterAll(async () => svc.close());
beforeEach(() => svc.fake.reset());


describe("review17: a correction of the number overtaking the send", () => {
  it("'Nein, lieber an die 0170 1234567' over the slow yes's holding line: the send to the old number must not leave", async () => {
    const id = "r17-recheck-other-number";
    await atConsentQuestion(svc, id);
    svc.fake.reset();
    // The yes's turn is slow; the overtaking words name a different number, which the consent step's
    // prompt maps to collect_phone_number.
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }), reply.tool("collect_phone_number", { phone_number: "0170 1234567" }));
    const gate = await slowTurn(svc, ev.speak(id, "Ja, gerne."));
    const { answer } = await postPending(svc, ev.speak(id, "Nein, lieber an die 0170 1234567."));
    gate.release();
    const r = await answer;
    const all: AiFlowAction[] = [...r.actions, ...(await svc.post(ev.speechEnded(id))).actions];
    // What must happen: the caller never heard the send announced and asked for another number
    // before it left: the send to their own number is withdrawn (sms_not_sent recorded), and the
    // question for the new number is what they hear, with the flow waiting for its answer.
    expect(smsActions(all).filter((a) => a.phone_number === CALLER)).toEqual([]);
    expect(spoken(all).some((t) => SENT.test(t))).toBe(false);
    const state = (await svc.store.get(id))!;
    expect(state.sms.sent).toEqual([]);
    expect(svc.memoryLedger.records.filter((r) => r.callId === id && r.kind === "sms_not_sent")).toEqual([expect.objectContaining({ reason: "withdrawn_by_no" })]);
  });

  it("after a correction during the recheck, the flow stays in the consent step for the new question it just asked", async () => {
    const id = "r17-recheck-other-number-step";
    await atConsentQuestion(svc, id);
    svc.fake.reset();
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }), reply.tool("collect_phone_number", { phone_number: "0170 1234567" }));
    const gate = await slowTurn(svc, ev.speak(id, "Ja, gerne."));
    const { answer } = await postPending(svc, ev.speak(id, "Nein, lieber an die 0170 1234567."));
    gate.release();
    const r = await answer;
    // The caller hears the consent question for the new number …
    expect(spoken(r.actions).some((t) => /^Darf ich Ihnen die Informationen per SMS an die Nummer 0 1 7 0/.test(t))).toBe(true);
    // … so the call must be in the consent step, waiting for its answer (not back in "main").
    const state = (await svc.store.get(id))!;
    expect(state.step).toBe("confirm_consent");
  });

  it("'Moment, lieber an eine andere Nummer' (no number yet) over the holding line: the send to the old number must not leave", async () => {
    const id = "r17-recheck-ask-other";
    await atConsentQuestion(svc, id);
    svc.fake.reset();
    // Prompt rule: "wants another number without saying it: ask for the number, without calling a tool".
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }), reply.text("Gern, an welche Nummer soll die SMS gehen?"));
    const gate = await slowTurn(svc, ev.speak(id, "Ja."));
    const { answer } = await postPending(svc, ev.speak(id, "Moment, lieber an eine andere Nummer."));
    gate.release();
    const r = await answer;
    const all: AiFlowAction[] = [...r.actions, ...(await svc.post(ev.speechEnded(id))).actions];
    // What must happen: no SMS to the old number while the caller is asked for another one.
    expect(smsActions(all)).toEqual([]);
  });
});
