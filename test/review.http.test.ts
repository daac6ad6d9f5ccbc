import { afterAll, beforeAll, beforeEach, expect, it } from "vitest";
import { reply } from "./support/fakeOpenAI.js";
import { ev } from "./support/events.js";
import { smsActions, spoken, startTestService, testConfig, type TestService } from "./support/harness.js";
import { atConsentQuestion, ledgerKinds, pastDeadline, until } from "./support/deadline.js";

let svc: TestService;
beforeAll(async () => {
  svc = await startTestService({ config: testConfig({ tasks: { sms: { recipients: { perRecipient: { max: 1000, windowSeconds: 60 } } } } }) });
});
afterAll(async () => svc.close());
beforeEach(() => svc.fake.reset());


it("a slow 'no' whose answer was given up on still holds: a later 'yes' sends nothing", async () => {
  const id = "rv-dropped-no";
  await atConsentQuestion(svc, id);
  const gate = svc.fake.block();
  svc.fake.enqueue(reply.tool("record_consent", { consented: false }));
  const no = svc.post(ev.speak(id, "Nein, lieber nicht."));
  await gate.arrived;
  await until(() => svc.deadlineClock.pending > 0);
  svc.deadlineClock.advance(800);
  expect(spoken((await no).actions)).toEqual(["Einen Moment bitte."]);
  // Still not ready: the holding line's follow-ups, a second holding line, then the apology.
  await pastDeadline(svc, ev.speechEnded(id));
  expect(spoken((await pastDeadline(svc, ev.timeout(id))).actions)).toEqual(["Einen Moment bitte."]);
  expect(spoken((await pastDeadline(svc, ev.timeout(id))).actions)[0]).toMatch(/dauert gerade zu lange/);
  gate.release();
  await until(() => ledgerKinds(svc, id).includes("consent_declined"));
  await until(async () => (await svc.store.progress(id)).processed >= (await svc.store.progress(id)).queued);
  // The "no" was committed although its answer was given up on.
  expect((await svc.store.get(id))!.sms.declined).toBe(true);
  svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
  const yes = await svc.post(ev.speak(id, "Ja, gerne."));
  expect(smsActions(yes.actions)).toEqual([]);
  expect(ledgerKinds(svc, id)).not.toContain("sms_approved");
});

it("a late send_sms still waiting when the caller hangs up never leaves, and the ledger records it as not sent (call ended)", async () => {
  const id = "rv-end-outbox";
  await atConsentQuestion(svc, id);
  const gate = svc.fake.block();
  svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
  const yes = svc.post(ev.speak(id, "Ja, gerne."));
  await gate.arrived;
  await until(() => svc.deadlineClock.pending > 0);
  svc.deadlineClock.advance(800);
  expect(spoken((await yes).actions)).toEqual(["Einen Moment bitte."]);
  gate.release();
  await until(async () => (await svc.store.progress(id)).ready.http > 0);
  // caller hangs up during the holding line
  await svc.post(ev.end(id));
  const approval = svc.memoryLedger.records.find((r) => r.callId === id && r.kind === "sms_approved")!;
  expect(svc.memoryLedger.records.filter((r) => r.ref === approval.id)).toEqual([expect.objectContaining({ kind: "sms_not_sent", reason: "call_ended" })]);
});

it("after session_end a late or redelivered user_speak starts no new conversation", async () => {
  const id = "rv-after-end";
  await svc.post(ev.start(id));
  svc.fake.enqueue(reply.text("Antwort eins."));
  const s = ev.speak(id, "Hallo?");
  await svc.post(s);
  await svc.post(ev.end(id));
  const before = svc.fake.requests.length;
  const again = await svc.post(s);
  expect(again.status).toBe(204);
  expect(svc.fake.requests.length - before).toBe(0);
});

it("a turn already given up on approves no send, so it uses up no SMS limit: the caller's repeated 'yes' sends", async () => {
  const s2 = await startTestService({ config: testConfig({ tasks: { sms: { recipients: { perRecipient: { max: 1, windowSeconds: 86400 } } } } }) });
  try {
    const id = "rv-ratelimit";
    await s2.post(ev.start(id));
    s2.fake.enqueue(reply.tool("start_sms_flow", { info: "address" }));
    await s2.post(ev.speak(id, "SMS bitte"));
    const gate = s2.fake.block();
    s2.fake.enqueue(reply.tool("record_consent", { consented: true }));
    const yes = s2.post(ev.speak(id, "Ja, gerne."));
    await gate.arrived;
    await until(() => s2.deadlineClock.pending > 0, "the deadline to be armed");
    s2.deadlineClock.advance(800);
    await yes;
    await pastDeadline(s2, ev.speechEnded(id));
    await pastDeadline(s2, ev.timeout(id));
    gate.release();
    await until(async () => (await s2.store.progress(id)).processed >= (await s2.store.progress(id)).queued, "the late turn to finish");
    s2.fake.enqueue(reply.tool("record_consent", { consented: true }));
    const again = await s2.post(ev.speak(id, "Ja, gerne."));
    expect(smsActions(again.actions)).toHaveLength(1);
    // One approval, and the one send that left is its handover.
    await until(() => s2.memoryLedger.records.some((r) => r.kind === "sms_handed_over"), "the handover recorded");
    const approvals = s2.memoryLedger.records.filter((r) => r.kind === "sms_approved");
    expect(approvals).toHaveLength(1);
    expect(s2.memoryLedger.records.filter((r) => r.ref === approvals[0]!.id)).toEqual([expect.objectContaining({ kind: "sms_handed_over" })]);
  } finally {
    await s2.close();
  }
});

it("a redelivery while the first answer still waits in the outbox: the line leaves once", async () => {
  const id = "rv-redeliver";
  await svc.post(ev.start(id));
  const gate = svc.fake.block();
  svc.fake.enqueue(reply.text("Wir haben von 8 bis 18 Uhr geöffnet."));
  const q = ev.speak(id, "Wann haben Sie geöffnet?");
  const first = svc.post(q);
  await gate.arrived;
  await until(() => svc.deadlineClock.pending > 0);
  svc.deadlineClock.advance(800);
  await first; // the holding-line answer is lost on the way: sipgate redelivers the same body
  gate.release();
  await until(async () => (await svc.store.progress(id)).ready.http > 0);
  const again = await svc.post(q);
  expect(spoken(again.actions)).toHaveLength(1);
});
