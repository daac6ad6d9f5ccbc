import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { reply } from "./support/fakeOpenAI.js";
import { CALLER, ev } from "./support/events.js";
import { smsActions, spoken, startTestService, testConfig, type TestService } from "./support/harness.js";
import { toolPairingProblems } from "../src/engine/history.js";
import { parseEvent } from "../src/aiflow/events.js";

let svc: TestService;
beforeAll(async () => {
  // Many calls here text the same caller; the per-recipient limit has its own test.
  svc = await startTestService({ config: testConfig({ tasks: { sms: { recipients: { perRecipient: { max: 1000, windowSeconds: 60 } } } } }) });
});
afterAll(async () => svc.close());
beforeEach(() => svc.fake.reset());

const LANDLINE = "493012345678";
const OTHER_MOBILE_SPOKEN = "0170 1234567";
const OTHER_MOBILE = "491701234567";

async function startSmsFlow(id: string, from = CALLER) {
  await svc.post(ev.start(id, { from }));
  svc.fake.enqueue(reply.tool("start_sms_flow", { info: "address" }));
  return svc.post(ev.speak(id, "Schicken Sie mir die Adresse per SMS?", false, { from }));
}

describe("another number spoken in German national format", () => {
  const id = "flow-other-number";
  it("a landline caller is asked for a mobile number", async () => {
    const r = await startSmsFlow(id, LANDLINE);
    expect(spoken(r.actions)[0]).toMatch(/An welche Handynummer/);
    expect((await svc.store.get(id))!.step).toBe("collect_number");
  });
  it("the spoken number is normalized and read back in digit groups in the consent question", async () => {
    svc.fake.enqueue(reply.tool("collect_phone_number", { phone_number: "null eins sieben null, eins zwei drei, vier fünf sechs sieben" }));
    const r = await svc.post(ev.speak(id, "Null eins sieben null, eins zwei drei, vier fünf sechs sieben", false, { from: LANDLINE }));
    expect(svc.fake.toolsOffered(0)).toEqual(["collect_phone_number", "cancel_sms", "opt_out_sms"]);
    expect(spoken(r.actions)).toEqual(["Darf ich Ihnen die Informationen per SMS an die Nummer 0 1 7 0, 1 2 3, 4 5, 6 7 schicken?"]);
    expect((await svc.store.get(id))!.sms.number).toBe(OTHER_MOBILE);
  });
  it("consent sends to exactly that number", async () => {
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
    const r = await svc.post(ev.speak(id, "Ja, bitte.", false, { from: LANDLINE }));
    expect(smsActions(r.actions)).toEqual([expect.objectContaining({ phone_number: OTHER_MOBILE })]);
  });
});

describe("invalid, premium-rate, foreign and landline numbers are asked for again", () => {
  const id = "flow-bad-numbers";
  it.each([
    ["0900 1234567", /Handynummer/],
    ["0180 5 123456", /Handynummer/],
    ["030 12345678", /Handynummer/],
    ["+44 7911 123456", /Land/],
    ["12", /nicht richtig verstanden/],
  ])("%s is refused with a fixed line and no second LLM request", async (number, line) => {
    await startSmsFlow(id, LANDLINE);
    svc.fake.reset();
    svc.fake.enqueue(reply.tool("collect_phone_number", { phone_number: number }));
    const r = await svc.post(ev.speak(id, `Die Nummer ist ${number}`, false, { from: LANDLINE }));
    expect(svc.fake.requests).toHaveLength(1);
    expect(spoken(r.actions)).toHaveLength(1);
    expect(spoken(r.actions)[0]).toMatch(line);
    const state = (await svc.store.get(id))!;
    expect(state.step).toBe("collect_number");
    expect(state.sms.number).toBeUndefined();
    await svc.post(ev.end(id));
  });
});

