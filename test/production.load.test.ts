import type { AddressInfo } from "node:net";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import type { AiFlowAction } from "../src/aiflow/actions.js";
import { MemoryLedger } from "../src/ledger/memoryLedger.js";
import { OpenAIChatModel } from "../src/llm/openaiChatModel.js";
import { createService, type Service } from "../src/service.js";
import { FakeOpenAIServer, reply } from "./support/fakeOpenAI.js";
import { ev } from "./support/events.js";
import { spoken, smsActions, testConfig } from "./support/harness.js";
import { ManualClock } from "../src/engine/clock.js";

/**
 * Many concurrent calls through both transports, on loopback, bounded in count and time:
 * every call ends with exactly one SMS to its own caller, whatever else runs at the same time.
 */

const fake = new FakeOpenAIServer();
let svc: Service;
let port: number;
const CALLS_HTTP = 150;
const CALLS_WS = 50;

/** A stateless scripted model: it reads the step from the tools offered, like a real one. */
function scriptModel() {
  fake.onRequest((body) => {
    const tools = (body.tools ?? []).map((t) => t.function.name);
    if (tools.includes("start_sms_flow")) return reply.tool("start_sms_flow", { info: "address" });
    if (tools.includes("record_consent")) return { kind: "message", text: "", toolCalls: [{ name: "record_consent", arguments: { consented: true } }], ttftMs: 5 };
    return reply.text("Gern.");
  });
}

beforeAll(async () => {
  await fake.start();
  scriptModel();
  svc = createService({
    // Deadlines (server.answerWithinMs) move only when told: no answer depends on machine speed.
    clock: new ManualClock(),
    config: testConfig(),
    model: new OpenAIChatModel({ apiKey: "k", baseURL: fake.baseURL, timeoutMs: 10_000, maxRetries: 0 }),
    ledger: new MemoryLedger(),
    logger: pino({ level: "silent" }),
  });
  await svc.app.listen({ port: 0, host: "127.0.0.1" });
  port = (svc.app.server.address() as AddressInfo).port;
});
afterAll(async () => {
  await svc.close();
  await fake.close();
});

const caller = (i: number) => `4915${String(100000000 + i).slice(-9)}`;

async function httpCall(i: number): Promise<number> {
  const id = `load-http-${i}`;
  const o = { from: caller(i) };
  const post = async (e: unknown) => {
    const r = await fetch(`http://127.0.0.1:${port}/webhook`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(e) });
    expect(r.status).toBeLessThan(500);
    return r.status === 200 ? ([] as AiFlowAction[]).concat((await r.json()) as AiFlowAction[]) : [];
  };
  await post(ev.start(id, o));
  const q = await post(ev.speak(id, "Die Adresse per SMS bitte.", false, o));
  expect(spoken(q)[0]).toMatch(/^Darf ich/);
  const yes = await post(ev.speak(id, "Ja.", false, o));
  const sent = smsActions(yes);
  expect(sent.map((s) => s.phone_number)).toEqual([caller(i)]);
  await post(ev.end(id));
  return sent.length;
}

async function wsCall(i: number): Promise<number> {
  const id = `load-ws-${i}`;
  const o = { from: caller(1000 + i) };
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, { perMessageDeflate: false });
  const frames: Array<{ type: string; text?: string; phone_number?: string }> = [];
  ws.on("message", (d) => frames.push(JSON.parse(d.toString())));
  await new Promise((r, j) => (ws.once("open", r), ws.once("error", j)));
  const until = async (pred: () => boolean) => {
    for (let t = 0; t < 1000 && !pred(); t++) await new Promise((r) => setTimeout(r, 10));
    expect(pred()).toBe(true);
  };
  ws.send(JSON.stringify(ev.start(id, o)));
  await until(() => frames.some((f) => f.type === "speak"));
  ws.send(JSON.stringify(ev.speak(id, "SMS mit der Adresse bitte.", false, o)));
  await until(() => frames.some((f) => f.type === "speak" && /^Darf ich/.test(f.text ?? "")));
  ws.send(JSON.stringify(ev.speak(id, "Ja.", false, o)));
  await until(() => frames.some((f) => f.type === "speak" && /abgeschickt/.test(f.text ?? "")));
  ws.close();
  const sent = frames.filter((f) => f.type === "send_sms");
  expect(sent.map((s) => s.phone_number)).toEqual([caller(1000 + i)]);
  return sent.length;
}

