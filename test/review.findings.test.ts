import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { TurnRecord } from "../src/core/turnRecord.js";
import { reply } from "./support/fakeOpenAI.js";
import { ev } from "./support/events.js";
import { engineTurn, smsActions, spoken, startTestService, testConfig, type TestService } from "./support/harness.js";

/**
 * Findings of an adversarial review, kept as regression tests: each describes what must
 * happen, and failed on the code before its fix. Most severe first.
 */

let svc: TestService;
beforeAll(async () => {
  svc = await startTestService({ config: testConfig({ tasks: { sms: { recipients: { perRecipient: { max: 1000, windowSeconds: 60 } } } } }) });
});
afterAll(async () => svc.close());
beforeEach(() => svc.fake.reset());

const OTHER_MOBILE = "491701234567";

const turn = (event: unknown): Promise<TurnRecord> => engineTurn(svc, event);

/** Greeting, then start_sms_flow: the consent question for the caller's own number has been asked. */
async function inConsentStep(id: string) {
  await svc.post(ev.start(id));
  svc.fake.enqueue(reply.tool("start_sms_flow", { info: "opening_hours" }));
  const r = await svc.post(ev.speak(id, "Per SMS bitte."));
  expect(spoken(r.actions)[0]).toMatch(/^Darf ich Ihnen/);
  svc.fake.reset();
}

/** A call in which one SMS to the caller's own number went out. */
async function sentCall(id: string) {
  await inConsentStep(id);
  svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
  const r = await svc.post(ev.speak(id, "Ja."));
  expect(smsActions(r.actions)).toHaveLength(1);
  svc.fake.reset();
}

const ledgerKinds = (id: string) => svc.memoryLedger.records.filter((r) => r.callId === id).map((r) => r.kind);

describe("F1 [high] retry after sms_failed needs the caller's yes to a new consent question", () => {
  it("a caller who says no to the retry gets no SMS, whatever the model calls", async () => {
    const id = "rv-retry-refused";
    await sentCall(id);
    const offer = await svc.post(ev.smsFailed(id, "smsc_unavailable"));
    expect(spoken(offer.actions)).toEqual([expect.stringMatching(/nicht verschickt werden\.$/), expect.stringMatching(/^Darf ich Ihnen/)]);
    // Misbehaving model: ignores the "no" and re-sends. The old consent ("Ja." two turns ago) is reused.
    svc.fake.enqueue(reply.tool("send_confirmation_sms"));
    const r = await turn(ev.speak(id, "Nein, bitte nicht noch einmal."));
    expect(smsActions(r.actions)).toHaveLength(0);
  });
});

describe("F2 [high] a decline is final even when the ledger cannot write it", () => {
  it("'Nein' during a ledger outage is not lost: no re-ask, no SMS afterwards", async () => {
    const id = "rv-decline-ledger-down";
    await inConsentStep(id);
    svc.memoryLedger.failWrites = true;
    try {
      svc.fake.enqueue(reply.tool("record_consent", { consented: false }), reply.text("Entschuldigung, da ist etwas schiefgelaufen."));
      await svc.post(ev.speak(id, "Nein, keine SMS."));
    } finally {
      svc.memoryLedger.failWrites = false;
    }
    expect((await svc.store.get(id))!.sms.declined).toBe(true);

    // The ledger is back. A model that pushes on asks the question again and, on a "Ja", sends.
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
    const again = await turn(ev.speak(id, "Wie bitte?"));
    expect(spoken(again.actions).some((t) => /^Darf ich Ihnen/.test(t))).toBe(false);
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
    const yes = await turn(ev.speak(id, "Ja."));
    expect(smsActions(yes.actions)).toHaveLength(0);
  });
});

describe("F3 [medium-high] an empty transcript is not an answer to the consent question", () => {
  it("record_consent(true) on a user_speak with empty text does not count and sends nothing", async () => {
    const id = "rv-empty-answer";
    await inConsentStep(id);
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
    const r = await turn(ev.speak(id, ""));
    expect(smsActions(r.actions)).toHaveLength(0);
    expect(svc.memoryLedger.records.filter((x) => x.callId === id && x.kind === "consent_given")).toEqual([]);
  });
});

