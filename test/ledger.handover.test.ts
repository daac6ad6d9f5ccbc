import type { AddressInfo } from "node:net";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../src/engine/clock.js";
import type { LedgerRecord } from "../src/ledger/ledger.js";
import { MemoryLedger } from "../src/ledger/memoryLedger.js";
import { OpenAIChatModel } from "../src/llm/openaiChatModel.js";
import { ScriptedModel } from "../src/llm/scriptedModel.js";
import { MemoryRateLimiter } from "../src/store/rateLimiter.js";
import { createService, type Service } from "../src/service.js";
import { StoreUnavailableError, type CallStore, type CommitRequest, type CommitResult, type CommitThen, type OutboxEntry } from "../src/store/callStore.js";
import { MemoryCallStore } from "../src/store/memoryCallStore.js";
import type { SmsSlice } from "../src/tasks/sms/state.js";
import { FakeOpenAIServer, reply } from "./support/fakeOpenAI.js";
import { CALLER, ev } from "./support/events.js";
import { smsActions, spoken, startTestService, testConfig, type TestService } from "./support/harness.js";
import { atConsentQuestion, postAndHangUp, postPending, slowTurn, until } from "./support/deadline.js";

/**
 * Issue 18, point 2: approval and handover, each a record. The gate writes sms_approved before the
 * send can leave; the transport writes sms_handed_over once the answer carrying it was written, or
 * sms_not_sent with the reason. Each names the record it rests on (`ref`), and each id is the call,
 * the event's position and the record, so a retried write is stored once. The process-kill tests
 * (the real server, file ledger and PostgreSQL) are in ledger.handover.kill.test.ts.
 */

const OPEN = { max: 1000, windowSeconds: 60 };

/** The call's records as they are now, its approvals, and the outcomes that name an approval. */
function evidence(ledger: MemoryLedger, id: string) {
  const records = ledger.records.filter((r) => r.callId === id);
  const approvals = records.filter((r) => r.kind === "sms_approved");
  const outcomesOf = (a: LedgerRecord) => records.filter((r) => r.ref === a.id && (r.kind === "sms_handed_over" || r.kind === "sms_not_sent"));
  return { records, approvals, outcomesOf };
}

/** Waits until the call's first approval has an outcome; returns the evidence then. */
async function settled(ledger: MemoryLedger, id: string, what: string) {
  await until(() => {
    const e = evidence(ledger, id);
    return e.approvals.length > 0 && e.outcomesOf(e.approvals[0]!).length > 0;
  }, what, { tries: 800 });
  return evidence(ledger, id);
}

describe("a call through the webhook, on the built-in scripted model", () => {
  let service: Service;
  let base: string;
  const ledger = new MemoryLedger();
  beforeAll(async () => {
    service = createService({ config: testConfig(), model: new ScriptedModel(), ledger, clock: new ManualClock(), logger: pino({ level: "silent" }) });
    await service.app.listen({ port: 0, host: "127.0.0.1" });
    base = `http://127.0.0.1:${(service.app.server.address() as AddressInfo).port}`;
  });
  afterAll(async () => service.close());

  const post = async (event: unknown) => {
    const r = await fetch(`${base}/webhook`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(event) });
    const text = await r.text();
    return r.status === 200 ? ([] as Array<{ type: string; text?: string }>).concat(JSON.parse(text)) : [];
  };

  it("ends with consent_asked, consent_given, sms_approved, sms_handed_over, each naming the one before", async () => {
    const id = "handover-happy";
    await post(ev.start(id)); // 1
    const q = await post(ev.speak(id, "Können Sie mir die Öffnungszeiten per SMS schicken?")); // 2
    expect(q.at(-1)?.text).toMatch(/^Darf ich Ihnen die Informationen per SMS/);
    const yes = await post(ev.speak(id, "Ja, gerne.")); // 3
    expect(yes.map((a) => a.type)).toEqual(["send_sms", "speak"]);
    await until(() => ledger.records.some((r) => r.callId === id && r.kind === "sms_handed_over"), "the handover recorded");
    await post(ev.end(id));

    const { records } = evidence(ledger, id);
    expect(records.map((r) => r.kind)).toEqual(["consent_asked", "consent_given", "sms_approved", "sms_handed_over"]);
    const [asked, given, approved, handed] = records as [LedgerRecord, LedgerRecord, LedgerRecord, LedgerRecord];
    // Ids: the call, the event whose turn wrote the record (its place in the call's queue), the record.
    expect(asked.id).toBe(`${id}:e2:consent_asked:0`);
    expect(given).toMatchObject({ id: `${id}:e3:consent_given:0`, ref: asked.id, reply: "Ja, gerne.", number: CALLER });
    expect(approved).toMatchObject({ id: `${id}:e3:sms_approved:0`, ref: given.id, number: CALLER, question: asked.question, reply: "Ja, gerne.", model: "scripted-careful" });
    expect(approved.message).toMatch(/^Praxis Dr\. Muster: Öffnungszeiten/);
    expect(handed).toMatchObject({ id: `${approved.id}:sms_handed_over`, ref: approved.id, number: CALLER, outcome: "handed_over" });
    // In time order: asked, answered, approved, handed over.
    const times = records.map((r) => Date.parse(r.at));
    expect([...times].sort((a, b) => a - b)).toEqual(times);
  });
});

