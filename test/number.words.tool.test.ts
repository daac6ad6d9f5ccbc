import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { reply } from "./support/fakeOpenAI.js";
import { ev } from "./support/events.js";
import { smsActions, spoken, startTestService, testConfig, type TestService } from "./support/harness.js";
import { atConsentQuestion } from "./support/deadline.js";

/**
 * Issue 22, point 7: a number said in words reaches the parser through the tool, as the model
 * passes it on verbatim. The parser always read it; the tool's argument limit (80 characters)
 * refused it, so the caller heard an error line. Tested through a call, not only the parser.
 */

const SAID = "Meine Handynummer ist null eins fünf eins, zwölf, vierunddreißig, sechsundfünfzig, neunundsiebzig.";

let svc: TestService;
beforeAll(async () => {
  svc = await startTestService({ config: testConfig({ tasks: { sms: { recipients: { perRecipient: { max: 1000, windowSeconds: 60 } } } } }) });
});
afterAll(async () => svc.close());
beforeEach(() => svc.fake.reset());

describe("a number said in words, passed to collect_phone_number verbatim", () => {
  it("is read back in the consent question, and a yes sends to it", async () => {
    expect(SAID.length).toBeGreaterThan(80);
    const id = "number-in-words";
    await atConsentQuestion(svc, id);
    svc.fake.reset();
    svc.fake.enqueue(reply.tool("collect_phone_number", { phone_number: SAID }));
    const asked = await svc.post(ev.speak(id, `Nein, lieber an eine andere Nummer. ${SAID}`));
    expect(svc.fake.requests.length).toBe(1);
    expect(spoken(asked.actions).at(-1)).toMatch(/^Darf ich Ihnen die Informationen per SMS an die Nummer 0 1 5 1 1, 2 3 4, 5 6, 7 9/);
    expect((await svc.store.get(id))!.sms.number).toBe("4915112345679");
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
    const yes = await svc.post(ev.speak(id, "Ja."));
    expect(smsActions(yes.actions)).toEqual([expect.objectContaining({ phone_number: "4915112345679" })]);
  });

  it("an argument past 200 characters is still refused as invalid, and nothing is sent", async () => {
    const id = "number-too-long";
    await atConsentQuestion(svc, id);
    svc.fake.reset();
    svc.fake.enqueue(reply.tool("collect_phone_number", { phone_number: "eins ".repeat(41) }), reply.text("Wie lautet die Nummer?"));
    const r = await svc.post(ev.speak(id, "eins eins eins"));
    expect(smsActions(r.actions)).toEqual([]);
    // Refused as invalid arguments (the model is told and asked again): the number did not change.
    expect(svc.fake.requests.length).toBe(2);
    expect(JSON.stringify(svc.fake.requests[1]!.messages)).toMatch(/phone_number/);
    expect((await svc.store.get(id))!.sms.number).toBe("4915112345678");
  });
});
