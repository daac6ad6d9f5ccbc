import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { reply } from "./support/fakeOpenAI.js";
import { CALLER, ev } from "./support/events.js";
import { consentRuleConfig, smsActions, spoken, startTestService, testConfig, type TestService } from "./support/harness.js";
import { atConsentQuestion, ledgerKinds, postPending, slowTurn } from "./support/deadline.js";
import type { TurnRecord } from "../src/core/turnRecord.js";

/**
 * The consent turn without model time (issue 21.4), through the real webhook, engine, gate and the
 * local model server. The model server counts every request, so "no model request" is observed on
 * the wire. Expectations come from what the caller said and heard and what the model was asked.
 */

const QUESTION = /^Darf ich Ihnen die Informationen per SMS/;
const DECLINE_LINE = /^Alles klar, dann schicke ich Ihnen keine SMS/;

let svc: TestService;
const turns: TurnRecord[] = [];
beforeAll(async () => {
  svc = await startTestService({ config: consentRuleConfig(), onTurn: (t) => turns.push(t) });
});
afterAll(async () => svc.close());
beforeEach(() => {
  svc.fake.reset();
  turns.length = 0;
});

const record = (id: string, kind: string) => svc.memoryLedger.records.find((r) => r.callId === id && r.kind === kind);
const lastTurnOf = (id: string) => turns.filter((t) => t.sessionId === id).at(-1)!;

describe("a clear answer right after the heard question is decided by the list", () => {
  it("'Ja, gerne.' sends with no model request, through record_consent and the gate; the ledger names the rule", async () => {
    const id = "rule-yes";
    await atConsentQuestion(svc, id);
    svc.fake.reset();
    const r = await svc.post(ev.speak(id, "Ja, gerne."));
    expect(svc.fake.requests).toHaveLength(0);
    expect(smsActions(r.actions)).toEqual([expect.objectContaining({ phone_number: CALLER })]);
    expect(lastTurnOf(id).toolCalls).toEqual([expect.objectContaining({ name: "record_consent", origin: "rule", rule: "yes:ja gerne", ok: true }), expect.objectContaining({ name: "send_confirmation_sms" })]);
    expect(lastTurnOf(id).guardDecisions).toContainEqual(expect.objectContaining({ subject: "send_sms", allowed: true }));
    const given = record(id, "consent_given")!;
    expect(given).toMatchObject({ decidedBy: "rule", rule: "yes:ja gerne", reply: "Ja, gerne." });
    expect(given.model).toBeUndefined();
    expect(record(id, "sms_approved")).toMatchObject({ reply: "Ja, gerne.", ref: given.id });
    // In the history as the call the model would have made: later requests see it.
    const state = (await svc.store.get(id))!;
    expect(state.history.some((m) => m.role === "assistant" && m.tool_calls?.some((c) => c.function.name === "record_consent" && c.function.arguments === '{"consented":true}'))).toBe(true);
  });

  it("'Nein danke.' is final with no model request: the decline line, no re-ask, and a later yes sends nothing", async () => {
    const id = "rule-no";
    await atConsentQuestion(svc, id);
    svc.fake.reset();
    const r = await svc.post(ev.speak(id, "Nein danke."));
    expect(svc.fake.requests).toHaveLength(0);
    expect(smsActions(r.actions)).toEqual([]);
    expect(spoken(r.actions)).toEqual([expect.stringMatching(DECLINE_LINE)]);
    expect(record(id, "consent_declined")).toMatchObject({ decidedBy: "rule", rule: "no:nein danke", reply: "Nein danke.", outcome: "declined" });
    expect((await svc.store.get(id))!.sms.declined).toBe(true);
    // The caller changes their mind: the model is asked (not the question's first answer), nothing is asked again or sent.
    svc.fake.enqueue(reply.tool("start_sms_flow", { info: "address" }), reply.text("Dann helfe ich Ihnen gern anders weiter."));
    const later = await svc.post(ev.speak(id, "Ja."));
    expect(smsActions(later.actions)).toEqual([]);
    expect(spoken(later.actions).some((t) => QUESTION.test(t))).toBe(false);
  });

  it("anything else goes to the model as before, and the ledger says the model decided", async () => {
    const id = "rule-model";
    await atConsentQuestion(svc, id);
    svc.fake.reset();
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
    const r = await svc.post(ev.speak(id, "Ja, das passt, schicken Sie mir das."));
    expect(svc.fake.requests).toHaveLength(1);
    expect(smsActions(r.actions)).toHaveLength(1);
    expect(record(id, "consent_given")).toMatchObject({ decidedBy: "model", model: expect.any(String) });
    expect(record(id, "consent_given")!.rule).toBeUndefined();
  });

  it("a 'Ja?' (a question) and 'Ja, aber …' go to the model", async () => {
    for (const [i, words] of ["Ja?", "Ja, aber an die Nummer meiner Frau."].entries()) {
      const id = `rule-question-${i}`;
      await atConsentQuestion(svc, id);
      svc.fake.reset();
      svc.fake.enqueue(reply.text("Ich schicke die SMS nur an Sie selbst."));
      const r = await svc.post(ev.speak(id, words));
      expect(svc.fake.requests).toHaveLength(1);
      expect(smsActions(r.actions)).toEqual([]);
      expect(record(id, "consent_given")).toBeUndefined();
    }
  });
});