describe("load", () => {
  it(`${CALLS_HTTP} HTTP calls and ${CALLS_WS} WebSocket calls at once: one SMS each, no 5xx`, async () => {
    const results = await Promise.all([...Array.from({ length: CALLS_HTTP }, (_, i) => httpCall(i)), ...Array.from({ length: CALLS_WS }, (_, i) => wsCall(i))]);
    expect(results.reduce((a, b) => a + b, 0)).toBe(CALLS_HTTP + CALLS_WS);
    const metrics = await svc.metrics.render();
    expect(metrics).toMatch(new RegExp(`aiflow_sms_sent_total ${CALLS_HTTP + CALLS_WS}\\b`));
  }, 60_000);
});

describe("graceful shutdown", () => {
  it("finishes a turn in flight before the server stops", async () => {
    const local = new FakeOpenAIServer();
    await local.start();
    const s = createService({
    // Deadlines (server.answerWithinMs) move only when told: no answer depends on machine speed.
    clock: new ManualClock(),
      config: testConfig(),
      model: new OpenAIChatModel({ apiKey: "k", baseURL: local.baseURL, timeoutMs: 10_000, maxRetries: 0 }),
      ledger: new MemoryLedger(),
      logger: pino({ level: "silent" }),
    });
    await s.app.listen({ port: 0, host: "127.0.0.1" });
    const p = (s.app.server.address() as AddressInfo).port;
    const post = (e: unknown) => fetch(`http://127.0.0.1:${p}/webhook`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(e) });
    await post(ev.start("shutdown-1"));
    local.enqueue(reply.text("Die Antwort kommt noch.", 500));
    const inFlight = post(ev.speak("shutdown-1", "Hallo?"));
    await new Promise((r) => setTimeout(r, 100));
    const closing = s.close();
    const res = await inFlight;
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ type: "speak", text: "Die Antwort kommt noch." });
    await closing;
    await expect(post(ev.start("shutdown-2"))).rejects.toThrow();
    await local.close();
  }, 20_000);
});

describe("SMS abuse limits", () => {
  it.each([
    ["perCaller", { perCaller: { max: 1, windowSeconds: 3600 } }, "caller_rate_limited"],
    ["perPrefix", { perPrefix: { max: 1, windowSeconds: 3600, prefixDigits: 4 } }, "prefix_rate_limited"],
    ["perCountry", { perCountry: { max: 1, windowSeconds: 3600 } }, "country_rate_limited"],
    ["global", { global: { max: 1, windowSeconds: 3600 } }, "global_rate_limited"],
  ])("%s: the second SMS is refused, spoken gracefully, logged with its reason and counted", async (_name, abuse, reason) => {
    const local = new FakeOpenAIServer();
    await local.start();
    local.onRequest((body) => {
      const tools = (body.tools ?? []).map((t) => t.function.name);
      if (tools.includes("start_sms_flow")) return reply.tool("start_sms_flow", { info: "address" });
      return reply.tool("record_consent", { consented: true });
    });
    const s = createService({
    // Deadlines (server.answerWithinMs) move only when told: no answer depends on machine speed.
    clock: new ManualClock(),
      config: testConfig({ tasks: { sms: { abuse } } }),
      model: new OpenAIChatModel({ apiKey: "k", baseURL: local.baseURL, timeoutMs: 5000, maxRetries: 0 }),
      ledger: new MemoryLedger(),
      logger: pino({ level: "silent" }),
    });
    const post = async (e: unknown) => {
      const r = await s.app.inject({ method: "POST", url: "/webhook", headers: { "content-type": "application/json" }, payload: JSON.stringify(e) });
      return r.statusCode === 200 ? ([] as AiFlowAction[]).concat(r.json() as AiFlowAction[]) : [];
    };
    try {
      // Same caller twice for perCaller; neighbouring numbers from different callers otherwise.
      const calls = reason === "caller_rate_limited" ? ["4915112345670", "4915112345670"] : ["4915112345671", "4915112345672"];
      const out: number[] = [];
      for (const [i, from] of calls.entries()) {
        const id = `abuse-${reason}-${i}`;
        await post(ev.start(id, { from }));
        await post(ev.speak(id, "SMS bitte", false, { from }));
        const yes = await post(ev.speak(id, "Ja", false, { from }));
        out.push(smsActions(yes).length);
        if (i === 1) expect(spoken(yes)[0]).toMatch(/Gerade kann ich leider keine SMS verschicken/);
      }
      expect(out).toEqual([1, 0]);
      expect(await s.metrics.render()).toMatch(new RegExp(`aiflow_sms_refused_total\\{reason="${reason}"\\} 1`));
    } finally {
      await s.close();
      await local.close();
    }
  });
});
