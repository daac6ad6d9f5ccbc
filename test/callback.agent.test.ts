import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { verifySignature } from "../src/outbox/signing.js";
import { MemoryOutbox } from "../src/outbox/memoryOutbox.js";
import { OutboxUnavailableError } from "../src/outbox/outbox.js";
import { speakable } from "../src/tasks/sms/numbers.js";
import { PromptLibrary } from "../src/engine/promptLibrary.js";
import { PROMPTS_DIR } from "../src/service.js";
import type { CallbackReport } from "../src/agents/callback/report.js";
import { reply } from "./support/fakeOpenAI.js";
import { CALLER, ev } from "./support/events.js";
import { callbackTestConfig, smsActions, spoken, startTestService, testConfig, type TestService } from "./support/harness.js";
import { startReceiver, type Receiver, type Reply } from "./support/webhookReceiver.js";
import { postPending, until } from "./support/deadline.js";

/**
 * The callback agent (issue 13, point 3), built only from the public parts: it collects name,
 * reason and time window (each read back and confirmed), offers the SMS confirmation through the
 * SMS task, and after the call posts the request to the configured endpoint from the durable
 * outbox: signed, with an idempotency key, retried with backoff, never in the call's way.
 */

const READ_NAME = (v: string) => `Ich habe Ihren Namen als ${v} notiert. Ist das richtig?`;
const READ_REASON = (v: string) => `Es geht also um: ${v}. Stimmt das so?`;
const READ_WINDOW = (v: string) => `Wir rufen Sie ${v} zurück. Passt das?`;
const SPOKEN_CALLER = speakable(CALLER, "DE");
const QUESTION = `Darf ich Ihnen eine Bestätigung Ihrer Rückrufbitte per SMS an die Nummer ${SPOKEN_CALLER} schicken?`;
const DONE = "Vielen Dank, Anna Schmidt. Ihre Rückrufbitte ist notiert, wir melden uns morgen zwischen 9 und 12 Uhr.";
/** With all three details confirmed the caller hears that the request is taken, then the SMS offer. */
const OFFER = [DONE, QUESTION];
const SMS_TEXT = "Praxis Dr. Muster: Ihre Rückrufbitte ist eingegangen. Wir rufen Sie im gewünschten Zeitraum zurück. Antworten auf diese SMS werden nicht gelesen.";

const prompts = new PromptLibrary(PROMPTS_DIR, "de-DE");
let svc: TestService;
let receiver: Receiver;
/** How the receiver answers the n-th post; each test sets it. */
let answer: (n: number) => Reply = () => ({ status: 200 });

beforeAll(async () => {
  receiver = await startReceiver((_r, n) => answer(n));
  svc = await startTestService({ config: callbackTestConfig(receiver.url) });
});
afterAll(async () => {
  await svc.close();
  await receiver.close();
});
beforeEach(() => {
  svc.fake.reset();
  receiver.received.length = 0;
  answer = () => ({ status: 200 });
});

/** Drive the three details to confirmation; returns what the caller heard last (the consent question). */
async function collectAll(id: string): Promise<string[]> {
  await svc.post(ev.start(id));
  svc.fake.enqueue(reply.tool("note_callback_detail", { field: "name", value: "Anna Schmidt" }));
  expect(spoken((await svc.post(ev.speak(id, "Anna Schmidt"))).actions)).toEqual([READ_NAME("Anna Schmidt")]);
  svc.fake.enqueue(reply.tool("confirm_callback_detail", { field: "name", correct: true }), reply.text("Worum geht es?"));
  expect(spoken((await svc.post(ev.speak(id, "Ja, genau."))).actions)).toEqual(["Worum geht es?"]);
  svc.fake.enqueue(reply.tool("note_callback_detail", { field: "reason", value: "eine Frage zur Rechnung" }));
  expect(spoken((await svc.post(ev.speak(id, "Ich habe eine Frage zur Rechnung."))).actions)).toEqual([READ_REASON("eine Frage zur Rechnung")]);
  svc.fake.enqueue(reply.tool("confirm_callback_detail", { field: "reason", correct: true }), reply.text("Wann dürfen wir Sie zurückrufen?"));
  await svc.post(ev.speak(id, "Ja."));
  svc.fake.enqueue(reply.tool("note_callback_detail", { field: "time_window", value: "morgen zwischen 9 und 12 Uhr" }));
  expect(spoken((await svc.post(ev.speak(id, "Morgen zwischen neun und zwölf."))).actions)).toEqual([READ_WINDOW("morgen zwischen 9 und 12 Uhr")]);
  svc.fake.enqueue(reply.tool("confirm_callback_detail", { field: "time_window", correct: true }));
  return spoken((await svc.post(ev.speak(id, "Ja, passt."))).actions);
}

