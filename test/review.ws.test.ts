import type { AddressInfo } from "node:net";
import { pino } from "pino";
import { afterAll, beforeAll, beforeEach, expect, it } from "vitest";
import { WebSocket } from "ws";
import { MemoryLedger } from "../src/ledger/memoryLedger.js";
import type { LedgerRecordInput } from "../src/ledger/ledger.js";
import { OpenAIChatModel } from "../src/llm/openaiChatModel.js";
import { createService, type Service } from "../src/service.js";
import { FakeOpenAIServer, reply } from "./support/fakeOpenAI.js";
import { ev } from "./support/events.js";
import { testConfig } from "./support/harness.js";
import { ManualClock } from "../src/engine/clock.js";

class GatedLedger extends MemoryLedger {
  blockKind?: string;
  arrived?: () => void;
  release?: () => void;
  override async append(rec: LedgerRecordInput): Promise<void> {
    if (rec.kind === this.blockKind) {
      this.blockKind = undefined;
      const released = new Promise<void>((r) => (this.release = r));
      this.arrived?.();
      await released;
    }
    return super.append(rec);
  }
  armed(kind: string): Promise<void> {
    this.blockKind = kind;
    return new Promise((r) => (this.arrived = r));
  }
}

const fake = new FakeOpenAIServer();
const ledger = new GatedLedger();
const clock = new ManualClock();
let svc: Service;
let url: string;
beforeAll(async () => {
  await fake.start();
  svc = createService({
    config: testConfig({ tasks: { sms: { recipients: { perRecipient: { max: 1000, windowSeconds: 60 } } } } }),
    model: new OpenAIChatModel({ apiKey: "k", baseURL: fake.baseURL, timeoutMs: 10_000, maxRetries: 0 }),
    ledger,
    logger: pino({ level: "silent" }),
    clock,
  });
  await svc.app.listen({ port: 0, host: "127.0.0.1" });
  url = `ws://127.0.0.1:${(svc.app.server.address() as AddressInfo).port}/ws`;
});
afterAll(async () => {
  await svc.close();
  await fake.close();
});
beforeEach(() => fake.reset());

/** A socket whose call has just been asked the consent question (greeting, SMS request, question: two frames). */
async function atConsentQuestion(id: string) {
  const c = await connect();
  c.send(ev.start(id));
  await c.waitFor(() => c.frames.length === 1);
  fake.enqueue(reply.tool("start_sms_flow", { info: "address" }));
  c.send(ev.speak(id, "Schicken Sie mir die Adresse per SMS"));
  await c.waitFor(() => c.frames.length === 2);
  return c;
}

