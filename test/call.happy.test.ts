import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { reply } from "./support/fakeOpenAI.js";
import { CALLER, ev } from "./support/events.js";
import { smsActions, spoken, startTestService, type TestService } from "./support/harness.js";
import { toolPairingProblems } from "../src/engine/history.js";

let svc: TestService;
beforeAll(async () => {
  svc = await startTestService();
});
afterAll(async () => svc.close());
beforeEach(() => svc.fake.reset());

describe("happy path with the caller's own number", () => {
  const id = "happy-own-1";
  it("greets without a model request", async () => {
    const r = await svc.post(ev.start(id));
    expect(r.status).toBe(200);
    expect(r.actions).toHaveLength(1);
    expect(r.actions[0]).toMatchObject({ type: "speak", session_id: id, user_input_timeout_seconds: 8 });
    expect(spoken(r.actions)[0]).toContain("Praxis Dr. Muster");
    expect(svc.fake.requests).toHaveLength(0);
  });

  it("enters the SMS flow and asks consent naming the caller's number, in one LLM request", async () => {
    svc.fake.enqueue(reply.tool("start_sms_flow", { info: "opening_hours" }));
    const r = await svc.post(ev.speak(id, "Können Sie mir die Öffnungszeiten per SMS schicken?"));
    expect(svc.fake.requests).toHaveLength(1);
    expect(svc.fake.toolsOffered(0)).toEqual(["start_sms_flow", "transfer_call", "end_call", "opt_out_sms"]);
    expect(r.actions.map((a) => a.type)).toEqual(["speak"]);
    expect(spoken(r.actions)[0]).toBe("Darf ich Ihnen die Informationen per SMS an die Nummer 0 1 5 1 1, 2 3 4, 5 6, 7 8 schicken?");
    expect(smsActions(r.actions)).toHaveLength(0);
    expect(svc.memoryLedger.records.map((x) => x.kind)).toEqual(["consent_asked"]);
  });

  it("records consent and sends from the template with no second LLM request", async () => {
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
    const r = await svc.post(ev.speak(id, "Ja, gerne."));
    expect(svc.fake.requests).toHaveLength(1);
    expect(svc.fake.toolsOffered(0)).toEqual(["record_consent", "collect_phone_number", "ask_for_other_number", "opt_out_sms"]);
    expect(r.actions.map((a) => a.type)).toEqual(["send_sms", "speak"]);
    expect(r.actions[0]).toEqual({
      type: "send_sms",
      session_id: id,
      phone_number: CALLER,
      message: "Praxis Dr. Muster: Öffnungszeiten: Mo-Fr 8-12 Uhr, Di und Do auch 15-18 Uhr. Antworten auf diese SMS werden nicht gelesen.",
    });
    expect(spoken(r.actions)[0]).toContain("abgeschickt");
    expect(spoken(r.actions)[0]).not.toMatch(/zugestellt|angekommen/);
    // The approval before the send could leave, its handover once the answer was written; each names the record it rests on.
    for (let i = 0; i < 200 && svc.memoryLedger.records.length < 4; i++) await new Promise((r) => setTimeout(r, 5));
    const [asked, given, approved, handed] = svc.memoryLedger.records;
    expect(svc.memoryLedger.records.map((x) => x.kind)).toEqual(["consent_asked", "consent_given", "sms_approved", "sms_handed_over"]);
    expect(approved).toMatchObject({ callId: id, number: CALLER, reply: "Ja, gerne.", outcome: "approved", ref: given!.id });
    expect(approved!.question).toContain("0 1 5 1 1");
    expect(given!.ref).toBe(asked!.id);
    expect(handed).toMatchObject({ callId: id, number: CALLER, ref: approved!.id });
  });

  it("keeps history valid: every tool call has its result", async () => {
    const state = await svc.store.get(id);
    expect(state).toBeDefined();
    expect(toolPairingProblems(state!.history)).toEqual([]);
    expect(state!.step).toBe("main");
  });

  it("the model, asked whether it arrived, cannot claim delivery", async () => {
    svc.fake.enqueue(reply.text("Ja, die SMS ist bei Ihnen angekommen."), reply.text("Ich habe sie abgeschickt, ob sie angekommen ist, kann ich leider nicht sehen."));
    const r = await svc.post(ev.speak(id, "Ist die SMS schon angekommen?"));
    expect(spoken(r.actions)).toEqual(["Ich habe sie abgeschickt, ob sie angekommen ist, kann ich leider nicht sehen."]);
    // The correction reached the model in the second request.
    expect(svc.fake.requests[1]!.messages[0]!.content).toContain("cannot know whether an SMS arrived");
  });

  it("session_end answers 204 and clears the call", async () => {
    const r = await svc.post(ev.end(id));
    expect(r.status).toBe(204);
    expect(await svc.store.get(id)).toBeUndefined();
  });
});
