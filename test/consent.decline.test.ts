import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { reply } from "./support/fakeOpenAI.js";
import { ev } from "./support/events.js";
import { smsActions, spoken, startTestService, testConfig, type TestService } from "./support/harness.js";

/**
 * Every "no" is final, whatever state the consent question is in. The checks that guard a
 * "yes" (same turn, interrupted, another line after the question, empty reply, not asked for
 * this number) must never turn a "no" into a re-ask. One test per state, each followed by the
 * caller changing their mind: no question, no SMS.
 */

let svc: TestService;
beforeAll(async () => {
  svc = await startTestService({ config: testConfig({ tasks: { sms: { recipients: { perRecipient: { max: 1000, windowSeconds: 60 } } } } }) });
});
afterAll(async () => svc.close());
beforeEach(() => {
  svc.fake.reset();
  svc.memoryLedger.failWrites = false;
});

const DECLINE_LINE = "Alles klar, dann schicke ich Ihnen keine SMS. Kann ich Ihnen sonst noch helfen?";
const CANCEL_LINE = "In Ordnung, dann verschicke ich keine SMS. Kann ich Ihnen sonst noch helfen?";
const QUESTION = /^Darf ich Ihnen die Informationen per SMS/;

async function askForSms(id: string) {
  await svc.post(ev.start(id));
  svc.fake.enqueue(reply.tool("start_sms_flow", { info: "address" }));
  const r = await svc.post(ev.speak(id, "Schicken Sie mir die Adresse per SMS?"));
  expect(spoken(r.actions).at(-1)).toMatch(QUESTION);
  return r;
}

const ledgerKinds = (id: string) => svc.memoryLedger.records.filter((r) => r.callId === id).map((r) => r.kind);

/** After the decline: the flow cannot start again, and a later "yes" sends nothing. */
async function expectFinal(id: string) {
  const state = await svc.store.get(id);
  expect(state!.sms.declined).toBe(true);
  expect(state!.step).toBe("main");
  expect(ledgerKinds(id)).toContain("consent_declined");
  svc.fake.reset();
  svc.fake.enqueue(reply.tool("start_sms_flow", { info: "address" }), reply.text("Dann helfe ich Ihnen gern anders weiter."));
  const again = await svc.post(ev.speak(id, "Ach, schicken Sie doch die SMS."));
  expect(spoken(again.actions).some((t) => QUESTION.test(t))).toBe(false);
  expect(svc.fake.requests[1]!.messages.at(-1)!.content).toMatch(/declined or cancelled the SMS earlier/);
  svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
  const yes = await svc.post(ev.speak(id, "Ja, einverstanden."));
  expect(smsActions(yes.actions)).toEqual([]);
  expect(ledgerKinds(id)).not.toContain("sms_approved");
}