describe("what became of an approved send, over the webhook", () => {
  let svc: TestService | undefined;
  afterEach(async () => {
    await svc?.close();
    svc = undefined;
  });

  it("an answer that could not be written, and could not go back (the caller spoke since): sms_not_sent, connection_failed", async () => {
    const inner = new MemoryCallStore<SmsSlice>();
    let putBackArrived: () => void = () => undefined;
    let putBackGate: Promise<void> | undefined;
    // The put-back of the lost answer waits until the caller's next words were evaluated (it is on
    // its way when they arrive): then the send may not go back, since their words never saw it.
    const store = Object.assign(Object.create(inner) as MemoryCallStore<SmsSlice>, {
      async putBack(callId: string, entries: OutboxEntry[], processedAtCollect: number) {
        putBackArrived();
        if (putBackGate) await putBackGate;
        return inner.putBack(callId, entries, processedAtCollect);
      },
    });
    svc = await startTestService({ config: testConfig({ server: { answerWithinMs: 0 }, tasks: { sms: { recipients: { perRecipient: OPEN } } } }), store });
    await svc.app.listen({ port: 0, host: "127.0.0.1" });
    const port = (svc.app.server.address() as AddressInfo).port;
    const id = "handover-lost-answer";
    await atConsentQuestion(svc, id);
    svc.fake.reset();
    let release!: () => void;
    putBackGate = new Promise<void>((r) => (release = r));
    const arrived = new Promise<void>((r) => (putBackArrived = r));
    const gate = svc.fake.block();
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }), reply.text("Ja, ich höre Sie."));
    // sipgate's request is gone before the answer carrying the send is written.
    await postAndHangUp(port, ev.speak(id, "Ja, gerne."), gate.arrived);
    gate.release();
    await arrived;
    const hello = await svc.post(ev.speak(id, "Hallo?"));
    expect(smsActions(hello.actions)).toEqual([]);
    release();
    const { approvals, outcomesOf } = await settled(svc.memoryLedger, id, "the outcome recorded");
    expect(approvals).toHaveLength(1);
    expect(outcomesOf(approvals[0]!)).toEqual([expect.objectContaining({ kind: "sms_not_sent", reason: "connection_failed", number: CALLER, id: `${approvals[0]!.id}:sms_not_sent` })]);
    // Nothing of it leaves later.
    expect(smsActions((await svc.post(ev.speechEnded(id))).actions)).toEqual([]);
  });

  it("the caller's 'no' overtakes the pending send: sms_not_sent, withdrawn_by_no", async () => {
    svc = await startTestService({ config: testConfig({ tasks: { sms: { recipients: { perRecipient: OPEN } } } }) });
    const id = "handover-no-overtakes";
    await atConsentQuestion(svc, id);
    svc.fake.reset();
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }), reply.tool("record_consent", { consented: false }));
    const gate = await slowTurn(svc, ev.speak(id, "Ja, gerne."));
    const { answer } = await postPending(svc, ev.speak(id, "Nein, doch nicht!"));
    gate.release();
    const no = await answer;
    const all = [...no.actions, ...(await svc.post(ev.speechEnded(id))).actions];
    expect(smsActions(all)).toEqual([]);
    expect(spoken(all).join(" ")).not.toMatch(/abgeschickt/);
    const { records, approvals, outcomesOf } = evidence(svc.memoryLedger, id);
    expect(approvals).toHaveLength(1);
    expect(outcomesOf(approvals[0]!)).toEqual([expect.objectContaining({ kind: "sms_not_sent", reason: "withdrawn_by_no", number: CALLER })]);
    expect(records.map((r) => r.kind)).toContain("consent_declined");
  });

  it("session_end with the send still waiting: sms_not_sent, call_ended", async () => {
    svc = await startTestService({ config: testConfig({ tasks: { sms: { recipients: { perRecipient: OPEN } } } }) });
    const id = "handover-call-ended";
    await atConsentQuestion(svc, id);
    svc.fake.reset();
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
    const gate = await slowTurn(svc, ev.speak(id, "Ja, gerne."));
    gate.release();
    const s = svc;
    await until(async () => (await s.store.progress(id)).ready.http > 0, "the approved send waiting in the outbox");
    expect((await svc.post(ev.end(id))).status).toBe(204);
    const { approvals, outcomesOf } = evidence(svc.memoryLedger, id);
    expect(approvals).toHaveLength(1);
    expect(outcomesOf(approvals[0]!)).toEqual([expect.objectContaining({ kind: "sms_not_sent", reason: "call_ended", ref: approvals[0]!.id })]);
  });
});