/** Run the poster until nothing is due (each cycle as the background loop would). */
async function postDue(): Promise<void> {
  for (let i = 0; i < 10; i++) {
    const r = await svc.poster!.runOnce();
    if (r.claimed === 0) return;
  }
}

const lastReport = (): CallbackReport => JSON.parse(receiver.received.at(-1)!.body) as CallbackReport;

describe("the callback agent", () => {
  it("collects, confirms each detail, offers the SMS through the SMS task, and posts the request after session_end", async () => {
    const id = "cb-happy";
    // The last confirmation moves on at once: no model request, the consent question is the offer.
    expect(await collectAll(id)).toEqual(OFFER);
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
    const yes = await svc.post(ev.speak(id, "Ja, gerne."));
    expect(smsActions(yes.actions)).toEqual([{ type: "send_sms", session_id: id, phone_number: CALLER, message: SMS_TEXT }]);
    // The SMS outcome ("… Kann ich sonst noch etwas für Sie tun?") ends the answer: no thanks after the question.
    expect(spoken(yes.actions)).toEqual([prompts.line("sms_sent", { number: SPOKEN_CALLER })]);
    // Nothing is posted while the call runs: the report waits for the call's end.
    await postDue();
    expect(receiver.received).toHaveLength(0);

    await svc.post(ev.end(id));
    // The receiver fails at first: 500, then a dropped connection, then it takes the post.
    answer = (n) => (n === 1 ? { status: 500 } : n === 2 ? "reset" : { status: 200 });
    await postDue();
    expect(receiver.received).toHaveLength(1);
    svc.clock.advance(1_100); // past the first backoff (1 s × factor^0, equal jitter: 0.5–1 s)
    await postDue();
    svc.clock.advance(2_100);
    await postDue();
    expect(receiver.received).toHaveLength(3);
    // Every attempt: the same raw body, the same idempotency key, a valid signature.
    const bodies = new Set(receiver.received.map((r) => r.body));
    expect(bodies.size).toBe(1);
    for (const r of receiver.received) {
      expect(r.headers["idempotency-key"]).toBe(id);
      expect(r.headers["content-type"]).toMatch(/application\/json/);
      const ok = verifySignature("test-secret", { timestamp: r.headers["x-signature-timestamp"], signature: r.headers["x-signature"] }, r.body, { nowSeconds: Number(r.headers["x-signature-timestamp"]) });
      expect(ok).toBe(true);
    }
    expect(lastReport()).toMatchObject({
      type: "callback_request",
      callId: id,
      callerNumber: CALLER,
      request: { name: "Anna Schmidt", reason: "eine Frage zur Rechnung", timeWindow: "morgen zwischen 9 und 12 Uhr", confirmed: { name: true, reason: true, timeWindow: true }, complete: true },
      sms: { status: "handed_over", number: CALLER },
      call: { ended: "session_end" },
    });
    // Delivered once: a later cycle posts nothing more.
    svc.clock.advance(600_000);
    await postDue();
    expect(receiver.received).toHaveLength(3);
    expect(await svc.outbox!.pending()).toBe(0);
  });

  it("a yes in the same turn as the read-back, or after something else was said, does not confirm: the detail is read back again", async () => {
    const id = "cb-same-turn";
    await svc.post(ev.start(id));
    svc.fake.enqueue(reply.tools({ name: "note_callback_detail", arguments: { field: "name", value: "Max Weber" } }, { name: "confirm_callback_detail", arguments: { field: "name", correct: true } }));
    const r = await svc.post(ev.speak(id, "Max Weber"));
    expect(spoken(r.actions)).toEqual([READ_NAME("Max Weber"), READ_NAME("Max Weber")]);
    const state = await svc.store.get(id);
    expect((state as unknown as { callback: { details: { name?: { confirmed: boolean } } } }).callback.details.name?.confirmed).toBe(false);
    // The model is told why, as the confirmation's tool result.
    expect(state!.history.some((m) => m.role === "tool" && m.content === prompts.note("callback_read_back_repeated", { field: "name" }))).toBe(true);
  });

  it("a no to the read-back drops the detail: it is asked again, never kept", async () => {
    const id = "cb-no";
    await svc.post(ev.start(id));
    svc.fake.enqueue(reply.tool("note_callback_detail", { field: "name", value: "Anna Schmid" }));
    await svc.post(ev.speak(id, "Anna Schmid"));
    svc.fake.enqueue(reply.tool("confirm_callback_detail", { field: "name", correct: false }), reply.text("Wie ist Ihr Name richtig?"));
    expect(spoken((await svc.post(ev.speak(id, "Nein, Schmidt mit dt."))).actions)).toEqual(["Wie ist Ihr Name richtig?"]);
    const state = (await svc.store.get(id)) as unknown as { callback: { details: { name?: unknown } } };
    expect(state.callback.details.name).toBeUndefined();
  });

  it("a declined SMS: nothing is sent, the request is still taken, and the report says declined", async () => {
    const id = "cb-decline";
    expect(await collectAll(id)).toEqual(OFFER);
    svc.fake.enqueue(reply.tool("record_consent", { consented: false }));
    const no = await svc.post(ev.speak(id, "Nein, keine SMS."));
    expect(smsActions(no.actions)).toEqual([]);
    expect(spoken(no.actions)).toEqual([prompts.line("sms_declined")]);
    await svc.post(ev.end(id));
    await postDue();
    expect(lastReport()).toMatchObject({ callId: id, request: { complete: true }, sms: { status: "declined" } });
    expect(svc.memoryLedger.records.filter((r) => r.callId === id).map((r) => r.kind)).toEqual(["consent_asked", "consent_declined"]);
  });

  it("a call whose session_end never comes (handed over, dropped) is posted when its state expires, marked so", async () => {
    const id = "cb-expired";
    await svc.post(ev.start(id));
    svc.fake.enqueue(reply.tool("note_callback_detail", { field: "name", value: "Jonas Berg" }));
    await svc.post(ev.speak(id, "Jonas Berg"));
    await postDue();
    expect(receiver.received).toHaveLength(0);
    // One hour of state TTL (limits.sessionTtlSeconds) and the grace minute later: due.
    svc.clock.advance(3_600_000 + 60_000 + 1);
    await postDue();
    // (Other tests' calls that never ended expire with it.)
    const mine = receiver.received.filter((r) => r.headers["idempotency-key"] === id);
    expect(mine).toHaveLength(1);
    expect(JSON.parse(mine[0]!.body)).toMatchObject({ callId: id, request: { name: "Jonas Berg", confirmed: { name: false }, complete: false }, sms: { status: "not_offered" }, call: { ended: "state_expired" } });
  });

  it("a later sms_failed reaches the agent after it moved on: the report names the failure", async () => {
    const id = "cb-failed";
    await collectAll(id);
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
    await svc.post(ev.speak(id, "Ja."));
    const failed = await svc.post(ev.smsFailed(id, "insufficient_balance"));
    expect(spoken(failed.actions)).toHaveLength(1);
    await svc.post(ev.end(id));
    await postDue();
    expect(lastReport()).toMatchObject({ sms: { status: "handed_over", failed: "insufficient_balance" } });
  });

  it("a receiver that rejects the payload (400) does not get it again: it is dead-lettered for an operator", async () => {
    const id = "cb-rejected";
    await svc.post(ev.start(id));
    await svc.post(ev.end(id));
    answer = () => ({ status: 400 });
    await postDue();
    svc.clock.advance(600_000);
    await postDue();
    expect(receiver.received).toHaveLength(1);
    expect((await svc.outbox!.deadLetters()).map((d) => d.key)).toContain(id);
  });
});