describe("only the first caller event after the heard question, with nothing in between", () => {
  it("'Gerne.' said to the holding line goes to the model and is no consent; the caller hears the question", async () => {
    const id = "rule-holding-gerne";
    await svc.post(ev.start(id));
    // An eager model takes "Gerne." as consent: the question had not reached the caller yet.
    svc.fake.enqueue(reply.tool("start_sms_flow", { info: "address" }), reply.tool("record_consent", { consented: true }));
    const gate = await slowTurn(svc, ev.speak(id, "Schicken Sie mir die Adresse per SMS?"));
    const { answer } = await postPending(svc, ev.speak(id, "Gerne."));
    gate.release();
    const r = await answer;
    expect(svc.fake.requests).toHaveLength(2);
    expect(svc.fake.requests[1]!.messages.at(-1)!.content).toBe("Gerne.");
    expect(spoken(r.actions)).toEqual([expect.stringMatching(QUESTION)]);
    expect(smsActions(r.actions)).toEqual([]);
    expect(ledgerKinds(svc, id)).not.toContain("consent_given");
    expect(turns.flatMap((t) => t.toolCalls).filter((c) => c.origin === "rule")).toEqual([]);
  });

  it("'Nein.' while the question is still pending is never turned into a yes (the model's yes is refused, nothing sent)", async () => {
    const id = "rule-pending-nein";
    await svc.post(ev.start(id));
    svc.fake.enqueue(reply.tool("start_sms_flow", { info: "address" }), reply.tool("record_consent", { consented: true }));
    const gate = await slowTurn(svc, ev.speak(id, "Die Adresse per SMS bitte."));
    const { answer } = await postPending(svc, ev.speak(id, "Nein."));
    gate.release();
    const r = await answer;
    expect(smsActions(r.actions)).toEqual([]);
    expect(ledgerKinds(svc, id)).not.toContain("consent_given");
    expect(turns.flatMap((t) => t.toolCalls).filter((c) => c.origin === "rule")).toEqual([]);
    // The same, with the model hearing the "no": final, no re-ask.
    const id2 = "rule-pending-nein-2";
    await svc.post(ev.start(id2));
    svc.fake.reset();
    svc.fake.enqueue(reply.tool("start_sms_flow", { info: "address" }), reply.tool("record_consent", { consented: false }));
    const gate2 = await slowTurn(svc, ev.speak(id2, "Die Adresse per SMS bitte."));
    const pending2 = await postPending(svc, ev.speak(id2, "Nein."));
    gate2.release();
    const r2 = await pending2.answer;
    expect(smsActions(r2.actions)).toEqual([]);
    expect((await svc.store.get(id2))!.sms.declined).toBe(true);
    expect(record(id2, "consent_declined")).toMatchObject({ decidedBy: "model" });
  });

  it("a second reply after the question's turn is the model's: 'Gerne.' went to the model, so the next 'Ja.' does too", async () => {
    const id = "rule-second-reply";
    await svc.post(ev.start(id));
    svc.fake.enqueue(reply.tool("start_sms_flow", { info: "address" }), reply.tool("record_consent", { consented: true }));
    const gate = await slowTurn(svc, ev.speak(id, "Schicken Sie mir die Adresse per SMS?"));
    const { answer } = await postPending(svc, ev.speak(id, "Gerne."));
    gate.release();
    expect(spoken((await answer).actions)).toEqual([expect.stringMatching(QUESTION)]);
    svc.fake.reset();
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
    const yes = await svc.post(ev.speak(id, "Ja."));
    expect(svc.fake.requests).toHaveLength(1);
    expect(smsActions(yes.actions)).toHaveLength(1);
    expect(record(id, "consent_given")).toMatchObject({ decidedBy: "model", reply: "Ja." });
  });

  it("a caller who barges into the question: 'Ja.' goes to the model, the question is asked again, nothing sent", async () => {
    const id = "rule-barge";
    await atConsentQuestion(svc, id);
    svc.fake.reset();
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
    const r = await svc.post(ev.speak(id, "Ja.", true));
    expect(svc.fake.requests).toHaveLength(1);
    expect(smsActions(r.actions)).toEqual([]);
    expect(spoken(r.actions).at(-1)).toMatch(QUESTION);
    // The answer to the question asked again, heard in full, is the first after it: the rule decides.
    svc.fake.reset();
    const yes = await svc.post(ev.speak(id, "Ja."));
    expect(svc.fake.requests).toHaveLength(0);
    expect(smsActions(yes.actions)).toHaveLength(1);
    expect(record(id, "consent_given")).toMatchObject({ decidedBy: "rule", rule: "yes:ja" });
  });

  it("a barged-in 'Nein.' goes to the model, whose no is final", async () => {
    const id = "rule-barge-no";
    await atConsentQuestion(svc, id);
    svc.fake.reset();
    svc.fake.enqueue(reply.tool("record_consent", { consented: false }));
    const r = await svc.post(ev.speak(id, "Nein.", true));
    expect(svc.fake.requests).toHaveLength(1);
    expect(spoken(r.actions)).toEqual([expect.stringMatching(DECLINE_LINE)]);
    expect((await svc.store.get(id))!.sms.declined).toBe(true);
  });
});

describe("the switch", () => {
  it("tasks.sms.consent.answerByRule: false sends every answer to the model", async () => {
    const off = await startTestService({ config: testConfig({ tasks: { sms: { consent: { answerByRule: false } } } }) });
    try {
      await atConsentQuestion(off, "rule-off");
      off.fake.reset();
      off.fake.enqueue(reply.tool("record_consent", { consented: true }));
      const r = await off.post(ev.speak("rule-off", "Ja, gerne."));
      expect(off.fake.requests).toHaveLength(1);
      expect(smsActions(r.actions)).toHaveLength(1);
      expect(off.memoryLedger.records.find((x) => x.kind === "consent_given")).toMatchObject({ decidedBy: "model" });
    } finally {
      await off.close();
    }
  });
});