describe("F4 [medium] the false-claim check is bypassed by any negation word in the sentence", () => {
  it("'Kein Problem, ich habe Ihnen die SMS geschickt.' before any SMS is refused", async () => {
    const id = "rv-claim-kein";
    await svc.post(ev.start(id));
    svc.fake.enqueue(reply.text("Kein Problem, ich habe Ihnen die SMS geschickt."), reply.text("Möchten Sie die Informationen per SMS?"));
    const t = await turn(ev.speak(id, "Schicken Sie mir die Adresse."));
    expect(spoken(t.actions)).not.toContain("Kein Problem, ich habe Ihnen die SMS geschickt.");
    expect(t.guardDecisions).toContainEqual(expect.objectContaining({ reason: "false_claim_sent" }));
  });

  it("'Keine Sorge, die SMS ist bei Ihnen angekommen.' after a send is refused (delivery is never known)", async () => {
    const id = "rv-claim-keine-sorge";
    await sentCall(id);
    svc.fake.enqueue(reply.text("Keine Sorge, die SMS ist bei Ihnen angekommen."), reply.text("Ich habe sie abgeschickt; ob sie angekommen ist, sehe ich nicht."));
    const t = await turn(ev.speak(id, "Ist die SMS angekommen?"));
    expect(t.guardDecisions).toContainEqual(expect.objectContaining({ reason: "false_claim_delivered" }));
  });

  it("a claim in another language than the configured one is still checked", async () => {
    const id = "rv-claim-english";
    await svc.post(ev.start(id));
    svc.fake.enqueue(reply.text("I have sent you the text message."), reply.text("Möchten Sie die Informationen per SMS?"));
    const t = await turn(ev.speak(id, "Can you text me the address?"));
    expect(t.guardDecisions).toContainEqual(expect.objectContaining({ reason: "false_claim_sent" }));
  });
});

describe("F5 [medium] after a failed SMS the agent must not claim one was already sent", () => {
  it("a restarted flow after insufficient_balance is refused up front, never with 'bereits eine SMS geschickt'", async () => {
    const id = "rv-limit-after-failure";
    await sentCall(id);
    await svc.post(ev.smsFailed(id, "insufficient_balance"));
    // start_sms_flow counts only non-failed sends, so it lets the caller through the consent question ...
    svc.fake.enqueue(reply.tool("start_sms_flow", { info: "address" }));
    const restart = await svc.post(ev.speak(id, "Versuchen Sie es bitte nochmal per SMS."));
    // ... and the gate (which counts every send) then refuses with a line saying an SMS was sent.
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
    const yes = await svc.post(ev.speak(id, "Ja."));
    const all = [...spoken(restart.actions), ...spoken(yes.actions)];
    expect(all.filter((t) => /^Darf ich Ihnen/.test(t))).toEqual([]); // no pointless consent question
    expect(all.filter((t) => /bereits eine SMS geschickt/.test(t))).toEqual([]); // false: it failed
  });
});

describe("F6 [medium] sms_failed that matches no SMS still in flight must not announce a failure", () => {
  it("an sms_failed for a recipient this call never texted: the caller is not told 'auch diesmal nicht verschickt'", async () => {
    const id = "rv-failed-unknown-recipient";
    await sentCall(id);
    const r = await svc.post(ev.smsFailed(id, "smsc_unavailable", OTHER_MOBILE));
    expect(spoken(r.actions).filter((t) => /nicht verschickt/.test(t))).toEqual([]);
    expect((await svc.store.get(id))!.sms.sent[0]!.failed).toBeUndefined();
  });

  it("an sms_failed redelivered after an interleaved assistant_speak is recognised, not a second failure", async () => {
    const id = "rv-failed-redelivered";
    await sentCall(id);
    const failed = ev.smsFailed(id, "smsc_unavailable");
    const offer = await svc.post(failed);
    expect(spoken(offer.actions)[1]).toMatch(/^Darf ich Ihnen/);
    await svc.post(ev.assistantSpeak(id, spoken(offer.actions)[1]!));
    const dup = await svc.post(failed);
    // No retry was made, so "auch diesmal" is false; and the ledger gets the failure twice.
    expect(spoken(dup.actions).filter((t) => /auch diesmal/.test(t))).toEqual([]);
    expect(ledgerKinds(id).filter((k) => k === "sms_failed")).toHaveLength(1);
  });
});