describe("decline is final: no send, no re-ask", () => {
  const id = "flow-decline";
  it("record_consent(false) exits the flow with a fixed line and a ledger entry", async () => {
    await startSmsFlow(id);
    svc.fake.enqueue(reply.tool("record_consent", { consented: false }));
    const r = await svc.post(ev.speak(id, "Nein, lieber nicht."));
    expect(r.actions.map((a) => a.type)).toEqual(["speak"]);
    expect(spoken(r.actions)[0]).toMatch(/keine SMS/);
    const state = (await svc.store.get(id))!;
    expect(state.sms.declined).toBe(true);
    expect(state.step).toBe("main");
    expect(svc.memoryLedger.records.filter((x) => x.callId === id).map((x) => x.kind)).toEqual(["consent_asked", "consent_declined"]);
  });
  it("a model that tries to start the flow again is refused and no question is asked", async () => {
    svc.fake.enqueue(reply.tool("start_sms_flow", { info: "address" }), reply.text("Gern helfe ich Ihnen mündlich weiter."));
    const r = await svc.post(ev.speak(id, "Ach, schicken Sie es doch per SMS."));
    expect(svc.fake.requests[0]!.messages.at(-1)!.content).toBe("Ach, schicken Sie es doch per SMS.");
    expect(svc.fake.requests[1]!.messages.at(-1)!.content).toMatch(/declined or cancelled the SMS earlier/);
    expect(spoken(r.actions)).toEqual(["Gern helfe ich Ihnen mündlich weiter."]);
    expect(smsActions(r.actions)).toHaveLength(0);
    expect((await svc.store.get(id))!.step).toBe("main");
  });
});

describe("number change voids earlier consent; sms_failed with a wrong number needs new consent", () => {
  const id = "flow-number-change";
  it("sends to the own number after consent", async () => {
    await startSmsFlow(id);
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
    const r = await svc.post(ev.speak(id, "Ja."));
    expect(smsActions(r.actions)).toHaveLength(1);
  });
  it("a transient failure offers one retry: the consent question is asked again", async () => {
    const r = await svc.post(ev.smsFailed(id, "smsc_unavailable"));
    expect(spoken(r.actions)).toEqual([
      "Die SMS konnte leider nicht verschickt werden.",
      "Darf ich Ihnen die Informationen per SMS an die Nummer 0 1 5 1 1, 2 3 4, 5 6, 7 8 schicken?",
    ]);
    const s = (await svc.store.get(id))!;
    expect(s.step).toBe("confirm_consent");
    expect(s.sms.consent?.answer).toBeUndefined();
  });
  it("the caller gives a corrected number: the consent for the old one is void and a new question is asked", async () => {
    svc.fake.enqueue(reply.tool("collect_phone_number", { phone_number: OTHER_MOBILE_SPOKEN }));
    const r = await svc.post(ev.speak(id, `Die Nummer war falsch, nehmen Sie ${OTHER_MOBILE_SPOKEN}.`));
    expect(svc.fake.toolsOffered(0)).toEqual(["record_consent", "collect_phone_number", "ask_for_other_number", "opt_out_sms"]);
    expect(spoken(r.actions)[0]).toMatch(/Darf ich .* 0 1 7 0, 1 2 3, 4 5, 6 7/);
    expect(smsActions(r.actions)).toHaveLength(0);
    const s = (await svc.store.get(id))!;
    expect(s.sms.number).toBe(OTHER_MOBILE);
    expect(s.sms.consent?.answer).toBeUndefined();
  });
  it("a model that sends in the same turn as the question is refused: not offered", async () => {
    svc.fake.enqueue(reply.tool("send_confirmation_sms"), reply.text("Einen Moment bitte."));
    const r = await svc.post(ev.speak(id, "Hallo?"));
    expect(smsActions(r.actions)).toHaveLength(0);
  });
  it("the new consent sends to the new number only", async () => {
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
    const r = await svc.post(ev.speak(id, "Ja, an die neue Nummer."));
    expect(smsActions(r.actions)).toEqual([expect.objectContaining({ phone_number: OTHER_MOBILE })]);
    const sends = svc.memoryLedger.records.filter((x) => x.callId === id && x.kind === "sms_approved");
    expect(sends.map((x) => x.number)).toEqual([CALLER, OTHER_MOBILE]);
  });
});

