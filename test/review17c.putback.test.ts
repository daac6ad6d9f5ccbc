import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { MemoryCallStore } from "../src/store/memoryCallStore.js";
import { StoreUnavailableError, type CallStore, type CommitRequest, type OutboxEntry, type RequestId } from "../src/store/callStore.js";
import type { SmsSlice } from "../src/tasks/sms/state.js";
import { reply } from "./support/fakeOpenAI.js";
import { ev } from "./support/events.js";
import { smsActions, startTestService, testConfig, type TestService } from "./support/harness.js";
import { atConsentQuestion, postAndHangUp, until } from "./support/deadline.js";

/**
 * Review 17c (adversarial review of b3d2ad7, issue 17 point 4): a lost HTTP answer's entries put
 * back to the outbox. Oracles come from what the caller got: an answer that carried `send_sms`
 * (the SMS was handed to sipgate) or none that did.
 *
 *  1. putBack ran in the store, but its reply was lost for longer than `untilAnswered` tries: the
 *     entries are recorded sms_not_sent AND noted (markNotSent) although they are back in the
 *     outbox; the next event's turn applies the note (the state forgets the send) and its answer
 *     then delivers the send: the SMS left, the state says it did not, the ledger says both.
 *  2. putBack is accepted after the session_end turn discarded the outbox and before its commit:
 *     the commit deletes the outbox, and the put-back send vanishes without any outcome.
 */

const OPEN = { max: 1000, windowSeconds: 60 };

describe("review17c: a lost answer's entries put back", () => {
  let svc: TestService | undefined;
  afterEach(async () => {
    await svc?.close();
    svc = undefined;
  });

  it("putBack applied but its reply lost: a send delivered later is still counted by the state", async () => {
    const inner = new MemoryCallStore<SmsSlice>();
    // The first tries of the putBack are run by the store, but the client never sees a reply
    // (ioredis' resends fail): as many as `untilAnswered` makes. Later asks are answered.
    let lostReplies = 6;
    const store = Object.assign(Object.create(inner) as CallStore<SmsSlice>, {
      async putBack(callId: string, entries: OutboxEntry[], processedAtCollect: number, requestId?: RequestId) {
        const refused = await inner.putBack(callId, entries, processedAtCollect, requestId);
        if (lostReplies > 0) {
          lostReplies--;
          throw new StoreUnavailableError("reply lost (simulated)");
        }
        return refused;
      },
    });
    svc = await startTestService({ config: testConfig({ server: { answerWithinMs: 0 }, tasks: { sms: { recipients: { perRecipient: OPEN } } } }), store });
    await svc.app.listen({ port: 0, host: "127.0.0.1" });
    const port = (svc.app.server.address() as AddressInfo).port;
    const id = "review17c-putback-reply-lost";
    await atConsentQuestion(svc, id);
    svc.fake.reset();
    const model = svc.fake.block();
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }), reply.text("Ja, ich höre Sie."), reply.text("Gern geschehen."));
    await postAndHangUp(port, ev.speak(id, "Ja, gerne."), model.arrived);
    model.release();
    const s = svc;
    // The putBack's fate is settled (one way or the other) before the caller speaks again.
    await until(() => lostReplies === 0, "the putBack's tries", { tries: 400, everyMs: 10 });
    await new Promise((r) => setTimeout(r, 50));
    // The next event is the end of a line the caller heard (no caller words: nothing holds the
    // send back). Its turn applies the note; its answer collects the put-back send.
    const next = await svc.post(ev.speechEnded(id));
    // What the caller got: the put-back send left with this answer.
    expect(smsActions(next.actions), "the put-back send left with the next answer").toHaveLength(1);
    await svc.post(ev.speak(id, "Danke."));
    const state = (await s.store.get(id))!;
    expect.soft(state.sms.sent, "sends the state counts after the SMS was handed to sipgate").toHaveLength(1);
    expect.soft(state.sms.result?.value.status, "the task's result after the SMS was handed to sipgate").toBe("handed_over");
    const outcomes = s.memoryLedger.records.filter((r) => r.callId === id && (r.kind === "sms_not_sent" || r.kind === "sms_handed_over")).map((r) => r.kind);
    expect.soft(outcomes, "one outcome for the one send, the one that happened").toEqual(["sms_handed_over"]);
  });

  it("putBack accepted between the session_end turn's discard and its commit: the send gets an outcome", async () => {
    const inner = new MemoryCallStore<SmsSlice>();
    let putBackArrived!: () => void;
    const arrived = new Promise<void>((r) => (putBackArrived = r));
    let releasePutBack!: () => void;
    const putBackGate = new Promise<void>((r) => (releasePutBack = r));
    let putBackDone!: () => void;
    const done = new Promise<void>((r) => (putBackDone = r));
    let endCommitArrived!: () => void;
    const endCommitting = new Promise<void>((r) => (endCommitArrived = r));
    const store = Object.assign(Object.create(inner) as CallStore<SmsSlice>, {
      async putBack(callId: string, entries: OutboxEntry[], processedAtCollect: number, requestId?: RequestId) {
        putBackArrived();
        await putBackGate;
        const refused = await inner.putBack(callId, entries, processedAtCollect, requestId);
        putBackDone();
        return refused;
      },
      async commit(callId: string, token: string, r: CommitRequest<SmsSlice>, requestId?: RequestId) {
        if (r.state === null) {
          // The session_end turn ran (its discard found nothing); its commit waits for the putBack.
          endCommitArrived();
          await done;
        }
        return inner.commit(callId, token, r, requestId);
      },
      // The pipeline commits and takes the next event in one request: the same wait.
      async commitAndNext(callId: string, token: string, r: CommitRequest<SmsSlice>, requestId?: RequestId) {
        if (r.state === null) {
          endCommitArrived();
          await done;
        }
        return inner.commitAndNext(callId, token, r, requestId);
      },
    });
    svc = await startTestService({ config: testConfig({ server: { answerWithinMs: 0 }, tasks: { sms: { recipients: { perRecipient: OPEN } } } }), store });
    await svc.app.listen({ port: 0, host: "127.0.0.1" });
    const port = (svc.app.server.address() as AddressInfo).port;
    const id = "review17c-putback-behind-end";
    await atConsentQuestion(svc, id);
    svc.fake.reset();
    const model = svc.fake.block();
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
    await postAndHangUp(port, ev.speak(id, "Ja, gerne."), model.arrived);
    model.release();
    await arrived;
    const end = svc.post(ev.end(id));
    await endCommitting;
    releasePutBack();
    await end;
    const s = svc;
    const approvals = () => s.memoryLedger.records.filter((r) => r.callId === id && r.kind === "sms_approved").map((r) => r.id);
    expect(approvals(), "the gate approved the send").toHaveLength(1);
    // The caller never got an answer with send_sms (the request was hung up; the call ended).
    await until(() => s.memoryLedger.records.some((r) => r.callId === id && r.kind === "sms_not_sent"), "an sms_not_sent for the send that never left").catch(() => undefined);
    const outcomes = s.memoryLedger.records.filter((r) => r.callId === id && (r.kind === "sms_not_sent" || r.kind === "sms_handed_over"));
    expect(outcomes.map((r) => [r.kind, r.ref]), "the approval's outcome").toEqual([["sms_not_sent", approvals()[0]]]);
  });
});