describe("the report never blocks the call", () => {
  it("an outbox that cannot be written (Redis down) costs the caller nothing: every turn answers as usual", async () => {
    const broken = new MemoryOutbox();
    let puts = 0;
    broken.put = async () => {
      puts++;
      throw new OutboxUnavailableError("outbox down (simulated)");
    };
    const s = await startTestService({ config: callbackTestConfig(receiver.url), callback: { outbox: broken } });
    try {
      const id = "cb-outbox-down";
      expect(spoken((await s.post(ev.start(id))).actions)[0]).toMatch(/Wie ist Ihr Name\?$/);
      s.fake.enqueue(reply.tool("note_callback_detail", { field: "name", value: "Lea Vogel" }));
      const r = await s.post(ev.speak(id, "Lea Vogel"));
      expect(r.status).toBe(200);
      expect(spoken(r.actions)).toEqual([READ_NAME("Lea Vogel")]);
      expect((await s.post(ev.end(id))).status).toBe(204);
      // Two snapshots, and the final report tried three times (the call is over: nobody waits for it).
      expect(puts).toBe(5);
    } finally {
      await s.close();
    }
  });
});

describe("review findings (each one a defect found by an adversarial review)", () => {
  /** Name noted and read back; returns the call id. */
  async function nameReadBack(id: string): Promise<void> {
    await svc.post(ev.start(id));
    svc.fake.enqueue(reply.tool("note_callback_detail", { field: "name", value: "Anna Schmidt" }));
    await svc.post(ev.speak(id, "Anna Schmidt"));
  }
  const confirmed = async (id: string, field: "name" | "reason" | "time_window") =>
    ((await svc.store.get(id)) as unknown as { callback: { details: Record<string, { confirmed: boolean } | undefined> } }).callback.details[field]?.confirmed;

  it("a yes that cut into the read-back does not confirm it: it is read back again", async () => {
    const id = "cb-review-barge";
    await nameReadBack(id);
    svc.fake.enqueue(reply.tool("confirm_callback_detail", { field: "name", correct: true }));
    const r = await svc.post(ev.speak(id, "Ja", true));
    expect(await confirmed(id, "name")).toBe(false);
    expect(spoken(r.actions)).toEqual([READ_NAME("Anna Schmidt")]);
    // The answer to the repeated read-back counts.
    svc.fake.enqueue(reply.tool("confirm_callback_detail", { field: "name", correct: true }), reply.text("Worum geht es?"));
    await svc.post(ev.speak(id, "Ja, richtig."));
    expect(await confirmed(id, "name")).toBe(true);
  });

  it("an empty reply does not confirm the read-back", async () => {
    const id = "cb-review-empty";
    await nameReadBack(id);
    svc.fake.enqueue(reply.tool("confirm_callback_detail", { field: "name", correct: true }));
    await svc.post(ev.speak(id, ""));
    expect(await confirmed(id, "name")).toBe(false);
  });

  it("a yes after something else was said since the read-back does not confirm it", async () => {
    const id = "cb-review-between";
    await nameReadBack(id);
    svc.fake.enqueue(reply.text("Wir haben montags bis freitags von 8 bis 12 Uhr geöffnet."));
    await svc.post(ev.speak(id, "Wann haben Sie geöffnet?"));
    svc.fake.enqueue(reply.tool("confirm_callback_detail", { field: "name", correct: true }));
    const r = await svc.post(ev.speak(id, "Ja."));
    expect(await confirmed(id, "name")).toBe(false);
    expect(spoken(r.actions)).toEqual([READ_NAME("Anna Schmidt")]);
  });

  it("a no batched after the completing yes still counts: the detail is asked again before any SMS offer", async () => {
    const id = "cb-review-batched-no";
    await svc.post(ev.start(id));
    svc.fake.enqueue(reply.tool("note_callback_detail", { field: "name", value: "Anna Schmidt" }));
    await svc.post(ev.speak(id, "Anna Schmidt"));
    svc.fake.enqueue(reply.tool("confirm_callback_detail", { field: "name", correct: true }), reply.text("Worum geht es?"));
    await svc.post(ev.speak(id, "Ja."));
    svc.fake.enqueue(reply.tool("note_callback_detail", { field: "reason", value: "Rechnung" }));
    await svc.post(ev.speak(id, "Rechnung"));
    svc.fake.enqueue(reply.tool("confirm_callback_detail", { field: "reason", correct: true }), reply.text("Wann dürfen wir Sie zurückrufen?"));
    await svc.post(ev.speak(id, "Ja."));
    svc.fake.enqueue(reply.tool("note_callback_detail", { field: "time_window", value: "morgen" }));
    await svc.post(ev.speak(id, "morgen"));
    svc.fake.enqueue(
      reply.tools({ name: "confirm_callback_detail", arguments: { field: "time_window", correct: true } }, { name: "confirm_callback_detail", arguments: { field: "name", correct: false } }),
      reply.text("Wie ist Ihr Name richtig?"),
    );
    const r = await svc.post(ev.speak(id, "Ja passt, aber der Name ist falsch."));
    const state = (await svc.store.get(id))!;
    expect((state as unknown as { callback: { details: { name?: unknown } } }).callback.details.name).toBeUndefined();
    expect(state.step).toBe("collect_details");
    expect(spoken(r.actions).some((t) => t.startsWith("Darf ich Ihnen eine Bestätigung"))).toBe(false);
    expect(svc.memoryLedger.records.filter((x) => x.callId === id && x.kind === "consent_asked")).toEqual([]);
  });

  it("an sms_failed after the goodbye still reaches the report; a successful retry clears it and the closing line is said once", async () => {
    const id = "cb-review-failed-after-goodbye";
    await collectAll(id);
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
    await svc.post(ev.speak(id, "Ja."));
    svc.fake.enqueue(reply.tool("end_call"));
    await svc.post(ev.speak(id, "Danke, tschüss."));
    await svc.post(ev.smsFailed(id, "insufficient_balance"));
    await svc.post(ev.end(id));
    await postDue();
    expect(JSON.parse(receiver.received.find((r) => r.headers["idempotency-key"] === id)!.body)).toMatchObject({ sms: { status: "handed_over", failed: "insufficient_balance" } });

    const retry = "cb-review-retry";
    expect(await collectAll(retry)).toEqual(OFFER);
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
    const first = await svc.post(ev.speak(retry, "Ja."));
    // Said once, with the offer (collectAll): not again with the SMS, nor after the retry.
    expect(spoken(first.actions)).not.toContain(DONE);
    await svc.post(ev.smsFailed(retry, "smsc_unavailable"));
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
    const again = await svc.post(ev.speak(retry, "Ja, nochmal bitte."));
    expect(smsActions(again.actions)).toHaveLength(1);
    expect(spoken(again.actions)).not.toContain(DONE);
    await svc.post(ev.end(retry));
    await postDue();
    const report = JSON.parse(receiver.received.find((r) => r.headers["idempotency-key"] === retry)!.body) as CallbackReport;
    expect(report.sms).toEqual({ status: "handed_over", number: CALLER });
  });

  it("an SMS offered but never answered is reported as unanswered, not as not offered", async () => {
    const id = "cb-review-unanswered";
    expect(await collectAll(id)).toEqual(OFFER);
    await svc.post(ev.end(id));
    await postDue();
    expect(JSON.parse(receiver.received.find((r) => r.headers["idempotency-key"] === id)!.body)).toMatchObject({ request: { complete: true }, sms: { status: "unanswered" } });
  });

  it("the final save is tried again when the outbox fails once at session_end", async () => {
    const outbox = new MemoryOutbox(() => s.clock.now);
    const put = outbox.put.bind(outbox);
    let failNextFinal = true;
    outbox.put = async (key, body, dueAt, opts) => {
      if (opts?.final && failNextFinal) {
        failNextFinal = false;
        throw new OutboxUnavailableError("blip");
      }
      return put(key, body, dueAt, opts);
    };
    const s = await startTestService({ config: callbackTestConfig(receiver.url), callback: { outbox } });
    try {
      const id = "cb-review-final-retry";
      await s.post(ev.start(id));
      await s.post(ev.end(id));
      const due = await outbox.claimDue(s.clock.now, 10, 1000);
      expect(due.map((c) => [c.key, c.final])).toEqual([[id, true]]);
    } finally {
      await s.close();
    }
  });
});