describe("each sms_failed reason", () => {
  async function sentCall(id: string) {
    await startSmsFlow(id);
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
    const r = await svc.post(ev.speak(id, "Ja."));
    expect(smsActions(r.actions)).toHaveLength(1);
  }

  it.each(["sender_not_allowed", "insufficient_balance", "no_sms_extension"])(
    "%s: apology, verbal offer, an operator alert, and no retry even if the model tries",
    async (reason) => {
      const id = `failed-${reason}`;
      await sentCall(id);
      const requestsBefore = svc.fake.requests.length;
      const r = await svc.post(ev.smsFailed(id, reason));
      expect(spoken(r.actions)).toEqual(["Es tut mir leid, der SMS-Versand funktioniert bei uns gerade nicht. Ich kann Ihnen die Informationen aber gern direkt am Telefon geben."]);
      expect(svc.fake.requests).toHaveLength(requestsBefore);
      const s = (await svc.store.get(id))!;
      expect(s.sms.sent[0]!.failed).toBe(reason);
      expect(s.step).toBe("main");
      // A model pushing for another send is refused up front, truthfully (nothing was delivered).
      svc.fake.enqueue(reply.tool("start_sms_flow", { info: "address" }), reply.text("Ich gebe Ihnen die Adresse gern am Telefon."));
      const parsed = parseEvent(ev.speak(id, "Versuchen Sie es nochmal per SMS."));
      if (parsed.kind !== "event") throw new Error("fixture did not parse");
      const again = await svc.pipeline.process(parsed.event);
      expect(smsActions(again.actions)).toHaveLength(0);
      expect(again.toolCalls[0]).toMatchObject({ name: "start_sms_flow", result: expect.stringMatching(/no further SMS can be sent/) });
      expect(spoken(again.actions).join(" ")).not.toMatch(/bereits eine SMS/);
      expect((await svc.store.get(id))!.step).toBe("main");
    },
  );

  it.each(["smsc_unavailable", "unknown"])("%s: one retry after a new yes; a second failure ends retries", async (reason) => {
    const id = `failed-${reason}`;
    await sentCall(id);
    const offer = await svc.post(ev.smsFailed(id, reason));
    expect(spoken(offer.actions)[1]).toMatch(/^Darf ich Ihnen/);
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
    const retry = await svc.post(ev.speak(id, "Ja, bitte nochmal."));
    expect(smsActions(retry.actions)).toEqual([expect.objectContaining({ phone_number: CALLER })]);
    const second = await svc.post(ev.smsFailed(id, reason));
    expect(spoken(second.actions)).toEqual(["Die SMS konnte leider auch diesmal nicht verschickt werden. Ich kann Ihnen die Informationen aber gern direkt am Telefon geben."]);
    expect((await svc.store.get(id))!.step).toBe("main");
    const failures = svc.memoryLedger.records.filter((x) => x.callId === id && x.kind === "sms_failed");
    expect(failures).toHaveLength(2);
    const consents = svc.memoryLedger.records.filter((x) => x.callId === id && x.kind === "consent_given");
    expect(consents).toHaveLength(2);
  });

  it("the caller may decline the retry: final, no send", async () => {
    const id = "failed-retry-declined";
    await sentCall(id);
    await svc.post(ev.smsFailed(id, "smsc_unavailable"));
    svc.fake.enqueue(reply.tool("record_consent", { consented: false }));
    const r = await svc.post(ev.speak(id, "Nein, lassen Sie nur."));
    expect(smsActions(r.actions)).toHaveLength(0);
    expect(spoken(r.actions)[0]).toMatch(/keine SMS/);
    expect((await svc.store.get(id))!.sms.declined).toBe(true);
  });

  it("with retries switched off, a transient failure is apologized for once, without 'again'", async () => {
    const noRetry = await startTestService({ config: testConfig({ tasks: { sms: { retryTransientFailures: false } } }) });
    try {
      const id = "failed-no-retry";
      await noRetry.post(ev.start(id));
      noRetry.fake.enqueue(reply.tool("start_sms_flow", { info: "address" }));
      await noRetry.post(ev.speak(id, "SMS bitte"));
      noRetry.fake.enqueue(reply.tool("record_consent", { consented: true }));
      await noRetry.post(ev.speak(id, "Ja"));
      const r = await noRetry.post(ev.smsFailed(id, "smsc_unavailable"));
      expect(spoken(r.actions)).toEqual(["Die SMS konnte leider nicht verschickt werden. Ich kann Ihnen die Informationen aber gern direkt am Telefon geben."]);
    } finally {
      await noRetry.close();
    }
  });
});

