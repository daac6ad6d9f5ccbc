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

/** The WebSocket transport with a real `ws` client, as sipgate connects. */

const fake = new FakeOpenAIServer();
let svc: Service;
let url: string;

beforeAll(async () => {
  await fake.start();
  svc = createService({
    config: testConfig({ speech: { fillerAfterMs: 400 } }),
    model: new OpenAIChatModel({ apiKey: "k", baseURL: fake.baseURL, timeoutMs: 10_000, maxRetries: 0 }),
    ledger: new MemoryLedger(),
    logger: pino({ level: "silent" }),
    apiToken: "ws-token",
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

async function connect(headers: Record<string, string> = { "x-api-token": "ws-token" }) {
  const ws = new WebSocket(url, { headers, perMessageDeflate: false });
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

  it("answers events with pushed actions; bad frames get an error frame, not a dropped socket", async () => {
    const c = await connect();
    c.send(ev.start("ws-1"));
    await c.waitFor((f) => speaks(f).length === 1);
    expect(speaks(c.frames)[0]).toMatch(/^Guten Tag/);
    c.ws.send("{not json");
    c.ws.send(JSON.stringify({ session: { id: "x" } }));
    await c.waitFor((f) => f.filter((x) => x.data.error).length === 2);
    expect(c.frames.filter((x) => x.data.error).map((x) => x.data.error)).toEqual(["Invalid frame: not valid JSON", "Invalid event: type: missing type field"]);
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

  it("a slow model gets a filler line first", async () => {
    const c = await connect();
    c.send(ev.start("ws-filler"));
    await c.waitFor((f) => speaks(f).length === 1);
    fake.enqueue({ kind: "message", text: "Die Adresse ist Musterstraße 1.", ttftMs: 900 });
    c.send(ev.speak("ws-filler", "Wo sind Sie?"));
    await c.waitFor((f) => speaks(f).length === 3);
    expect(speaks(c.frames).slice(1)).toEqual(["Einen Moment bitte.", "Die Adresse ist Musterstraße 1."]);
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

  it("several sessions on one socket are kept apart", async () => {
    const c = await connect();
    c.send(ev.start("ws-a"));
    c.send(ev.start("ws-b"));
    await c.waitFor((f) => speaks(f).length === 2);
    expect(new Set(c.frames.map((f) => f.data.session_id))).toEqual(new Set(["ws-a", "ws-b"]));
    c.ws.close();
  });
});
