import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { reply } from "./support/fakeOpenAI.js";
import { CALLER, ev } from "./support/events.js";
import { smsActions, spoken, startTestService, testConfig, type TestService } from "./support/harness.js";
import { atConsentQuestion, ledgerKinds, postPending, until, slowTurn } from "./support/deadline.js";
import { MemoryCallStore } from "../src/store/memoryCallStore.js";
import type { SmsSlice } from "../src/tasks/sms/state.js";
import type { AiFlowAction } from "../src/aiflow/actions.js";
import type { Arriving, CommitRequest, LeaseTake, NextEvent } from "../src/store/callStore.js";

/**
 * Consent follows what the caller heard (issue 17): the four defects that broke "every SMS was
 * wanted", each replayed through the real webhook with a model exactly as slow as the test says
 * (the fake blocks until released) and the answer deadline on a manual clock. Each failed before
 * its fix. Expectations come from what the caller said and heard, never from our state alone.
 */

const HOLDING = "Einen Moment bitte.";
const GAVE_UP = /^Entschuldigung, das dauert gerade zu lange/;
const QUESTION = /^Darf ich Ihnen die Informationen per SMS/;
const SENT = /unterwegs|verschickt|geschickt/;

let svc: TestService;
beforeAll(async () => {
  svc = await startTestService({ config: testConfig({ server: { leaseMs: 300 }, tasks: { sms: { recipients: { perRecipient: { max: 1000, windowSeconds: 60 } } } } }) });
});
afterAll(async () => svc.close());
beforeEach(() => svc.fake.reset());

const processed = async (id: string, n: number) => until(async () => (await svc.store.progress(id)).processed >= n, `event ${n} processed`);

describe("1. a yes counts only for a question that reached the caller", () => {
  it("the question's turn is slow; 'Ja, gerne.' over the holding line gets the question, no send; the next yes sends", async () => {
    const id = "heard-slow-question";
    await svc.post(ev.start(id));
    // The model asks for the SMS slowly; an eager model then takes the caller's "Ja" as consent.
    svc.fake.enqueue(reply.tool("start_sms_flow", { info: "address" }), reply.tool("record_consent", { consented: true }), reply.tool("record_consent", { consented: true }));
    const gate = await slowTurn(svc, ev.speak(id, "Schicken Sie mir die Adresse per SMS?"));
    // The caller heard only "Einen Moment bitte." and says yes (not a barge-in).
    const { answer } = await postPending(svc, ev.speak(id, "Ja, gerne."));
    gate.release();
    const r = await answer;
    // They hear the question, once, and nothing after it: no send, no "sent" line.
    expect(spoken(r.actions)).toEqual([expect.stringMatching(QUESTION)]);
    expect(smsActions(r.actions)).toEqual([]);
    expect(ledgerKinds(svc, id)).not.toContain("consent_given");
    const state = (await svc.store.get(id))!;
    expect(state.sms.consent?.answer).toBeUndefined();

    // Their reply to the question they now heard decides.
    const yes = await svc.post(ev.speak(id, "Ja."));
    expect(smsActions(yes.actions)).toEqual([expect.objectContaining({ phone_number: CALLER })]);
    const given = svc.memoryLedger.records.find((x) => x.callId === id && x.kind === "consent_given")!;
    expect(given.reply).toBe("Ja.");
  });

  it("a 'no' before the question arrived still counts: the caller hears the question, then the decline, and nothing is sent later", async () => {
    const id = "heard-no-before-question";
    await svc.post(ev.start(id));
    svc.fake.enqueue(reply.tool("start_sms_flow", { info: "address" }), reply.tool("record_consent", { consented: false }), reply.tool("record_consent", { consented: true }));
    const gate = await slowTurn(svc, ev.speak(id, "Die Adresse per SMS."));
    const { answer } = await postPending(svc, ev.speak(id, "Nein, doch nicht."));
    gate.release();
    const r = await answer;
    expect(smsActions(r.actions)).toEqual([]);
    expect((await svc.store.get(id))!.sms.declined).toBe(true);
    const later = await svc.post(ev.speak(id, "Ja."));
    expect(smsActions(later.actions)).toEqual([]);
    expect(spoken(later.actions).some((t) => QUESTION.test(t))).toBe(false);
  });
});

