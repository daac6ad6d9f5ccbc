import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { MemoryCallStore } from "../src/store/memoryCallStore.js";
import { StoreUnavailableError, type CallStore, type NotedEntry, type OutboxEntry, type RequestId } from "../src/store/callStore.js";
import { MemoryOutbox } from "../src/outbox/memoryOutbox.js";
import type { Outbox } from "../src/outbox/outbox.js";
import type { SmsSlice } from "../src/tasks/sms/state.js";
import type { CallbackReport } from "../src/agents/callback/report.js";
import { reply } from "./support/fakeOpenAI.js";
import { ev } from "./support/events.js";
import { callbackTestConfig, spoken, startTestService, type TestService } from "./support/harness.js";
import { postAndHangUp, until } from "./support/deadline.js";

/**
 * Review 17c (adversarial review of b3d2ad7, issue 17 point 4): the callback agent's report after
 * an HTTP answer carrying the confirmation SMS was lost and its send recorded sms_not_sent
 * (connection_failed). The oracle is what the caller got: the request carrying send_sms was hung
 * up before any answer was written, so the SMS never reached sipgate. The report the company
 * receives must then not say `handed_over` (issue 17 point 4: "the callback report says so").
 *
 * The note (CallStore.markNotSent) only reaches a *next turn*; whenever there is none that writes
 * a state before the report is taken, the report keeps saying handed_over:
 *  1. the lost answer is settled after the session_end turn ran (markNotSent on an ended call is a no-op);
 *  2. no further event comes (the caller is gone, the state expires): the last snapshot is what gets
 *     posted (fixed: the after-commit work runs again from the state as the note will make it);
 *  3. the store does not answer markNotSent for half a second: the note goes to the background, the
 *     ledger record is written at once, and a session_end in that window takes the old state.
 */

const ID_PREFIX = "review17c-report";

function reportingOutbox(): { outbox: Outbox; reports: Array<{ report: CallbackReport; final: boolean }> } {
  let now = Date.UTC(2026, 10, 23, 9, 0, 0);
  const inner = new MemoryOutbox(() => now++);
  const reports: Array<{ report: CallbackReport; final: boolean }> = [];
  const outbox = Object.assign(Object.create(inner) as Outbox, {
    put(key: string, body: string, dueAt: number, opts?: { final?: boolean; revision?: number }) {
      reports.push({ report: JSON.parse(body) as CallbackReport, final: !!opts?.final });
      return inner.put(key, body, dueAt, opts);
    },
  });
  return { outbox, reports };
}

/** The three callback details, given and confirmed: the last answer is the SMS offer (the consent question). */
async function toTheOffer(svc: TestService, id: string): Promise<void> {
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
}

interface Setup {
  svc: TestService;
  port: number;
  reports: Array<{ report: CallbackReport; final: boolean }>;
  /** The yes's putBack arrived (and waits until `releasePutBack`). */
  putBackArrived: Promise<void>;
  releasePutBack: () => void;
}

async function setUp(opts: { markNotSentFailures?: number } = {}): Promise<Setup> {
  const inner = new MemoryCallStore<SmsSlice>();
  let arrived!: () => void;
  const putBackArrived = new Promise<void>((r) => (arrived = r));
  let releasePutBack!: () => void;
  const gate = new Promise<void>((r) => (releasePutBack = r));
  let failures = opts.markNotSentFailures ?? 0;
  const store = Object.assign(Object.create(inner) as CallStore<SmsSlice>, {
    async putBack(callId: string, entries: OutboxEntry[], processedAtCollect: number, requestId?: RequestId) {
      arrived();
      await gate;
      return inner.putBack(callId, entries, processedAtCollect, requestId);
    },
    async markNotSent(callId: string, entries: NotedEntry[], requestId?: RequestId) {
      if (failures > 0) {
        failures--;
        throw new StoreUnavailableError("store down (simulated)");
      }
      return inner.markNotSent(callId, entries, requestId);
    },
  });
  const { outbox, reports } = reportingOutbox();
  const svc = await startTestService({ config: callbackTestConfig("http://127.0.0.1:9/hooks/calls", { server: { answerWithinMs: 0 } }), store, callback: { outbox } });
  await svc.app.listen({ port: 0, host: "127.0.0.1" });
  return { svc, port: (svc.app.server.address() as AddressInfo).port, reports, putBackArrived, releasePutBack };
}