async function connect() {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  const frames: Array<Record<string, unknown>> = [];
  ws.on("message", (d) => frames.push(JSON.parse(d.toString())));
  await new Promise<void>((res, rej) => {
    ws.once("open", () => res());
    ws.once("error", rej);
  });
  const send = (e: unknown) => ws.send(JSON.stringify(e));
  const waitFor = async (pred: () => boolean | Promise<boolean>, ms = 3000) => {
    const t0 = Date.now();
    while (!(await pred())) {
      if (Date.now() - t0 > ms) throw new Error(`timed out; frames: ${JSON.stringify(frames)}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  return { ws, frames, send, waitFor };
}
const settle = (ms = 100) => new Promise((r) => setTimeout(r, ms));

it("a barge-in after the deadline: the committed turn is still pushed, and a question the caller spoke over is no question they answered", async () => {
  const id = "ws-strand";
  const c = await connect();
  c.send(ev.start(id));
  await c.waitFor(() => c.frames.length === 1);
  fake.enqueue(reply.tool("start_sms_flow", { info: "address" }));
  const blocked = ledger.armed("consent_asked");
  c.send(ev.speak(id, "Schicken Sie mir die Adresse per SMS"));
  await blocked;
  await c.waitFor(() => clock.pending > 0);
  clock.advance(800); // the deadline passes: holding line
  await c.waitFor(() => c.frames.length === 2);
  c.send({ type: "user_speech_started", session: ev.start(id).session });
  await settle(50);
  ledger.release!();
  await c.waitFor(async () => (await svc.store.get(id))?.step === "confirm_consent");
  await settle();
  // The committed turn is still pushed: the question was not stranded.
  await c.waitFor(() => c.frames.some((f) => /^Darf ich/.test(String(f.text ?? ""))));
  fake.enqueue(reply.tool("record_consent", { consented: true }));
  c.send(ev.speak(id, "Ja, genau."));
  await c.waitFor(() => c.frames.some((f) => f.type === "send_sms"), 2000).catch(() => undefined);
  // But the caller spoke over it: their words answer no question, and it is asked again.
  expect(c.frames.some((f) => f.type === "send_sms")).toBe(false);
  expect(c.frames.filter((f) => /^Darf ich/.test(String(f.text ?? "")))).toHaveLength(2);
  c.ws.close();
});

it("a barge-in while the send's evidence is written: the approved send_sms is pushed", async () => {
  const id = "ws-strand-sms";
  const c = await atConsentQuestion(id);
  fake.enqueue(reply.tool("record_consent", { consented: true }));
  const blocked = ledger.armed("sms_approved");
  c.send(ev.speak(id, "Ja, gerne."));
  await blocked;
  await c.waitFor(() => clock.pending > 0);
  clock.advance(800); // the deadline passes: holding line
  await c.waitFor(() => c.frames.length === 3);
  c.send({ type: "user_speech_started", session: ev.start(id).session });
  await settle(50);
  ledger.release!();
  await c.waitFor(() => c.frames.some((f) => f.type === "send_sms"));
  await c.waitFor(() => ledger.records.some((r) => r.callId === id && r.kind === "sms_handed_over"));
  expect(ledger.records.filter((r) => r.callId === id).map((r) => r.kind)).toEqual(expect.arrayContaining(["sms_approved", "sms_handed_over"]));
  c.ws.close();
});

it("on the socket, one holding line at a time: events queued behind a slow turn get none of their own", async () => {
  const id = "ws-hold-loop";
  const c = await connect();
  c.send(ev.start(id));
  await c.waitFor(() => c.frames.length === 1);
  const gate = fake.block();
  fake.enqueue(reply.text("Endlich die Antwort."));
  c.send(ev.speak(id, "Eine Frage"));
  await gate.arrived;
  await c.waitFor(() => clock.pending > 0);
  clock.advance(800);
  await c.waitFor(() => c.frames.length === 2);
  // sipgate reports the holding line being spoken, again and again: no event gets a holding line of its own.
  for (let i = 0; i < 4; i++) {
    c.send(ev.assistantSpeak(id, "Einen Moment bitte."));
    await c.waitFor(() => clock.pending > 0);
    clock.advance(800);
    await settle(30);
  }
  gate.release();
  await c.waitFor(() => c.frames.some((f) => f.text === "Endlich die Antwort."));
  const holding = c.frames.filter((f) => f.text === "Einen Moment bitte.").length;
  expect(holding).toBe(1);
  c.ws.close();
});

it("a barge-in cancels the running generation even after other events arrived on the socket", async () => {
  const id = "ws-cancel";
  const c = await connect();
  c.send(ev.start(id));
  await c.waitFor(() => c.frames.length === 1);
  const gate = fake.block();
  fake.enqueue(reply.text("Lange Antwort."));
  c.send(ev.speak(id, "Eine Frage"));
  await gate.arrived;
  c.send(ev.speechEnded(id)); // any event: e.g. the end of the previous line's audio
  await settle(30);
  c.send({ type: "user_speech_started", session: ev.start(id).session });
  await settle(100);
  gate.release();
  await c.waitFor(() => c.frames.some((f) => f.text === "Lange Antwort."), 2000).catch(() => undefined);
  expect(c.frames.some((f) => f.text === "Lange Antwort.")).toBe(false);
  c.ws.close();
});

it("nothing per call is left in the pipeline after calls end, also when the caller hangs up during a holding line", async () => {
  const pipeline = svc.pipeline as unknown as { answers: { wsHeld: Set<string>; wsEchoes: Map<string, number> }; worker: { streams: Map<string, unknown>; pumps: Map<string, unknown> } };
  const p = { ...pipeline.answers, ...pipeline.worker } as unknown as { wsHeld: Set<string>; wsEchoes: Map<string, number>; streams: Map<string, unknown>; pumps: Map<string, unknown> };
  for (let k = 0; k < 3; k++) {
    const id = `ws-leak-${k}`;
    const c = await connect();
    c.send(ev.start(id));
    await c.waitFor(() => c.frames.length === 1);
    const gate = fake.block();
    fake.enqueue(reply.text("x."));
    c.send(ev.speak(id, "Frage"));
    await gate.arrived;
    await c.waitFor(() => clock.pending > 0);
    clock.advance(800);
    await c.waitFor(() => c.frames.length === 2);
    gate.release();
    await c.waitFor(() => c.frames.length === 3);
    c.send(ev.end(id)); // hung up: no assistant_speech_ended for the holding line
    await settle(50);
    c.ws.close();
  }
  await settle(100);
  // Other tests' calls may still be alive; these three ended.
  expect([...p.wsHeld, ...p.wsEchoes.keys()].filter((id) => id.startsWith("ws-leak-"))).toEqual([]);
  expect(p.streams.size + p.pumps.size).toBe(0);
});

it("the caller's voice after 'Ja' cancels generation, not the send", async () => {
  const id = "ws-yes-then-talk";
  const c = await atConsentQuestion(id);
  fake.enqueue(reply.tool("record_consent", { consented: true }));
  const blocked = ledger.armed("consent_given");
  c.send(ev.speak(id, "Ja, gerne."));
  await blocked;
  c.send({ type: "user_speech_started", session: ev.start(id).session });
  await settle(50);
  ledger.release!();
  await c.waitFor(() => c.frames.length >= 3);
  await c.waitFor(() => c.frames.some((f) => f.type === "send_sms"));
  expect((await svc.store.get(id))!.sms.sent).toHaveLength(1);
  c.ws.close();
});

it("a holding line the caller cut off swallows no later assistant_speech_ended (issue 17, point 8)", async () => {
  const id = "ws-cut-holding";
  const c = await connect();
  c.send(ev.start(id));
  await c.waitFor(() => c.frames.length === 1);
  const gate = fake.block();
  fake.enqueue(reply.tool("end_call"));
  c.send(ev.speak(id, "Das war's, danke."));
  await gate.arrived;
  await c.waitFor(() => clock.pending > 0);
  clock.advance(800);
  await c.waitFor(() => c.frames.length === 2); // the holding line
  gate.release();
  await c.waitFor(() => c.frames.some((f) => f.type === "speak" && /Wiederhören/.test(String(f.text))));
  // The caller talks over the holding line: sipgate cuts it, and sends no assistant_speech_ended for it.
  c.send({ type: "user_speech_started", session: ev.start(id).session });
  await settle(30);
  // The goodbye has been played: its assistant_speech_ended is the flow's (it hangs up), not a holding line's echo.
  c.send(ev.speechEnded(id));
  await c.waitFor(() => c.frames.some((f) => f.type === "hangup"));
  c.ws.close();
});

it("a socket that closes without session_end leaves no per-call bookkeeping behind (issue 17, point 8)", async () => {
  const p = (svc.pipeline as unknown as { answers: { wsHeld: Set<string>; wsEchoes: Map<string, number> } }).answers;
  const id = "ws-closed-mid-hold";
  const c = await connect();
  c.send(ev.start(id));
  await c.waitFor(() => c.frames.length === 1);
  const gate = fake.block();
  fake.enqueue(reply.text("Antwort."));
  c.send(ev.speak(id, "Frage"));
  await gate.arrived;
  await c.waitFor(() => clock.pending > 0);
  clock.advance(800);
  await c.waitFor(() => c.frames.length === 2); // the holding line: its echo is awaited
  expect(p.wsEchoes.has(id)).toBe(true);
  c.ws.close();
  gate.release();
  await settle(150);
  expect(p.wsHeld.has(id) || p.wsEchoes.has(id)).toBe(false);
});