describe("2. a 'no' that an answer gave up on is never lost", () => {
  it("(a) the 'no' is still running when the caller hears the apology and the lease is renewed: the decline holds", async () => {
    const id = "heard-no-given-up";
    await atConsentQuestion(svc, id);
    svc.fake.reset();
    svc.fake.enqueue(reply.tool("record_consent", { consented: false }), reply.tool("record_consent", { consented: true }));
    const gate = await slowTurn(svc, ev.speak(id, "Nein, lieber nicht."));
    const second = svc.post(ev.timeout(id));
    await until(async () => svc.deadlineClock.pending > 0);
    svc.deadlineClock.advance(800);
    expect(spoken((await second).actions)).toEqual([HOLDING]);
    const third = svc.post(ev.timeout(id));
    await until(async () => svc.deadlineClock.pending > 0);
    svc.deadlineClock.advance(800);
    expect(spoken((await third).actions)).toEqual([expect.stringMatching(GAVE_UP)]);
    // Several lease renewals (every 100 ms) pass while the "no" is still with the model.
    await new Promise((r) => setTimeout(r, 350));
    gate.release();
    await until(async () => (await svc.store.get(id))?.sms.declined === true, "the decline committed");
    expect(ledgerKinds(svc, id)).toContain("consent_declined");
    // The caller says yes afterwards: no question again, no SMS.
    const yes = await svc.post(ev.speak(id, "Ja."));
    expect(smsActions(yes.actions)).toEqual([]);
  });

  it("(b) a 'no' queued behind a slow 'yes' that was given up on runs, and no SMS leaves", async () => {
    const id = "heard-no-behind-yes";
    await atConsentQuestion(svc, id);
    svc.fake.reset();
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }), reply.tool("record_consent", { consented: false }));
    const gate = await slowTurn(svc, ev.speak(id, "Ja."));
    // The caller changes their mind over the holding line.
    const no = await postPending(svc, ev.speak(id, "Nein, doch nicht!"));
    svc.deadlineClock.advance(800);
    const noAnswer = await no.answer;
    expect(spoken(noAnswer.actions)).toEqual([HOLDING]);
    const t = svc.post(ev.timeout(id));
    await until(async () => svc.deadlineClock.pending > 0);
    svc.deadlineClock.advance(800);
    expect(spoken((await t).actions)).toEqual([expect.stringMatching(GAVE_UP)]);
    gate.release();
    await processed(id, 4);
    // Both turns ran: the "no" was evaluated, not skipped.
    expect(svc.fake.requests.length).toBe(2);
    expect((await svc.store.get(id))!.sms.declined).toBe(true);
    const after = await svc.post(ev.speechEnded(id));
    expect(smsActions(after.actions)).toEqual([]);
    // Whatever the ledger says was approved, it also says was not sent: nothing left.
    const records = svc.memoryLedger.records.filter((r) => r.callId === id);
    const notSent = new Set(records.filter((r) => r.kind === "sms_not_sent").map((r) => r.ref));
    expect(records.filter((r) => r.kind === "sms_approved" && !notSent.has(r.id))).toEqual([]);
    expect(records.filter((r) => r.kind === "sms_handed_over")).toEqual([]);
    expect(ledgerKinds(svc, id)).toContain("consent_declined");
  });
});

describe("3. the caller's words come before an older send leaves", () => {
  it("'Nein, doch nicht!' over the slow yes's holding line: the send is withdrawn, the caller hears the decline, never 'sent'", async () => {
    const id = "heard-no-overtakes-send";
    await atConsentQuestion(svc, id);
    svc.fake.reset();
    // The yes's turn takes long; the "no" is evaluated in the consent step (record_consent(false)).
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }), reply.tool("record_consent", { consented: false }));
    const gate = await slowTurn(svc, ev.speak(id, "Ja, gerne."));
    const { answer } = await postPending(svc, ev.speak(id, "Nein, doch nicht!"));
    gate.release();
    const r = await answer;
    const heard = [...r.actions, ...(await svc.post(ev.speechEnded(id))).actions];
    expect(smsActions(heard)).toEqual([]);
    expect(spoken(heard).some((t) => SENT.test(t) && !/keine|nicht/.test(t))).toBe(false);
    expect(spoken(heard).some((t) => /keine SMS|nicht/.test(t))).toBe(true);
    // The model judged the "no" with the consent step's tools.
    expect(svc.fake.requests[1]!.tools?.map((t) => t.function.name)).toContain("record_consent");
    const kinds = ledgerKinds(svc, id);
    expect(kinds).toEqual(expect.arrayContaining(["consent_given", "sms_approved", "consent_declined", "sms_not_sent"]));
    const approval = svc.memoryLedger.records.find((r) => r.callId === id && r.kind === "sms_approved")!;
    expect(svc.memoryLedger.records.filter((r) => r.ref === approval.id)).toEqual([expect.objectContaining({ kind: "sms_not_sent", reason: "withdrawn_by_no" })]);
    const state = (await svc.store.get(id))!;
    expect(state.sms.sent).toEqual([]);
    expect(state.sms.result?.value.status).toBe("declined");
    expect(state.step).toBe("main");
  });

  it("words over the holding line that are no 'no': the send leaves once with that answer, and the call goes on where it was", async () => {
    const id = "heard-thanks-overtakes-send";
    await atConsentQuestion(svc, id);
    svc.fake.reset();
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }), reply.tool("record_consent", { consented: true }));
    const gate = await slowTurn(svc, ev.speak(id, "Ja, gerne."));
    const { answer } = await postPending(svc, ev.speak(id, "Danke schön."));
    gate.release();
    const r = await answer;
    const all: AiFlowAction[] = [...r.actions, ...(await svc.post(ev.speechEnded(id))).actions];
    expect(smsActions(all)).toEqual([expect.objectContaining({ phone_number: CALLER })]);
    // The send comes before its announcement, nothing is asked again, no apology.
    expect(all.findIndex((a) => a.type === "send_sms")).toBeLessThan(all.findIndex((a) => a.type === "speak" && SENT.test(a.text ?? "")));
    expect(spoken(all).some((t) => QUESTION.test(t) || /Entschuldigung/.test(t))).toBe(false);
    expect(ledgerKinds(svc, id).filter((k) => k === "sms_not_sent")).toEqual([]);
    await until(() => ledgerKinds(svc, id).includes("sms_handed_over"));
    const state = (await svc.store.get(id))!;
    expect(state.step).toBe("main");
    expect(state.sms.recheck).toBeUndefined();
    expect(state.sms.sent).toHaveLength(1);
  });
});