describe("F6b [medium] with retries disabled, the first failure is not announced as a repeated one", () => {
  it("retryTransientFailures: false → no 'auch diesmal' on the first and only failure", async () => {
    const noRetry = await startTestService({ config: testConfig({ tasks: { sms: { retryTransientFailures: false, recipients: { perRecipient: { max: 1000, windowSeconds: 60 } } } } }) });
    try {
      const id = "rv-failed-no-retry";
      await noRetry.post(ev.start(id));
      noRetry.fake.enqueue(reply.tool("start_sms_flow", { info: "address" }));
      await noRetry.post(ev.speak(id, "Per SMS bitte."));
      noRetry.fake.enqueue(reply.tool("record_consent", { consented: true }));
      expect(smsActions((await noRetry.post(ev.speak(id, "Ja."))).actions)).toHaveLength(1);
      const r = await noRetry.post(ev.smsFailed(id, "smsc_unavailable"));
      expect(spoken(r.actions).filter((t) => /auch diesmal/.test(t))).toEqual([]);
    } finally {
      await noRetry.close();
    }
  });
});

describe("F7 [medium] sms_failed after the goodbye is still recorded", () => {
  it("the failure reaches the ledger (and sent[] is marked) even though the call is hanging up", async () => {
    const id = "rv-failed-after-goodbye";
    await sentCall(id);
    svc.fake.enqueue(reply.tool("end_call"));
    const bye = await svc.post(ev.speak(id, "Danke, tschüss."));
    expect(spoken(bye.actions).at(-1)).toMatch(/Auf Wiederhören/);
    // SMS failures arrive seconds after the send: typically right after the goodbye.
    const r = await svc.post(ev.smsFailed(id, "insufficient_balance"));
    expect(r.actions).toEqual([{ type: "hangup", session_id: id }]);
    expect(ledgerKinds(id)).toContain("sms_failed");
    expect((await svc.store.get(id))!.sms.sent[0]!.failed).toBe("insufficient_balance");
  });
});

describe("F8 [low] consent after a silence re-prompt is recorded with the question actually spoken", () => {
  it("the ledger's question is the line the caller answered", async () => {
    const id = "rv-timeout-ledger-question";
    await inConsentStep(id);
    const reprompt = await svc.post(ev.timeout(id));
    expect(spoken(reprompt.actions)[0]).toBe("Sind Sie noch da?");
    const heard = spoken(reprompt.actions).at(-1)!;
    expect(heard).toMatch(/^Darf ich Ihnen/);
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
    const yes = await svc.post(ev.speak(id, "Ja."));
    expect(smsActions(yes.actions)).toHaveLength(1);
    const sent = svc.memoryLedger.records.find((r) => r.callId === id && r.kind === "sms_approved")!;
    // Invariant 6: "the exact question spoken". What was spoken last was "Sind Sie noch da? Darf ich …",
    // and the caller's "Ja" may well answer "Sind Sie noch da?".
    expect(sent.question).toBe(heard);
  });
});

describe("F9 [low] keypad digits left over from an earlier step corrupt a later keyed number", () => {
  it("a '1' pressed during the consent question is not prepended to the number keyed in later", async () => {
    const id = "rv-dtmf-stale";
    await inConsentStep(id);
    await svc.post(ev.dtmf(id, "1")); // "press 1 for yes" habit; silently buffered
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
    expect(smsActions((await svc.post(ev.speak(id, "Ja."))).actions)).toHaveLength(1);
    await svc.post(ev.smsFailed(id, "smsc_unavailable")); // → sms_retry, a number step
    for (const d of "01701234567") await svc.post(ev.dtmf(id, d));
    const done = await svc.post(ev.dtmf(id, "#"));
    expect(spoken(done.actions)[0]).toMatch(/0 1 7 0, 1 2 3, 4 5, 6 7 schicken/);
    expect((await svc.store.get(id))!.sms.number).toBe(OTHER_MOBILE);
  });
});

