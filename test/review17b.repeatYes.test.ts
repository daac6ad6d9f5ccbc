import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { reply } from "./support/fakeOpenAI.js";
import { CALLER, ev } from "./support/events.js";
import { smsActions, spoken, startTestService, testConfig, type TestService } from "./support/harness.js";
import { postPending, until } from "./support/deadline.js";

const HOLDING = "Einen Moment bitte.";
const QUESTION = /^Darf ich Ihnen die Informationen per SMS/;

let svc: TestService;
beforeAll(async () => {
  svc = await startTestService({ config: testConfig({ server: { leaseMs: 300 }, tasks: { sms: { recipients: { perRecipient: { max: 1000, windowSeconds: 60 } } } } }) });
});
afterAll(async () => svc.close());

describe("review17b: the same yes after a quiet turn", () => {
  it("a caller who keeps answering the re-asked question with the same words is eventually heard (no endless re-asks)", async () => {
    const id = "review17b-repeat-yes";
    await svc.post(ev.start(id));
    svc.fake.reset();
    svc.fake.enqueue(reply.tool("start_sms_flow", { info: "address" }), ...Array.from({ length: 6 }, () => reply.tool("record_consent", { consented: true })));
    const gate = svc.fake.block();
    const slow = svc.post(ev.speak(id, "Schicken Sie mir die Adresse per SMS?"));
    await gate.arrived;
    await until(async () => svc.deadlineClock.pending > 0, "the deadline armed");
    svc.deadlineClock.advance(800);
    expect(spoken((await slow).actions)).toEqual([HOLDING]);
    // "Ja, gerne." over the holding line: a quiet turn, the question arrives with this answer.
    const { answer } = await postPending(svc, ev.speak(id, "Ja, gerne."));
    gate.release();
    const r = await answer;
    expect(spoken(r.actions)).toEqual([expect.stringMatching(QUESTION)]);
    // The caller heard the question and answers it, with the same words, three times (each answer
    // is the question again). Every time they heard the exact question right before.
    const heard: string[][] = [];
    let sms = 0;
    for (let i = 0; i < 3 && sms === 0; i++) {
      const a = await svc.post(ev.speak(id, "Ja, gerne."));
      heard.push(spoken(a.actions));
      sms += smsActions(a.actions).filter((s) => s.phone_number === CALLER).length;
    }
    expect({ sms, heard }).toEqual({ sms: 1, heard: expect.anything() });
  });
});
