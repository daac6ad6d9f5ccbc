import { afterEach, describe, expect, it } from "vitest";
import { reply } from "./support/fakeOpenAI.js";
import { ev } from "./support/events.js";
import { startTestService, testConfig, type TestService } from "./support/harness.js";

/** Review 18b: the do-not-text list (issue 18 point 6). */

const THIRD_PARTY = "491719876543"; // 0171 9876543: never said by the caller

describe("review18b: opt_out_sms and a number the caller never named", () => {
  let svc: TestService | undefined;
  afterEach(async () => {
    await svc?.close();
    svc = undefined;
  });

  it("the model cannot put a number on the list that the caller never said", async () => {
    svc = await startTestService({ config: testConfig() });
    const id = "review18b-optout-named";
    await svc.post(ev.start(id));
    // The caller asks about opening hours; the model (confused or prompt-injected) opts out a third party.
    svc.fake.enqueue(reply.tool("opt_out_sms", { number: "0171 9876543" }), reply.text("Erledigt."));
    await svc.post(ev.speak(id, "Wann haben Sie morgen geöffnet?"));
    expect(await svc.memoryLedger.optedOut(THIRD_PARTY), "a number nobody in the call said is on the do-not-text list").toBe(false);
  });

  it("a number the caller says is taken", async () => {
    svc = await startTestService({ config: testConfig() });
    const id = "review18b-optout-said";
    await svc.post(ev.start(id));
    svc.fake.enqueue(reply.tool("opt_out_sms", { number: "0171 9876543" }), reply.text("Erledigt."));
    await svc.post(ev.speak(id, "Schicken Sie an die null eins sieben eins, neun acht sieben, sechs fünf vier drei nie wieder eine SMS."));
    expect(await svc.memoryLedger.optedOut(THIRD_PARTY)).toBe(true);
  });
});