describe("callback config is checked at start-up", () => {
  it("slot and option names are own keys only: toString and constructor are config errors naming the field, not texts", () => {
    expect(() => callbackTestConfig(receiver.url, { agents: { callback: { smsSlots: { info: "toString" } } } })).toThrow(/agents\.callback\.smsSlots\.info.*not an option/s);
    expect(() => callbackTestConfig(receiver.url, { agents: { callback: { smsSlots: { constructor: "x", info: "callback_confirmed" } } } })).toThrow(/agents\.callback\.smsSlots\.constructor.*not a slot/s);
  });

  it("the endpoint must be https (plain http only to localhost); agent: callback needs its section", () => {
    expect(() => callbackTestConfig("http://crm.example.com/hook")).toThrow(/agents\.callback\.endpoint\.url.*https/s);
    expect(() => callbackTestConfig("https://crm.example.com/hook")).not.toThrow();
    expect(() => testConfig({ agent: "callback" })).toThrow(/agents\.callback: agent: callback needs an agents\.callback section/);
  });
});

describe("operators see the report posts", () => {
  it("GET /metrics counts posts by outcome: retried, then delivered", async () => {
    const s = await startTestService({ config: callbackTestConfig(receiver.url) });
    try {
      const id = "cb-metrics";
      answer = (n) => (n === 1 ? { status: 503 } : { status: 200 });
      receiver.received.length = 0;
      await s.post(ev.start(id));
      await s.post(ev.end(id));
      await s.poster!.runOnce();
      s.clock.advance(1_100);
      await s.poster!.runOnce();
      const text = (await s.app.inject({ method: "GET", url: "/metrics" })).body;
      expect(text).toMatch(/aiflow_callback_posts_total\{outcome="retried"\} 1/);
      expect(text).toMatch(/aiflow_callback_posts_total\{outcome="delivered"\} 1/);
    } finally {
      await s.close();
    }
  });
});