describe("an attempt fenced out before its commit (lease lost): the event runs again under the same ids", () => {
  let svc: TestService | undefined;
  afterEach(async () => {
    await svc?.close();
    svc = undefined;
  });

  /** A store whose first commit of a turn carrying a send is refused as if another instance held the lease. */
  function fencedOnce() {
    const inner = new MemoryCallStore<SmsSlice>();
    const state = { fenced: 0 };
    const store = Object.assign(Object.create(inner) as MemoryCallStore<SmsSlice>, {
      async commit(callId: string, token: string, r: CommitRequest<SmsSlice>): Promise<CommitResult> {
        if (state.fenced === 0 && r.entry?.actions.some((a) => a.type === "send_sms")) {
          state.fenced++;
          return "lease_lost";
        }
        return inner.commit(callId, token, r);
      },
      // The worker's commit: the same refusal.
      async commitAndNext(callId: string, token: string, r: CommitRequest<SmsSlice>): Promise<CommitThen> {
        if (state.fenced === 0 && r.entry?.actions.some((a) => a.type === "send_sms")) {
          state.fenced++;
          return { result: "lease_lost" };
        }
        return inner.commitAndNext(callId, token, r);
      },
    });
    return { store, state };
  }

  it("the rerun approves the same send again: one sms_approved, its handover, no sms_not_sent", async () => {
    const { store, state } = fencedOnce();
    svc = await startTestService({ config: testConfig({ server: { answerWithinMs: 0 }, tasks: { sms: { recipients: { perRecipient: { max: 1, windowSeconds: 3600 } } } } }), store });
    const id = "handover-rerun-same";
    await atConsentQuestion(svc, id);
    svc.fake.reset();
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }), reply.tool("record_consent", { consented: true }));
    const yes = await svc.post(ev.speak(id, "Ja, gerne."));
    expect(state.fenced).toBe(1);
    // Sent once (the limit of 1 per recipient holds: the fenced attempt gave its hit back).
    expect(smsActions(yes.actions)).toEqual([expect.objectContaining({ phone_number: CALLER })]);
    await settled(svc.memoryLedger, id, "the handover recorded");
    // Give the fenced attempt's settling its turn (it looks every leaseMs/4): it must find the approval carried, and write nothing.
    await new Promise((r) => setTimeout(r, 1500));
    const { approvals, outcomesOf } = evidence(svc.memoryLedger, id);
    expect(approvals).toEqual([expect.objectContaining({ id: `${id}:e3:sms_approved:0` })]);
    expect(evidence(svc.memoryLedger, id).records.filter((r) => r.kind === "sms_approved")).toHaveLength(1);
    expect(outcomesOf(approvals[0]!)).toEqual([expect.objectContaining({ kind: "sms_handed_over" })]);
  });

  it("the rerun does not approve it again (the model heard a 'no'): the first approval gets sms_not_sent, lease_lost", async () => {
    const { store, state } = fencedOnce();
    svc = await startTestService({ config: testConfig({ server: { answerWithinMs: 0 }, tasks: { sms: { recipients: { perRecipient: OPEN } } } }), store });
    const id = "handover-rerun-other";
    await atConsentQuestion(svc, id);
    svc.fake.reset();
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }), reply.tool("record_consent", { consented: false }));
    const answer = await svc.post(ev.speak(id, "Ja, gerne."));
    expect(state.fenced).toBe(1);
    expect(smsActions(answer.actions)).toEqual([]);
    const { approvals, outcomesOf } = await settled(svc.memoryLedger, id, "the fenced attempt's approval settled");
    expect(approvals).toHaveLength(1);
    expect(outcomesOf(approvals[0]!)).toEqual([expect.objectContaining({ kind: "sms_not_sent", reason: "lease_lost", number: CALLER })]);
    expect(evidence(svc.memoryLedger, id).records.map((r) => r.kind)).toContain("consent_declined");
  });
});