describe("a decline ends the SMS flow in every state of the question", () => {
  it("the same turn as the question (the model changes the number and declines in one batch)", async () => {
    const id = "no-same-turn";
    await askForSms(id);
    svc.fake.enqueue(reply.tools({ name: "collect_phone_number", arguments: { phone_number: "0170 1234567" } }, { name: "record_consent", arguments: { consented: false } }));
    const r = await svc.post(ev.speak(id, "Nein, lieber nicht an die 0170 1234567."));
    expect(spoken(r.actions).at(-1)).toBe(DECLINE_LINE);
    await expectFinal(id);
  });

  it("an interrupted question: the caller barges in with a no", async () => {
    const id = "no-barge-in";
    await askForSms(id);
    svc.fake.enqueue(reply.tool("record_consent", { consented: false }));
    const r = await svc.post(ev.speak(id, "Nein, lieber nicht.", true));
    expect(spoken(r.actions)).toEqual([DECLINE_LINE]);
    await expectFinal(id);
  });

  it("another line said after the question (welcome back after a repeated session_start)", async () => {
    const id = "no-not-last";
    await askForSms(id);
    const back = await svc.post(ev.start(id));
    expect(spoken(back.actions)).toEqual(["Da sind Sie wieder. Wie kann ich Ihnen weiterhelfen?"]);
    svc.fake.enqueue(reply.tool("record_consent", { consented: false }));
    const r = await svc.post(ev.speak(id, "Nein, keine SMS."));
    expect(spoken(r.actions)).toEqual([DECLINE_LINE]);
    await expectFinal(id);
  });

  it("an empty reply", async () => {
    const id = "no-empty";
    await askForSms(id);
    svc.fake.enqueue(reply.tool("record_consent", { consented: false }));
    const r = await svc.post(ev.speak(id, ""));
    expect(spoken(r.actions)).toEqual([DECLINE_LINE]);
    await expectFinal(id);
  });

  it("the question not yet asked for this number (its evidence could not be written)", async () => {
    const id = "no-not-asked";
    await svc.post(ev.start(id));
    svc.memoryLedger.failWrites = true;
    svc.fake.enqueue(reply.tool("start_sms_flow", { info: "address" }));
    const failed = await svc.post(ev.speak(id, "Schicken Sie mir die Adresse per SMS?"));
    svc.memoryLedger.failWrites = false;
    expect(spoken(failed.actions).some((t) => QUESTION.test(t))).toBe(false);
    const state = await svc.store.get(id);
    expect(state!.step).toBe("confirm_consent");
    expect(state!.sms.consent).toBeUndefined();
    svc.fake.enqueue(reply.tool("record_consent", { consented: false }));
    const r = await svc.post(ev.speak(id, "Nein, danke."));
    expect(spoken(r.actions)).toEqual([DECLINE_LINE]);
    const declined = svc.memoryLedger.records.find((x) => x.callId === id && x.kind === "consent_declined")!;
    expect(declined.question).toBeUndefined();
    expect(declined.reply).toBe("Nein, danke.");
    await expectFinal(id);
  });

  it("a decline holds while the ledger is down (the record is lost, the no is not)", async () => {
    const id = "no-ledger-down";
    await askForSms(id);
    svc.memoryLedger.failWrites = true;
    svc.fake.enqueue(reply.tool("record_consent", { consented: false }));
    const r = await svc.post(ev.speak(id, "Nein."));
    svc.memoryLedger.failWrites = false;
    expect(spoken(r.actions)).toEqual([DECLINE_LINE]);
    expect((await svc.store.get(id))!.sms.declined).toBe(true);
  });

  it("a yes followed by a no in one batch sends nothing", async () => {
    const id = "no-after-yes";
    await askForSms(id);
    svc.fake.enqueue(reply.tools({ name: "record_consent", arguments: { consented: true } }, { name: "record_consent", arguments: { consented: false } }));
    const r = await svc.post(ev.speak(id, "Ja… nein, doch nicht."));
    expect(smsActions(r.actions)).toEqual([]);
    expect(spoken(r.actions)).toEqual([DECLINE_LINE]);
    expect(ledgerKinds(id)).not.toContain("sms_approved");
  });

  it("cancel_sms while collecting a number is final too", async () => {
    const id = "no-cancel";
    await svc.post(ev.start(id, { from: "493012345678" }));
    svc.fake.enqueue(reply.tool("start_sms_flow", { info: "address" }));
    const ask = await svc.post(ev.speak(id, "Schicken Sie mir die Adresse per SMS?", false, { from: "493012345678" }));
    expect(spoken(ask.actions)[0]).toMatch(/An welche Handynummer/);
    svc.fake.enqueue(reply.tool("cancel_sms"));
    const r = await svc.post(ev.speak(id, "Ach, lassen Sie das.", true, { from: "493012345678" }));
    expect(spoken(r.actions)).toEqual([CANCEL_LINE]);
    expect(ledgerKinds(id)).toContain("sms_cancelled");
    const state = await svc.store.get(id);
    expect(state!.sms.declined).toBe(true);
    svc.fake.enqueue(reply.tool("start_sms_flow", { info: "address" }), reply.text("Gern helfe ich anders."));
    const again = await svc.post(ev.speak(id, "Doch per SMS.", false, { from: "493012345678" }));
    expect(spoken(again.actions)).toEqual(["Gern helfe ich anders."]);
  });

  it("a no for a tool the step does not offer is not acted on (the model is told)", async () => {
    const id = "no-not-offered";
    await svc.post(ev.start(id));
    svc.fake.enqueue(reply.tool("record_consent", { consented: false }), reply.text("Wie kann ich helfen?"));
    await svc.post(ev.speak(id, "Hallo"));
    expect(svc.fake.toolsOffered(0)).not.toContain("record_consent");
    expect((await svc.store.get(id))!.sms.declined).toBe(false);
  });
});

describe("after hangup the call is over", () => {
  const id = "after-hangup";
  it("the goodbye, then the hangup", async () => {
    await svc.post(ev.start(id));
    svc.fake.enqueue(reply.tool("end_call"));
    const bye = await svc.post(ev.speak(id, "Danke, tschüss."));
    expect(spoken(bye.actions)).toEqual(["Vielen Dank für Ihren Anruf. Auf Wiederhören!"]);
    const end = await svc.post(ev.speechEnded(id));
    expect(end.actions).toEqual([{ type: "hangup", session_id: id }]);
  });

  it.each([
    ["user_speak", ev.speak(id, "Hallo? Noch da?")],
    ["dtmf_received", ev.dtmf(id, "5")],
    ["user_input_timeout", ev.timeout(id)],
    ["session_start", ev.start(id)],
  ])("a later %s gets 204 and causes no model request", async (_type, event) => {
    svc.fake.reset();
    const r = await svc.post(event);
    expect(r.status).toBe(204);
    expect(svc.fake.requests).toHaveLength(0);
  });

  it("sms_failed bookkeeping still counts, silently; session_end still clears the call", async () => {
    const r = await svc.post(ev.smsFailed(id, "insufficient_balance"));
    expect(r.status).toBe(204);
    expect(ledgerKinds(id)).toContain("sms_failed");
    await svc.post(ev.end(id));
    expect(await svc.store.get(id)).toBeUndefined();
  });
});
