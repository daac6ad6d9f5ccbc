import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { reply } from "./support/fakeOpenAI.js";
import { CALLER, ev } from "./support/events.js";
import { smsActions, spoken, startTestService, testConfig, type TestService } from "./support/harness.js";
import { postPending, until } from "./support/deadline.js";

/**
 * Review of issue 17 (rule 1 + "every event gets an answer"). A "Ja." that arrived before the
 * consent question reached the caller is answered with nothing of its own (nothingToSay): the
 * caller hears the question with that answer. When the caller then answers the question with the
 * same word ("Ja."), the body is byte-identical to the first one, so the engine's redelivery check
 * (same key within duplicateWindowSeconds) takes it for a redelivery and replays the first
 * answer: nothing. The caller's real answer to the question is swallowed and they hear silence.
 */

const HOLDING = "Einen Moment bitte.";
const QUESTION = /^Darf ich Ihnen die Informationen per SMS/;

let svc: TestService;
beforeAll(async () => {
  svc = await startTestService({ config: testConfig({ server: { leaseMs: 300 }, tasks: { sms: { recipients: { perRecipient: { max: 1000, windowSeconds: 60 } } } } }) });
});
afterAll(async () => svc.close());
beforeEach(() => svc.fake.reset());

describe("review17: a quiet 'not heard' turn followed by the same word", () => {
  it("'Ja.' over the holding line, then 'Ja.' to the question now heard: the second one is answered (no silence), and the question is put once more", async () => {
    const id = "r17-quiet-then-same-word";
    await svc.post(ev.start(id));
    svc.fake.enqueue(reply.tool("start_sms_flow", { info: "address" }), reply.tool("record_consent", { consented: true }), reply.tool("record_consent", { consented: true }), reply.tool("record_consent", { consented: true }));
    const gate = svc.fake.block();
    const first = svc.post(ev.speak(id, "Schicken Sie mir die Adresse per SMS?"));
    await gate.arrived;
    await until(async () => svc.deadlineClock.pending > 0, "the deadline armed");
    svc.deadlineClock.advance(800);
    expect(spoken((await first).actions)).toEqual([HOLDING]);
    const { answer } = await postPending(svc, ev.speak(id, "Ja."));
    gate.release();
    const r = await answer;
    // The caller hears the question now (their "Ja." came before it).
    expect(spoken(r.actions)).toEqual([expect.stringMatching(QUESTION)]);
    // They answer it: "Ja." again, a new utterance with the same body.
    const yes = await svc.post(ev.speak(id, "Ja."));
    // It is evaluated and answered (no silence). But byte for byte it is also what sipgate sends when
    // it redelivers the first "Ja." (the simulation found that after an instance died: seed 3017),
    // which the caller said before hearing the question: no yes rests on it, the question is put again.
    expect(yes.status).toBe(200);
    expect(spoken(yes.actions).at(-1)).toMatch(QUESTION);
    expect(smsActions(yes.actions)).toEqual([]);
    const third = await svc.post(ev.speak(id, "Ja, gerne."));
    expect(smsActions(third.actions)).toEqual([expect.objectContaining({ phone_number: CALLER })]);
  });
});
