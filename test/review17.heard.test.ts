import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { reply } from "./support/fakeOpenAI.js";
import { ev } from "./support/events.js";
import { smsActions, spoken, startTestService, testConfig, type TestService } from "./support/harness.js";
import { ledgerKinds, postPending, until, slowTurn } from "./support/deadline.js";

/**
 * Review of issue 17 (rule 1, "heard, not produced"): the store's heard mark must only move past a
 * line once that line reached the caller. A turn with nothing to deliver (assistant_speak's
 * bookkeeping turn, a quiet `nothingToSay` turn) moves the mark to its own spokenThrough at commit,
 * although an earlier turn's lines (the consent question) are still waiting undelivered in the
 * outbox. A "Ja" said by a caller who heard only the holding line then counts as consent.
 */

const HOLDING = "Einen Moment bitte.";
const QUESTION = /^Darf ich Ihnen die Informationen per SMS/;

let svc: TestService;
beforeAll(async () => {
  svc = await startTestService({ config: testConfig({ server: { leaseMs: 300 }, tasks: { sms: { recipients: { perRecipient: { max: 1000, windowSeconds: 60 } } } } }) });
});
afterAll(async () => svc.close());
beforeEach(() => svc.fake.reset());


const processed = async (id: string, n: number) => until(async () => (await svc.store.progress(id)).processed >= n, `event ${n} processed`);

describe("review17: the heard mark moves past an undelivered consent question", () => {
  it("assistant_speak of the holding line commits silently while the question waits in the outbox: a later 'Ja' must not count", async () => {
    const id = "r17-heard-assistant-speak";
    await svc.post(ev.start(id)); // seq 1
    svc.fake.enqueue(reply.tool("start_sms_flow", { info: "address" }), reply.tool("record_consent", { consented: true }));
    // seq 2: the question's turn is slow; the caller hears the holding line.
    const gate = await slowTurn(svc, ev.speak(id, "Schicken Sie mir die Adresse per SMS?"));
    // seq 3: sipgate reports it started speaking the holding line (a queued, non-collecting event).
    const { answer: speakAnswer } = await postPending(svc, ev.assistantSpeak(id, HOLDING));
    svc.deadlineClock.advance(800);
    expect((await speakAnswer).actions).toEqual([]);
    gate.release();
    await processed(id, 3);
    // The question is committed, but no answer has carried it yet: the caller has heard only "Einen Moment bitte.".
    expect((await svc.store.progress(id)).ready.http).toBeGreaterThan(0);
    // seq 4: the caller, still having heard only the holding line, says yes.
    const r = await svc.post(ev.speak(id, "Ja, gerne."));
    // What must happen: the reply predates the question reaching the caller, so it is no answer to it.
    // The caller hears the question now, and no SMS leaves; their next reply decides.
    expect(spoken(r.actions)).toEqual([expect.stringMatching(QUESTION)]);
    expect(smsActions(r.actions)).toEqual([]);
    expect(ledgerKinds(svc, id)).not.toContain("consent_given");
  });

  it("a quiet 'not heard' turn (nothingToSay) moves the mark although the question is still undelivered: the next 'Ja' must not count", async () => {
    const id = "r17-heard-quiet-turn";
    await svc.post(ev.start(id)); // seq 1
    svc.fake.enqueue(reply.tool("start_sms_flow", { info: "address" }), reply.tool("record_consent", { consented: true }), reply.tool("record_consent", { consented: true }));
    const gate = await slowTurn(svc, ev.speak(id, "Die Adresse per SMS bitte.")); // seq 2, holding line 1
    // seq 3: "Ja" over the holding line; its own answer also passes the deadline (holding line 2).
    const { answer: a3 } = await postPending(svc, ev.speak(id, "Ja, gerne."));
    svc.deadlineClock.advance(800);
    expect(spoken((await a3).actions)).toEqual([HOLDING]);
    gate.release();
    await processed(id, 3);
    // Turn 3 saw the question was not heard (nothingToSay); the question itself is still in the outbox.
    expect((await svc.store.progress(id)).ready.http).toBeGreaterThan(0);
    expect(ledgerKinds(svc, id)).not.toContain("consent_given");
    // seq 4: the caller heard two holding lines, nothing else, and says "Ja?" again.
    const r = await svc.post(ev.speak(id, "Ja?"));
    // What must happen: still no consent (the question had not reached them when they spoke).
    expect(smsActions(r.actions)).toEqual([]);
    expect(ledgerKinds(svc, id)).not.toContain("consent_given");
  });
});