describe("barge-in during the consent question", () => {
  const id = "flow-barge-in";
  it("a 'yes' that interrupted the question does not count; the question is asked again", async () => {
    await startSmsFlow(id);
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
    const r = await svc.post(ev.speak(id, "Ja ja", true));
    expect(smsActions(r.actions)).toHaveLength(0);
    expect(spoken(r.actions)[0]).toMatch(/^Darf ich Ihnen/);
    const s = (await svc.store.get(id))!;
    // The model was told the line was cut off.
    const lastAssistant = svc.fake.requests.at(-1)!.messages.filter((m) => m.role === "assistant").at(-1)!;
    expect(lastAssistant.content).toMatch(/interrupted by the caller/);
    expect(s.sms.consent?.interrupted).toBe(false);
    expect(toolPairingProblems(s.history)).toEqual([]);
  });
  it("the answer to the repeated question counts", async () => {
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
    const r = await svc.post(ev.speak(id, "Ja, gern."));
    expect(smsActions(r.actions)).toHaveLength(1);
  });
});

describe("duplicate delivery of the same event", () => {
  it("sequential redelivery of an answer that sent an SMS gets 204: no second SMS, no second 'sent' line", async () => {
    const id = "dup-seq";
    await startSmsFlow(id);
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
    const yes = ev.speak(id, "Ja.");
    const first = await svc.post(yes);
    const second = await svc.post(yes);
    expect(smsActions(first.actions)).toHaveLength(1);
    expect(second.status).toBe(204);
    expect(svc.fake.requests).toHaveLength(2); // start_sms_flow + record_consent; none for the duplicate
    expect(svc.memoryLedger.records.filter((x) => x.callId === id && x.kind === "sms_approved")).toHaveLength(1);
  });
  it("concurrent redelivery is serialized per call and still sends once", async () => {
    const id = "dup-concurrent";
    await startSmsFlow(id);
    svc.fake.onRequest(() => reply.tool("record_consent", { consented: true }));
    const yes = ev.speak(id, "Ja.");
    const results = await Promise.all([svc.post(yes), svc.post(yes), svc.post(yes)]);
    expect(results.flatMap((r) => smsActions(r.actions))).toHaveLength(1);
  });
  it("the same words in a later turn are not a duplicate", async () => {
    const id = "dup-later";
    await svc.post(ev.start(id));
    svc.fake.enqueue(reply.text("Montag bis Freitag von 8 bis 12 Uhr."), reply.text("Gern noch einmal: Montag bis Freitag von 8 bis 12 Uhr."));
    const q = ev.speak(id, "Wann haben Sie geöffnet?");
    await svc.post(q);
    await svc.post(ev.speechEnded(id));
    const again = await svc.post(q);
    expect(spoken(again.actions)).toEqual(["Gern noch einmal: Montag bis Freitag von 8 bis 12 Uhr."]);
  });
});