describe("4. lease losses of a live instance are no attempts; a never-evaluated event counts as a no", () => {
  it("the 'no' whose turn loses its lease four times is still evaluated (not skipped as a poison event)", async () => {
    let drops = 4;
    const inner = new MemoryCallStore<SmsSlice>();
    // A store whose lease renewals are lost (another holder took it, say) the first times asked.
    const store = Object.assign(Object.create(inner) as MemoryCallStore<SmsSlice>, {
      async renewLease(callId: string, token: string, ttlMs: number) {
        if (drops > 0) {
          drops--;
          await inner.releaseLease(callId, token);
          return { held: false, droppedThrough: 0 };
        }
        return inner.renewLease(callId, token, ttlMs);
      },
    });
    const local = await startTestService({ config: testConfig({ server: { leaseMs: 300 } }), store });
    try {
      const id = "heard-lease-losses";
      drops = 0;
      await atConsentQuestion(local, id);
      local.fake.reset();
      for (let i = 0; i < 6; i++) local.fake.enqueue({ kind: "message", toolCalls: [{ name: "record_consent", arguments: { consented: false } }], delayMs: 250 });
      drops = 4;
      const r = await local.post(ev.speak(id, "Nein."));
      expect(drops).toBe(0);
      expect((await local.store.get(id))!.sms.declined).toBe(true);
      expect(smsActions(r.actions)).toEqual([]);
    } finally {
      await local.close();
    }
  });

  it("a 'no' skipped by the attempt limit withdraws the pending send and ends the offer", async () => {
    const inner = new MemoryCallStore<SmsSlice>();
    let poisoned: number | undefined;
    // As if the "no" had crashed three instances before: its attempts are past the limit.
    // Every way the worker is handed an event: nextEvent, an idle call's arrival, a commit that goes on.
    const poison = (n: NextEvent | undefined) => {
      if (n?.event && n.event.seq === poisoned) n.event.attempts = 4;
    };
    const store = Object.assign(Object.create(inner) as MemoryCallStore<SmsSlice>, {
      async nextEvent(callId: string, token: string) {
        const n = await inner.nextEvent(callId, token);
        poison(n);
        return n;
      },
      async arriveAndTake(callId: string, e: Arriving, lease: LeaseTake) {
        const a = await inner.arriveAndTake(callId, e, lease);
        poison(a.taken);
        return a;
      },
      async commitAndNext(callId: string, token: string, c: CommitRequest<SmsSlice>) {
        const t = await inner.commitAndNext(callId, token, c);
        poison(t.next);
        return t;
      },
    });
    const local = await startTestService({ config: testConfig({ server: { leaseMs: 300 } }), store });
    try {
      const id = "heard-unevaluated";
      await atConsentQuestion(local, id);
      local.fake.reset();
      local.fake.enqueue(reply.tool("record_consent", { consented: true }));
      const gate = local.fake.block();
      const yes = local.post(ev.speak(id, "Ja."));
      await gate.arrived;
      await until(async () => local.deadlineClock.pending > 0);
      local.deadlineClock.advance(800);
      expect(spoken((await yes).actions)).toEqual([HOLDING]);
      poisoned = 4;
      const { answer } = await postPending(local, ev.speak(id, "Nein, stopp!"), local.deadlineClock);
      gate.release();
      const r = await answer;
      const later = await local.post(ev.speechEnded(id));
      expect(smsActions([...r.actions, ...later.actions])).toEqual([]);
      const kinds = local.memoryLedger.records.filter((x) => x.callId === id).map((x) => x.kind);
      expect(kinds).toEqual(expect.arrayContaining(["sms_approved", "consent_declined", "sms_not_sent"]));
      const approval = local.memoryLedger.records.find((r) => r.callId === id && r.kind === "sms_approved")!;
      expect(local.memoryLedger.records.filter((r) => r.ref === approval.id)).toEqual([expect.objectContaining({ kind: "sms_not_sent", reason: "withdrawn_by_no" })]);
      const state = (await local.store.get(id))!;
      expect(state.sms.declined).toBe(true);
      expect(state.sms.sent).toEqual([]);
      // No model request for the skipped event.
      expect(local.fake.requests).toHaveLength(1);
    } finally {
      await local.close();
    }
  });
});
