import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { reply } from "./support/fakeOpenAI.js";
import { ev } from "./support/events.js";
import { smsActions, spoken, startTestService, testConfig, type TestService } from "./support/harness.js";
import { atConsentQuestion, ledgerKinds, postPending, until } from "./support/deadline.js";
import { MemoryCallStore } from "../src/store/memoryCallStore.js";
import type { SmsSlice } from "../src/tasks/sms/state.js";
import { StoreUnavailableError, type CommitRequest } from "../src/store/callStore.js";
import type { CommitThen } from "../src/store/callStore.js";

/**
 * Review of issue 17 (rules 3/4: the ledger agrees with what left). A "no" that overtook a send
 * writes its sms_not_sent (endSmsFlow) before its commit. When that commit fails (store blip), the
 * event runs again; the send is still pending in the outbox, so the second run withdraws it again.
 * Its record names the same approval (and the same outbox entry): one sms_approved, one
 * sms_not_sent, one rate-limit release.
 */

let failSeq: number | undefined;
let svc: TestService;
beforeAll(async () => {
  const inner = new MemoryCallStore<SmsSlice>();
  const store = Object.assign(Object.create(inner) as MemoryCallStore<SmsSlice>, {
    // The worker commits with commitAndNext (the commit and the next event in one request).
    async commitAndNext(callId: string, token: string, c: CommitRequest<SmsSlice>): Promise<CommitThen> {
      if (c.seq === failSeq) {
        failSeq = undefined;
        throw new StoreUnavailableError("scripted: the commit's connection dropped");
      }
      return inner.commitAndNext(callId, token, c);
    },
  });
  svc = await startTestService({ config: testConfig({ server: { leaseMs: 300 }, tasks: { sms: { recipients: { perRecipient: { max: 1000, windowSeconds: 60 } } } } }), store });
});
afterAll(async () => svc.close());

describe("review17: a 'no' whose commit failed runs again", () => {
  it("one send approved, one withdrawn: the ledger has one sms_not_sent (withdrawn_by_no) for the one sms_approved", async () => {
    const id = "r17-commit-retry";
    await atConsentQuestion(svc, id); // 1, 2
    svc.fake.reset();
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }), reply.tool("record_consent", { consented: false }), reply.tool("record_consent", { consented: false }));
    const gate = svc.fake.block();
    const yes = svc.post(ev.speak(id, "Ja, gerne.")); // 3
    await gate.arrived;
    await until(async () => svc.deadlineClock.pending > 0, "the deadline armed");
    svc.deadlineClock.advance(800);
    expect(spoken((await yes).actions)).toEqual(["Einen Moment bitte."]);
    failSeq = 4;
    const { answer } = await postPending(svc, ev.speak(id, "Nein, doch nicht!")); // 4: its first commit fails
    gate.release();
    await until(() => ledgerKinds(svc, id).includes("sms_not_sent"), "the first run withdrew");
    await until(async () => failSeq === undefined, "the commit failed");
    svc.deadlineClock.advance(800);
    await answer;
    // The call's next queued event gets the queue going again: the "no" runs a second time.
    const next = svc.post(ev.assistantSpeak(id, "Einen Moment bitte."));
    await until(async () => (await svc.store.progress(id)).processed >= 5, "all processed");
    svc.deadlineClock.advance(800);
    await next;
    const after = await svc.post(ev.speechEnded(id));
    expect(smsActions(after.actions)).toEqual([]);
    expect((await svc.store.get(id))!.sms.declined).toBe(true);
    const kinds = ledgerKinds(svc, id);
    expect(kinds.filter((k) => k === "sms_approved")).toHaveLength(1);
    // What must happen: the send that never left is recorded as not sent once, naming its approval.
    const approval = svc.memoryLedger.records.find((r) => r.callId === id && r.kind === "sms_approved")!;
    expect(svc.memoryLedger.records.filter((r) => r.callId === id && (r.kind === "sms_not_sent" || r.kind === "sms_handed_over"))).toEqual([
      expect.objectContaining({ kind: "sms_not_sent", reason: "withdrawn_by_no", ref: approval.id }),
    ]);
  });
});
