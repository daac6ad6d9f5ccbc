import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { reply } from "./support/fakeOpenAI.js";
import { ev } from "./support/events.js";
import { spoken, startTestService, testConfig, type TestService } from "./support/harness.js";
import { atConsentQuestion, ledgerKinds, postPending, until } from "./support/deadline.js";

/**
 * Review of issue 17 (rules 2 and 4: the ledger agrees with what left). session_end discards the
 * outbox with `collect`, which holds back a send while a caller event queued after it is still
 * unevaluated. A caller event queued after session_end (HTTP requests race: the caller's last
 * words and the hang-up are sent together; or a redelivery) keeps the send out of the discard,
 * the session_end commit then empties the outbox anyway: the SMS never left, but the ledger has
 * its approval and no outcome, and its rate-limit hit is never released.
 */

const HOLDING = "Einen Moment bitte.";

let svc: TestService;
beforeAll(async () => {
  svc = await startTestService({ config: testConfig({ server: { leaseMs: 300 }, tasks: { sms: { recipients: { perRecipient: { max: 1000, windowSeconds: 60 } } } } }) });
});
afterAll(async () => svc.close());
beforeEach(() => svc.fake.reset());

describe("review17: session_end with a caller event queued after it", () => {
  it("the send that never left is recorded as not sent (call ended)", async () => {
    const id = "r17-end-then-speak";
    await atConsentQuestion(svc, id); // seqs 1, 2
    svc.fake.reset();
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
    const gate = svc.fake.block();
    const yes = svc.post(ev.speak(id, "Ja, gerne.")); // seq 3
    await gate.arrived;
    await until(async () => svc.deadlineClock.pending > 0, "the deadline armed");
    svc.deadlineClock.advance(800);
    expect(spoken((await yes).actions)).toEqual([HOLDING]);
    // The caller hangs up; their last words' request arrives just after the hang-up's.
    const { answer: endAnswer } = await postPending(svc, ev.end(id)); // seq 4
    const { answer: lateAnswer } = await postPending(svc, ev.speak(id, "Tschüss.")); // seq 5
    svc.deadlineClock.advance(800);
    gate.release();
    await until(async () => (await svc.store.progress(id)).processed >= 5, "all processed");
    await endAnswer;
    await lateAnswer;
    expect(ledgerKinds(svc, id)).toContain("sms_approved");
    // What must happen: nothing left (the call ended before any answer carried the send), so the
    // ledger says so: one sms_not_sent (call_ended) for the approval.
    const records = svc.memoryLedger.records.filter((r) => r.callId === id);
    const approval = records.find((r) => r.kind === "sms_approved")!;
    expect(records.filter((r) => r.kind === "sms_not_sent" || r.kind === "sms_handed_over")).toEqual([expect.objectContaining({ kind: "sms_not_sent", reason: "call_ended", ref: approval.id })]);
  });
});