describe("review findings, second pass", () => {
  it("a send that never left (the call ended while it waited behind a holding line) is not reported as handed over", async () => {
    const id = "cb-review2-withdrawn";
    expect(await collectAll(id)).toEqual(OFFER);
    // The model is slower than the deadline: the caller hears the holding line.
    const gate = svc.fake.block();
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
    const { answer } = await postPending(svc, ev.speak(id, "Ja, gerne."));
    await gate.arrived;
    svc.deadlineClock.advance(800);
    expect(spoken((await answer).actions)).toEqual(["Einen Moment bitte."]);
    gate.release();
    await until(async () => {
      const p = await svc.store.progress(id);
      return p.processed >= p.queued;
    }, "the late turn to finish");
    // The caller hangs up before the late answer (with its send_sms) is collected.
    await svc.post(ev.end(id));
    await postDue();
    const report = JSON.parse(receiver.received.find((r) => r.headers["idempotency-key"] === id)!.body) as CallbackReport;
    expect(report.sms).toEqual({ status: "refused", reason: "turn_superseded", number: CALLER });
    const approval = svc.memoryLedger.records.find((r) => r.callId === id && r.kind === "sms_approved")!;
    expect(svc.memoryLedger.records.filter((r) => r.callId === id && r.ref === approval.id)).toEqual([expect.objectContaining({ kind: "sms_not_sent", reason: "call_ended" })]);
  });
});

describe("callback endpoint URL", () => {
  it("a value that is not a URL is a config error naming the field, not a crash", () => {
    expect(() => callbackTestConfig("crm.example.com/hook")).toThrow(/agents\.callback\.endpoint\.url/);
    expect(() => callbackTestConfig("http://localhost:8080/hook")).not.toThrow();
    expect(() => callbackTestConfig("http://[::1]:8080/hook")).not.toThrow();
  });
});