describe("an attempt whose instance died after the approval, before its commit: the event runs again elsewhere", () => {
  /**
   * Two instances on one store, one ledger, one limiter (at most one SMS per recipient). Instance A
   * dies at the commit of the turn that approved the send: from then on nothing it asks of the store
   * returns (a dead process). B takes the call over once A's lease ran out and runs the event again.
   */
  async function twoInstances(id: string, retryReply: ReturnType<typeof reply.tool>) {
    const fake = new FakeOpenAIServer();
    await fake.start();
    const inner = new MemoryCallStore<SmsSlice>();
    const shared = Object.assign(Object.create(inner) as MemoryCallStore<SmsSlice>, { shared: true });
    const hung: Array<(e: Error) => void> = [];
    const a = { dead: false, buried: false };
    // A's connection to the store: dead once it commits a send; at the end, every call fails (so it can be closed).
    const viewOfA = new Proxy(shared, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver) as unknown;
        // subscribe is no request (notices only): passed through.
        if (typeof v !== "function" || prop === "close" || prop === "subscribe") return typeof v === "function" ? v.bind(target) : v;
        return (...args: unknown[]) => {
          if (a.buried) return Promise.reject(new StoreUnavailableError("instance A is gone"));
          if ((prop === "commit" || prop === "commitAndNext") && (args[2] as CommitRequest<SmsSlice>).entry?.actions.some((x) => x.type === "send_sms")) a.dead = true;
          if (a.dead) return new Promise((_, reject) => hung.push(reject));
          return (v as (...x: unknown[]) => unknown).apply(target, args);
        };
      },
    }) as CallStore<SmsSlice>;
    const ledger = new MemoryLedger();
    const limiter = new MemoryRateLimiter();
    const config = testConfig({ server: { leaseMs: 300 }, tasks: { sms: { recipients: { perRecipient: { max: 1, windowSeconds: 3600 } } } } });
    const make = (store: CallStore<SmsSlice>) =>
      createService({ config, clock: new ManualClock(), model: new OpenAIChatModel({ apiKey: "k", baseURL: fake.baseURL, timeoutMs: 10_000, maxRetries: 0 }), ledger, limiter, store, logger: pino({ level: "silent" }) });
    const A = make(viewOfA);
    const B = make(shared);
    const post = async (svc: Service, event: unknown) => {
      const r = await svc.app.inject({ method: "POST", url: "/webhook", headers: { "content-type": "application/json" }, payload: JSON.stringify(event) });
      return r.statusCode === 200 ? ([] as Array<{ type: string; text?: string; phone_number?: string }>).concat(r.json()) : [];
    };
    fake.enqueue(reply.tool("start_sms_flow", { info: "address" }), reply.tool("record_consent", { consented: true }), retryReply);
    await post(A, ev.start(id));
    expect((await post(A, ev.speak(id, "Schicken Sie mir die Adresse per SMS?"))).at(-1)?.text).toMatch(/^Darf ich Ihnen die Informationen per SMS/);
    // A runs the yes and dies at its commit; sipgate's request to it never gets an answer.
    void post(A, ev.speak(id, "Ja, gerne.")).catch(() => undefined);
    await until(() => a.dead, "A to die at its commit");
    const afterDeath = evidence(ledger, id);
    // sipgate goes on with the call on B; once A's lease has run out, B runs the yes again (its second attempt).
    const next = await post(B, ev.timeout(id));
    await until(async () => (await shared.progress(id)).processed >= 4, "B ran both events");
    const close = async () => {
      a.buried = true;
      for (const reject of hung) reject(new StoreUnavailableError("instance A is gone"));
      await A.close();
      await B.close();
      await fake.close();
    };
    return { afterDeath, next, ledger, fake, close };
  }

  it("B approves the same send again: the one approval stands, handed over by B; the limit of one is kept", async () => {
    const id = "handover-died-same";
    const t = await twoInstances(id, reply.tool("record_consent", { consented: true }));
    try {
      expect(t.afterDeath.approvals).toHaveLength(1);
      expect(t.afterDeath.outcomesOf(t.afterDeath.approvals[0]!)).toEqual([]);
      // A's approval gave its hit back when B took the event up, so B's approval is not refused as over the limit.
      expect(t.next.filter((a) => a.type === "send_sms")).toEqual([expect.objectContaining({ phone_number: CALLER })]);
      const { approvals, outcomesOf } = await settled(t.ledger, id, "B's handover");
      expect(approvals).toEqual([expect.objectContaining({ id: `${id}:e3:sms_approved:0` })]);
      expect(outcomesOf(approvals[0]!)).toEqual([expect.objectContaining({ kind: "sms_handed_over" })]);
      // Two model requests for the yes: A's and B's; one record.
      expect(t.fake.requests.filter((r) => (r.tools ?? []).some((x) => x.function.name === "record_consent"))).toHaveLength(2);
    } finally {
      await t.close();
    }
  });

  it("B does not approve it again (the model took the words as a no): A's approval gets sms_not_sent, instance_stopped", async () => {
    const id = "handover-died-other";
    const t = await twoInstances(id, reply.tool("record_consent", { consented: false }));
    try {
      expect(t.next.filter((a) => a.type === "send_sms")).toEqual([]);
      const { approvals, outcomesOf, records } = await settled(t.ledger, id, "A's approval settled");
      expect(approvals).toHaveLength(1);
      expect(outcomesOf(approvals[0]!)).toEqual([expect.objectContaining({ kind: "sms_not_sent", reason: "instance_stopped", id: `${approvals[0]!.id}:sms_not_sent` })]);
      expect(records.map((r) => r.kind)).toContain("consent_declined");
    } finally {
      await t.close();
    }
  });
});

describe("the memory ledger stores an id once", () => {
  it("a retried append of the same record is not written again", async () => {
    const ledger = new MemoryLedger();
    const rec = { id: "c:e3:sms_approved:0", kind: "sms_approved" as const, callId: "c", at: "2026-11-23T09:00:00.000Z", number: CALLER };
    await ledger.append(rec);
    await ledger.append({ ...rec, at: "2026-11-23T09:00:01.000Z" });
    await ledger.append({ ...rec, id: "c:e3:sms_approved:0:sms_handed_over", kind: "sms_handed_over", ref: rec.id });
    expect(ledger.records.map((r) => [r.seq, r.kind, r.at])).toEqual([
      [1, "sms_approved", "2026-11-23T09:00:00.000Z"],
      [2, "sms_handed_over", "2026-11-23T09:00:00.000Z"],
    ]);
  });
});