/** The caller's "Ja, gerne." to the offer: its request is hung up before the answer (send_sms) is written. */
async function yesLost(s: Setup, id: string): Promise<void> {
  await toTheOffer(s.svc, id);
  s.svc.fake.reset();
  const model = s.svc.fake.block();
  s.svc.fake.enqueue(reply.tool("record_consent", { consented: true }), reply.text("Ja, ich höre Sie."));
  await postAndHangUp(s.port, ev.speak(id, "Ja, gerne."), model.arrived);
  model.release();
  await s.putBackArrived;
}

const notSentRecorded = (svc: TestService, id: string) => () => svc.memoryLedger.records.some((r) => r.callId === id && r.kind === "sms_not_sent" && r.reason === "connection_failed");

describe("review17c: the callback report after a lost answer's send was recorded not sent", () => {
  let s: Setup | undefined;
  afterEach(async () => {
    await s?.svc.close();
    s = undefined;
  });

  it("the lost answer is settled after session_end ran: the final report must not say handed_over", async () => {
    s = await setUp();
    const id = `${ID_PREFIX}-after-end`;
    await yesLost(s, id);
    // The caller hung up: session_end arrives while the lost answer is still being settled, which
    // ends a moment later (the call's end waits for it; see LostHere).
    const end = s.svc.post(ev.end(id));
    await new Promise((r) => setTimeout(r, 100));
    s.releasePutBack();
    await end;
    await until(notSentRecorded(s.svc, id), "sms_not_sent (connection_failed) recorded");
    const last = s.reports.filter((r) => r.report.callId === id).at(-1)!;
    expect(last.final).toBe(true);
    expect(last.report.sms.status, "the final report after the SMS never left").not.toBe("handed_over");
  });

  it("no event follows the settled lost answer: the snapshot posted at expiry must not say handed_over", async () => {
    s = await setUp();
    const id = `${ID_PREFIX}-no-next-turn`;
    await yesLost(s, id);
    // One more caller event is processed (so the send cannot go back), then the caller is gone.
    await s.svc.post(ev.speak(id, "Hallo?"));
    s.releasePutBack();
    await until(notSentRecorded(s.svc, id), "sms_not_sent (connection_failed) recorded");
    const s1 = s;
    const last = () => s1.reports.filter((r) => r.report.callId === id).at(-1)!;
    await until(() => last().report.sms.status !== "handed_over", "the snapshot saved again", { tries: 200, everyMs: 10 }).catch(() => undefined);
    expect(last().final).toBe(false);
    expect(last().report.sms.status, "the snapshot posted when the state expires").not.toBe("handed_over");
  });

  it("the store does not answer markNotSent for a moment and session_end comes next: the final report must not say handed_over", async () => {
    // untilAnswered tries 6 times (about half a second); the background retry waits a second first.
    s = await setUp({ markNotSentFailures: 6 });
    const id = `${ID_PREFIX}-store-down-noting`;
    await yesLost(s, id);
    await s.svc.post(ev.speak(id, "Hallo?"));
    s.releasePutBack();
    await until(notSentRecorded(s.svc, id), "sms_not_sent (connection_failed) recorded", { tries: 400, everyMs: 10 });
    // The ledger says not sent; the caller hangs up now.
    await s.svc.post(ev.end(id));
    const last = s.reports.filter((r) => r.report.callId === id).at(-1)!;
    expect(last.final).toBe(true);
    expect(last.report.sms.status, "the final report after the ledger said sms_not_sent").not.toBe("handed_over");
  });
});
