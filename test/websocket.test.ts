import type { AddressInfo } from "node:net";
import { pino } from "pino";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { toolPairingProblems } from "../src/engine/history.js";
import { MemoryLedger } from "../src/ledger/memoryLedger.js";
import { OpenAIChatModel } from "../src/llm/openaiChatModel.js";
import { createService, type Service } from "../src/service.js";
import { FakeOpenAIServer, reply } from "./support/fakeOpenAI.js";
import { ev } from "./support/events.js";
import { testConfig } from "./support/harness.js";
import { ManualClock } from "../src/engine/clock.js";
import { Writable } from "node:stream";

/** The deadline timer is armed once the turn is queued; advance only then. */
async function waitForTimer() {
  for (let i = 0; i < 200 && clock.pending === 0; i++) await new Promise((r) => setTimeout(r, 5));
  expect(clock.pending).toBeGreaterThan(0);
}

/** The WebSocket transport with a real `ws` client, as sipgate connects. */

const fake = new FakeOpenAIServer();
/** Sentence streaming on (a setting, off by default); the deadline moves only when a test advances it. */
let svc: Service;
let url: string;
const clock = new ManualClock();
const logLines: Array<Record<string, unknown>> = [];

beforeAll(async () => {
  await fake.start();
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const line of String(chunk).split("\n").filter(Boolean)) logLines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  svc = createService({
    config: testConfig({ speech: { streamSentences: true } }),
    model: new OpenAIChatModel({ apiKey: "k", baseURL: fake.baseURL, timeoutMs: 10_000, maxRetries: 0 }),
    ledger: new MemoryLedger(),
    logger: pino({ level: "info" }, sink),
    apiToken: "ws-token",
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

interface Frame {
  at: number;
  data: { type?: string; text?: string; error?: string; [k: string]: unknown };
}

async function connect(headers: Record<string, string> = { "x-api-token": "ws-token" }, at = url) {
  const ws = new WebSocket(at, { headers, perMessageDeflate: false });
  const frames: Frame[] = [];
  ws.on("message", (d) => frames.push({ at: Date.now(), data: JSON.parse(d.toString()) }));
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  const send = (e: unknown) => ws.send(JSON.stringify(e));
  const waitFor = async (pred: (f: Frame[]) => boolean, ms = 5000) => {
    const t0 = Date.now();
    while (!pred(frames)) {
      if (Date.now() - t0 > ms) throw new Error(`timed out; frames: ${JSON.stringify(frames.map((f) => f.data))}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  return { ws, frames, send, waitFor };
}

const speaks = (frames: Frame[]) => frames.filter((f) => f.data.type === "speak").map((f) => f.data.text);

describe("WebSocket transport", () => {
  it("rejects an upgrade without the token, and other paths", async () => {
    await expect(connect({})).rejects.toThrow(/401/);
    const wrongPath = new WebSocket(url.replace("/ws", "/other"), { headers: { "x-api-token": "ws-token" } });
    await expect(new Promise((_, reject) => wrongPath.once("error", reject))).rejects.toThrow(/404/);
  });

  it("accepts the token as a query parameter too, and never logs it", async () => {
    const c = await connect({}, `${url}?token=ws-token`);
    c.send(ev.start("ws-query"));
    await c.waitFor((f) => speaks(f).length === 1);
    c.ws.close();
    await expect(connect({}, `${url}?token=wrong-secret`)).rejects.toThrow(/401/);
    expect(JSON.stringify(logLines)).not.toContain("ws-token");
    expect(JSON.stringify(logLines)).not.toContain("wrong-secret");
  });

  it("answers events with pushed actions; bad frames are logged, never answered, and the socket stays open", async () => {
    const c = await connect();
    c.send(ev.start("ws-1"));
    await c.waitFor((f) => speaks(f).length === 1);
    expect(speaks(c.frames)[0]).toMatch(/^Guten Tag/);
    const before = logLines.length;
    c.ws.send("{not json");
    c.ws.send(JSON.stringify({ session: { id: "x" } }));
    c.ws.send(Buffer.from([1, 2, 3]), { binary: true });
    for (let i = 0; i < 100 && logLines.length < before + 3; i++) await new Promise((r) => setTimeout(r, 10));
    // The same "event rejected" line the webhook writes for the same input (test/intake.test.ts).
    expect(logLines.slice(before).map((l) => [l.msg, l.transport, l.problem])).toEqual([
      ["event rejected", "ws", "not_json"],
      ["event rejected", "ws", "invalid_event"],
      ["event rejected", "ws", "transport"],
    ]);
    expect(logLines.slice(before).map((l) => l.error)).toEqual([
      "Invalid event: not valid JSON",
      "Invalid event: type: missing type field",
      "Invalid event: a binary frame (events are JSON text frames)",
    ]);
    // Nothing but actions ever goes to sipgate; the next event is answered as usual.
    c.send(ev.speak("ws-1", "Hallo"));
    await c.waitFor((f) => speaks(f).length === 2);
    expect(c.frames.every((f) => typeof f.data.type === "string" && f.data.error === undefined)).toBe(true);
    expect(c.ws.readyState).toBe(WebSocket.OPEN);
    c.ws.close();
  });

  it("streams the answer: the first sentence is spoken before the model has finished", async () => {
    const c = await connect();
    c.send(ev.start("ws-stream"));
    await c.waitFor((f) => speaks(f).length === 1);
    fake.enqueue({ kind: "message", text: "Wir haben Montag bis Freitag geöffnet. Dienstags auch nachmittags von 15 bis 18 Uhr. Kann ich sonst noch helfen?", ttftMs: 50, tokenDelayMs: 40 });
    const sent = Date.now();
    c.send(ev.speak("ws-stream", "Wann haben Sie geöffnet?"));
    // On a loaded machine the holding line may come first; it is not part of the answer.
    const answer = () => c.frames.filter((f) => f.data.type === "speak" && f.data.text !== "Einen Moment bitte.").slice(1);
    await c.waitFor(() => answer().length === 3);
    const [first, second, third] = answer();
    expect([first!.data.text, second!.data.text, third!.data.text]).toEqual(["Wir haben Montag bis Freitag geöffnet.", "Dienstags auch nachmittags von 15 bis 18 Uhr.", "Kann ich sonst noch helfen?"]);
    // Ordering, not timing: the first sentence left while the model was still streaming.
    expect(first!.at).toBeLessThan(fake.streamEnds[0]!);
    expect(first!.at).toBeGreaterThanOrEqual(sent);
    c.ws.close();
  });

  it("a model slower than the deadline: a holding line, then the answer when it is ready", async () => {
    const c = await connect();
    c.send(ev.start("ws-holding"));
    await c.waitFor((f) => speaks(f).length === 1);
    const gate = fake.block();
    fake.enqueue({ kind: "message", text: "Die Adresse ist Musterstraße 1." });
    c.send(ev.speak("ws-holding", "Wo sind Sie?"));
    await gate.arrived;
    await waitForTimer();
    clock.advance(800);
    await c.waitFor((f) => speaks(f).length === 2);
    expect(speaks(c.frames)[1]).toBe("Einen Moment bitte.");
    // The socket's holding line arms no input timeout: its silence is not the caller's.
    expect(c.frames[1]!.data.user_input_timeout_seconds).toBeUndefined();
    gate.release();
    await c.waitFor((f) => speaks(f).length === 3);
    expect(speaks(c.frames)[2]).toBe("Die Adresse ist Musterstraße 1.");
    // Not part of the conversation: the model never sees it.
    const state = await svc.store.get("ws-holding");
    expect(JSON.stringify(state!.history)).not.toContain("Einen Moment");
    c.ws.close();
  });

  it("the caller starting to speak cancels the generation; history stays valid and the next turn works", async () => {
    const c = await connect();
    const id = "ws-cancel";
    c.send(ev.start(id));
    await c.waitFor((f) => speaks(f).length === 1);
    fake.enqueue({ kind: "message", text: "Das ist eine sehr lange Antwort. " + "Und noch ein Satz dazu. ".repeat(30), ttftMs: 20, tokenDelayMs: 30 });
    c.send(ev.speak(id, "Erzählen Sie mir alles."));
    await c.waitFor((f) => speaks(f).length === 2);
    c.send({ type: "user_speech_started", session: { id, account_id: "1", phone_number: "4921112345678" } });
    await new Promise((r) => setTimeout(r, 300));
    const spokenAfterCancel = speaks(c.frames).length;
    await new Promise((r) => setTimeout(r, 400));
    expect(speaks(c.frames).length).toBe(spokenAfterCancel);
    expect(spokenAfterCancel).toBeLessThan(10);
    expect(fake.streamsAborted).toBe(1);
    fake.enqueue(reply.tool("start_sms_flow", { info: "address" }));
    c.send(ev.speak(id, "Schicken Sie mir einfach die Adresse per SMS.", true));
    await c.waitFor((f) => speaks(f).some((t) => /^Darf ich/.test(t ?? "")));
    const state = await svc.store.get(id);
    expect(toolPairingProblems(state!.history)).toEqual([]);
    const cut = state!.history.find((m) => m.role === "assistant" && typeof m.content === "string" && m.content.startsWith("Das ist eine sehr lange Antwort."));
    expect(cut!.content).toMatch(/interrupted by the caller/);
    c.ws.close();
  });

  it("the whole SMS flow over one socket: consent, then send_sms and the spoken confirmation", async () => {
    const c = await connect();
    const id = "ws-sms";
    c.send(ev.start(id));
    await c.waitFor((f) => speaks(f).length === 1);
    fake.enqueue({ kind: "message", text: "Gern.", toolCalls: [{ name: "start_sms_flow", arguments: { info: "opening_hours" } }] });
    c.send(ev.speak(id, "Die Öffnungszeiten per SMS bitte."));
    await c.waitFor((f) => speaks(f).some((t) => /^Darf ich/.test(t ?? "")));
    fake.enqueue(reply.tool("record_consent", { consented: true }));
    c.send(ev.speak(id, "Ja."));
    await c.waitFor((f) => f.some((x) => x.data.type === "send_sms") && speaks(f).some((t) => /abgeschickt/.test(t ?? "")));
    const types = c.frames.map((f) => f.data.type);
    expect(types.indexOf("send_sms")).toBeLessThan(types.lastIndexOf("speak"));
    expect(speaks(c.frames)).toContain("Gern.");
    c.ws.close();
  });

  it("a frame over server.maxBodyBytes closes that socket (1009) and is logged; the service goes on", async () => {
    const c = await connect();
    const closed = new Promise<number>((r) => c.ws.once("close", (code) => r(code)));
    const before = logLines.length;
    c.ws.send(JSON.stringify({ type: "user_speak", text: "x".repeat(70_000), session: { id: "ws-big" } }));
    expect(await closed).toBe(1009);
    for (let i = 0; i < 100 && !logLines.slice(before).some((l) => l.msg === "WebSocket error"); i++) await new Promise((r) => setTimeout(r, 10));
    expect(logLines.slice(before).find((l) => l.msg === "WebSocket error")).toMatchObject({ level: 40, err: expect.stringMatching(/payload/i) });
    const next = await connect();
    next.send(ev.start("ws-after-big"));
    await next.waitFor((f) => speaks(f).length === 1);
    next.ws.close();
  });

  it("graceful shutdown: the turn in flight finishes and is pushed, then the socket is closed with 1001", async () => {
    const local = createService({
      config: testConfig(),
      model: new OpenAIChatModel({ apiKey: "k", baseURL: fake.baseURL, timeoutMs: 10_000, maxRetries: 0 }),
      ledger: new MemoryLedger(),
      logger: pino({ level: "silent" }),
      clock: new ManualClock(),
    });
    await local.app.listen({ port: 0, host: "127.0.0.1" });
    const c = await connect({}, `ws://127.0.0.1:${(local.app.server.address() as AddressInfo).port}/ws`);
    const closed = new Promise<number>((r) => c.ws.once("close", (code) => r(code)));
    c.send(ev.start("ws-shutdown"));
    await c.waitFor((f) => speaks(f).length === 1);
    const gate = fake.block();
    fake.enqueue({ kind: "message", text: "Die Antwort kommt noch." });
    c.send(ev.speak("ws-shutdown", "Hallo?"));
    await gate.arrived;
    const closing = local.close();
    await new Promise((r) => setTimeout(r, 50));
    expect(c.ws.readyState).toBe(WebSocket.OPEN);
    gate.release();
    await c.waitFor((f) => speaks(f).includes("Die Antwort kommt noch."));
    expect(await closed).toBe(1001);
    await closing;
  });

  it("several sessions on one socket are kept apart", async () => {
    const c = await connect();
    c.send(ev.start("ws-a"));
    c.send(ev.start("ws-b"));
    await c.waitFor((f) => speaks(f).length === 2);
    expect(new Set(c.frames.map((f) => f.data.session_id))).toEqual(new Set(["ws-a", "ws-b"]));
    c.ws.close();
  });
});
