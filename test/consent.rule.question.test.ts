import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { reply } from "./support/fakeOpenAI.js";
import { ev } from "./support/events.js";
import { smsActions, spoken, startTestService, testConfig, type TestService } from "./support/harness.js";

/**
 * Review of the consent rule: the consent question is the operator's wording (config), and a listed
 * "Ja." means yes only to a question that asks for one. To "Haben Sie etwas dagegen, …?" it is an
 * objection; the rule took it as consent and sent the SMS without asking the model.
 */
const OBJECTION = "Haben Sie etwas dagegen, wenn ich Ihnen die Informationen per SMS an die Nummer {number} schicke?";

let svc: TestService;
beforeAll(async () => {
  svc = await startTestService({ config: testConfig({ tasks: { sms: { consent: { question: OBJECTION, answerByRule: true } } } }) });
});
afterAll(async () => svc.close());

describe("review: a consent question whose 'Ja.' is an objection", () => {
  it("'Ja.' to 'Haben Sie etwas dagegen …?' sends nothing", async () => {
    const id = "rev-objection";
    await svc.post(ev.start(id));
    svc.fake.enqueue(reply.tool("start_sms_flow", { info: "address" }));
    const q = await svc.post(ev.speak(id, "Schicken Sie mir die Adresse per SMS?"));
    expect(spoken(q.actions).at(-1)).toMatch(/^Haben Sie etwas dagegen/);
    svc.fake.reset();
    // The model, reading the question, takes the "Ja." as the objection it is.
    svc.fake.enqueue(reply.tool("record_consent", { consented: false }));
    const r = await svc.post(ev.speak(id, "Ja."));
    expect(svc.fake.requests).toHaveLength(1);
    expect(smsActions(r.actions)).toEqual([]);
    expect(svc.memoryLedger.records.find((x) => x.callId === id && x.kind === "consent_given")).toBeUndefined();
    expect(svc.memoryLedger.records.find((x) => x.callId === id && x.kind === "consent_declined")).toMatchObject({ decidedBy: "model" });
  });
});