describe("keypad entry, silence, returning caller, expiry", () => {
  it("a number keyed in by DTMF and ended with # is read back for consent; repeated digits all count", async () => {
    const id = "dtmf-entry";
    await startSmsFlow(id, LANDLINE);
    for (const d of "0170123455") expect((await svc.post(ev.dtmf(id, d))).status).toBe(204);
    expect((await svc.post(ev.dtmf(id, "5"))).status).toBe(204);
    const done = await svc.post(ev.dtmf(id, "#"));
    expect(spoken(done.actions)[0]).toMatch(/0 1 7 0, 1 2 3, 4 5, 5 5 schicken/);
    expect(svc.fake.requests).toHaveLength(1); // only the start_sms_flow request
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
    const yes = await svc.post(ev.speak(id, "Ja", false, { from: LANDLINE }));
    expect(smsActions(yes.actions)).toEqual([expect.objectContaining({ phone_number: "491701234555" })]);
  });
  it("* clears a keyed entry; DTMF outside number entry is ignored", async () => {
    const id = "dtmf-clear";
    await svc.post(ev.start(id));
    expect((await svc.post(ev.dtmf(id, "5"))).status).toBe(204);
    await startSmsFlow(id, LANDLINE);
    for (const d of "999*0170123456") await svc.post(ev.dtmf(id, d));
    await svc.post(ev.dtmf(id, "7"));
    const done = await svc.post(ev.dtmf(id, "#"));
    expect(spoken(done.actions)[0]).toMatch(/0 1 7 0, 1 2 3, 4 5, 6 7/);
  });
  it("silence: re-prompts, then says goodbye and hangs up after the goodbye was played", async () => {
    const id = "silence";
    await svc.post(ev.start(id));
    const t1 = await svc.post(ev.timeout(id));
    expect(spoken(t1.actions)[0]).toMatch(/^Sind Sie noch da\? Guten Tag/);
    await svc.post(ev.timeout(id));
    const t3 = await svc.post(ev.timeout(id));
    expect(t3.actions).toHaveLength(1);
    expect(t3.actions[0]).toMatchObject({ type: "speak" });
    expect(t3.actions[0]).not.toHaveProperty("user_input_timeout_seconds");
    expect(spoken(t3.actions)[0]).toMatch(/Auf Wiederhören/);
    const ended = await svc.post(ev.speechEnded(id));
    expect(ended.actions).toEqual([{ type: "hangup", session_id: id }]);
  });
  it("a caller turn resets the silence count", async () => {
    const id = "silence-reset";
    await svc.post(ev.start(id));
    await svc.post(ev.timeout(id));
    await svc.post(ev.timeout(id));
    await svc.post(ev.speak(id, "Ja, ich bin da."));
    const t = await svc.post(ev.timeout(id));
    expect(spoken(t.actions)[0]).toMatch(/^Sind Sie noch da/);
  });
  it("end_call says goodbye, then hangs up", async () => {
    const id = "end-call";
    await svc.post(ev.start(id));
    svc.fake.enqueue(reply.tool("end_call", {}, "Gern geschehen."));
    const r = await svc.post(ev.speak(id, "Danke, das war's."));
    expect(spoken(r.actions)).toEqual(["Gern geschehen.", "Vielen Dank für Ihren Anruf. Auf Wiederhören!"]);
    expect((await svc.post(ev.speechEnded(id))).actions).toEqual([{ type: "hangup", session_id: id }]);
  });
  it("a repeated session_start (failed transfer) resumes the call instead of resetting it", async () => {
    const id = "resume";
    await startSmsFlow(id);
    const r = await svc.post(ev.start(id));
    expect(spoken(r.actions)).toEqual(["Da sind Sie wieder. Wie kann ich Ihnen weiterhelfen?"]);
    const s = (await svc.store.get(id))!;
    expect(s.step).toBe("confirm_consent");
    expect(s.turn).toBe(1);
  });
  it("calls expire by TTL when session_end never comes", async () => {
    const id = "ttl";
    await svc.post(ev.start(id));
    expect(await svc.store.get(id)).toBeDefined();
    svc.clock.advance(3601 * 1000);
    expect(await svc.store.get(id)).toBeUndefined();
  });
});
