import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { reply } from "./support/fakeOpenAI.js";
import { ev } from "./support/events.js";
import { smsActions, spoken, startTestService, testConfig, type TestService } from "./support/harness.js";
import { ledgerKinds, postPending, until } from "./support/deadline.js";

/**
 * Review of issue 17 (rule 1) after a session restart. session_end's commit clears the state and
 * the outbox but keeps the store's heard/barged marks (and `ended`). An explicit session_start
 * with the same id starts a new conversation (callPipeline: "an explicit session_start does"),
 * whose CallState.spoken counts from 0 again, while the store's heard mark is still the old call's.
 * spokenBeforeTurn = min(state.spoken, heard) then equals state.spoken: the "heard, not produced"
 * rule is off for the restarted call, and a yes over the holding line counts for a question the
 * caller never heard.
 */

const HOLDING = "Einen Moment bitte.";
const QUESTION = /^Darf ich Ihnen die Informationen per SMS/;

let svc: TestService;
beforeAll(async () => {
  svc = await startTestService({ config: testConfig({ server: { leaseMs: 300 }, tasks: { sms: { recipients: { perRecipient: { max: 1000, windowSeconds: 60 } } } } }) });
});
afterAll(async () => svc.close());
beforeEach(() => svc.fake.reset());

describe("review17: heard mark after a session restart", () => {
  it("after session_end and a new session_start with the same id, a 'Ja' over the holding line gets the question, not a send", async () => {
    const id = "r17-restart";
    // The first conversation: a few lines heard, then the call ends.
    await svc.post(ev.start(id));
    svc.fake.enqueue(reply.text("Wir haben Montag bis Freitag geöffnet."), reply.text("Gern geschehen."));
    await svc.post(ev.speak(id, "Wann haben Sie geöffnet?"));
    await svc.post(ev.speak(id, "Danke."));
    await svc.post(ev.end(id));
    await until(async () => (await svc.store.get(id)) === undefined, "the first conversation ended");
    // The same session id starts again.
    const greet = await svc.post(ev.start(id));
    expect(spoken(greet.actions)).toHaveLength(1);
    svc.fake.reset();
    svc.fake.enqueue(reply.tool("start_sms_flow", { info: "address" }), reply.tool("record_consent", { consented: true }));
    const gate = svc.fake.block();
    const slow = svc.post(ev.speak(id, "Schicken Sie mir die Adresse per SMS?"));
    await gate.arrived;
    await until(async () => svc.deadlineClock.pending > 0, "the deadline armed");
    svc.deadlineClock.advance(800);
    expect(spoken((await slow).actions)).toEqual([HOLDING]);
    // The caller heard only "Einen Moment bitte." and says yes.
    const { answer } = await postPending(svc, ev.speak(id, "Ja, gerne."));
    gate.release();
    const r = await answer;
    // What must happen (as in heard.consent.test.ts §1): the question, once, and no send.
    expect(spoken(r.actions)).toEqual([expect.stringMatching(QUESTION)]);
    expect(smsActions(r.actions)).toEqual([]);
    expect(ledgerKinds(svc, id).slice(-3)).not.toContain("consent_given");
  });
});
