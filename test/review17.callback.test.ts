import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { reply } from "./support/fakeOpenAI.js";
import { ev } from "./support/events.js";
import { callbackTestConfig, smsActions, spoken, startTestService, type TestService } from "./support/harness.js";
import { startReceiver, type Receiver } from "./support/webhookReceiver.js";
import { postPending, until } from "./support/deadline.js";
import type { AiFlowAction } from "../src/aiflow/actions.js";

/**
 * Review of issue 17 (rule 2) with the callback agent. The yes's turn produced, in one outbox
 * entry: send_sms, "SMS sent", and wrap_up's "callback_done" line. A "no" overtaking the send
 * withdrew the WHOLE entry (commit `withdraw` by seq), so the caller was never told their callback
 * request was taken. Since issue 22 "callback_done" comes with the SMS offer, a turn before the
 * yes (callback.closed marks it said): a withdrawn send cannot take it back.
 */

const HOLDING = "Einen Moment bitte.";
const DONE = /Ihre Rückrufbitte ist notiert/;

let svc: TestService;
let receiver: Receiver;
beforeAll(async () => {
  receiver = await startReceiver(() => ({ status: 200 }));
  svc = await startTestService({ config: callbackTestConfig(receiver.url, { server: { leaseMs: 300 } }) });
});
afterAll(async () => {
  await svc.close();
  await receiver.close();
});
beforeEach(() => svc.fake.reset());

async function collectAll(id: string): Promise<string[]> {
  await svc.post(ev.start(id));
  svc.fake.enqueue(reply.tool("note_callback_detail", { field: "name", value: "Anna Schmidt" }));
  await svc.post(ev.speak(id, "Anna Schmidt"));
  svc.fake.enqueue(reply.tool("confirm_callback_detail", { field: "name", correct: true }), reply.text("Worum geht es?"));
  await svc.post(ev.speak(id, "Ja, genau."));
  svc.fake.enqueue(reply.tool("note_callback_detail", { field: "reason", value: "eine Frage zur Rechnung" }));
  await svc.post(ev.speak(id, "Ich habe eine Frage zur Rechnung."));
  svc.fake.enqueue(reply.tool("confirm_callback_detail", { field: "reason", correct: true }), reply.text("Wann dürfen wir Sie zurückrufen?"));
  await svc.post(ev.speak(id, "Ja."));
  svc.fake.enqueue(reply.tool("note_callback_detail", { field: "time_window", value: "morgen zwischen 9 und 12 Uhr" }));
  await svc.post(ev.speak(id, "Morgen zwischen neun und zwölf."));
  svc.fake.enqueue(reply.tool("confirm_callback_detail", { field: "time_window", correct: true }));
  const q = await svc.post(ev.speak(id, "Ja, passt."));
  expect(spoken(q.actions).at(-1)).toMatch(/^Darf ich Ihnen eine Bestätigung/);
  return spoken(q.actions);
}

describe("review17: callback agent, a 'no' overtaking the confirmation SMS", () => {
  it("the caller still hears that the callback request is taken (callback_done) after 'Nein, doch nicht'", async () => {
    const id = "r17-cb-no-overtakes";
    const offer = await collectAll(id);
    svc.fake.reset();
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }), reply.tool("record_consent", { consented: false }));
    const gate = svc.fake.block();
    const yes = svc.post(ev.speak(id, "Ja, gerne."));
    await gate.arrived;
    await until(async () => svc.deadlineClock.pending > 0, "the deadline armed");
    svc.deadlineClock.advance(800);
    expect(spoken((await yes).actions)).toEqual([HOLDING]);
    const { answer } = await postPending(svc, ev.speak(id, "Nein, doch nicht!"));
    gate.release();
    const r = await answer;
    const all: AiFlowAction[] = [...r.actions, ...(await svc.post(ev.speechEnded(id))).actions];
    expect(smsActions(all)).toEqual([]);
    expect(svc.memoryLedger.records.filter((r) => r.callId === id && r.kind === "sms_not_sent")).toEqual([expect.objectContaining({ reason: "withdrawn_by_no" })]);
    const state = (await svc.store.get(id)) as unknown as { step: string; callback: { closed?: boolean } };
    expect(state.step).toBe("wrap_up");
    expect(state.callback.closed).toBe(true);
    // What must happen: the withdrawal takes back the send (and its "sent" line), not the flow's
    // own news: the caller heard that the callback request is taken, with the offer, and only then.
    expect(offer.filter((t) => DONE.test(t))).toHaveLength(1);
    expect(spoken(all).some((t) => DONE.test(t))).toBe(false);
  });
});
