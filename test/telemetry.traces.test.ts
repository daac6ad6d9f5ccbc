import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { reply } from "./support/fakeOpenAI.js";
import { CALLER, FLOW_NUMBER, ev } from "./support/events.js";
import { smsActions, startTestService, testConfig, type TestService } from "./support/harness.js";
import { until } from "./support/deadline.js";
import { OtlpReceiver, type ReceivedSpan } from "./support/otlpReceiver.js";
import { startTracing } from "../src/telemetry/start.js";

/**
 * OpenTelemetry traces (issue 20, point 1): calls played through the real service (webhook and
 * WebSocket, the real openai client against the fake model) export to a local OTLP/HTTP receiver
 * (JSON protocol). Expectations come from what the test played: the events it sent, the tools
 * the fake model called, the SMS it agreed to; never from the service's own records.
 */

const TOKEN = "trace-test-token-5f2c9a";
const HEADERS = { "x-api-token": TOKEN };
const MODEL = testConfig().llm.model;
/** What the caller says in the first call: their own number, national form. */
const SAID_NUMBER = "0151 12345678";
const SAID = `Können Sie mir die Öffnungszeiten per SMS schicken? Meine Nummer ist ${SAID_NUMBER}.`;

/** The numbers the calls carry, as their national significant digits: any written form of them holds these digits in a row. */
const NUMBER_DIGITS = [CALLER, FLOW_NUMBER].map((n) => n.replace(/^49/, ""));

const OTEL_VARS = ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_SERVICE_NAME", "OTEL_BSP_SCHEDULE_DELAY"] as const;
const saved = Object.fromEntries(OTEL_VARS.map((k) => [k, process.env[k]]));

function restoreEnv(): void {
  for (const k of OTEL_VARS) {
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  }
}

/** Every text a span carries: attributes, event and link attributes, status message. */
function texts(s: ReceivedSpan): string[] {
  const all = [s.attributes, ...s.events.map((e) => e.attributes), ...s.links.map((l) => l.attributes)].flatMap((a) => Object.values(a));
  return [...all.flat(), s.status?.message].filter((v): v is string => typeof v === "string");
}

const named = (spans: ReceivedSpan[], name: string, callId?: string) => spans.filter((s) => s.name === name && (callId === undefined || s.attributes["call.id"] === callId));

/** Post an event whose answer waits for the deadline; resolves once the deadline is armed. */
async function postPending(svc: TestService, event: unknown) {
  const armedBefore = svc.deadlineClock.pending;
  const answer = svc.post(event, HEADERS);
  await until(() => svc.deadlineClock.pending > armedBefore, "the answer's deadline armed");
  return { answer };
}

async function playHappyCall(svc: TestService, id: string): Promise<void> {
  expect((await svc.post(ev.start(id), HEADERS)).status).toBe(200);
  svc.fake.enqueue(reply.tool("start_sms_flow", { info: "opening_hours" }));
  expect((await svc.post(ev.speak(id, SAID), HEADERS)).status).toBe(200);
  svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
  const yes = await svc.post(ev.speak(id, "Ja, gerne."), HEADERS);
  expect(smsActions(yes.actions)).toHaveLength(1);
  // The handover record is written once the answer was written.
  await until(() => svc.memoryLedger.records.some((r) => r.callId === id && r.kind === "sms_handed_over"), "the handover record");
  expect((await svc.post(ev.end(id), HEADERS)).status).toBe(204);
}

describe("traces of played calls, exported over OTLP/HTTP", () => {
  const receiver = new OtlpReceiver();
  let svc: TestService;
  const happy = "trace-happy";
  const slow = "trace-slow";
  const lying = "trace-lying";
  const socket = "trace-socket";

  beforeAll(async () => {
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = await receiver.start();
    process.env.OTEL_EXPORTER_OTLP_PROTOCOL = "http/json";
    process.env.OTEL_SERVICE_NAME = "trace-test-agent";
    // As npm start does: the tracer from the OTEL_* environment, told the token to keep out.
    svc = await startTestService({ apiToken: TOKEN, tracing: await startTracing(testConfig(), process.env, [TOKEN]) });

    await playHappyCall(svc, happy);

    // A slow turn: its event is answered with a holding line, and the caller's next words are
    // queued behind it and answered with a holding line too, before their own turn ran.
    expect((await svc.post(ev.start(slow), HEADERS)).status).toBe(200);
    const gate = svc.fake.block();
    svc.fake.enqueue(reply.text("Wir haben Montag bis Freitag von acht bis zwölf geöffnet."), reply.text("Ja, ich bin noch da."));
    const first = await postPending(svc, ev.speak(slow, "Wann haben Sie geöffnet?"));
    await gate.arrived;
    svc.deadlineClock.advance(800);
    expect((await first.answer).actions.map((a) => a.type)).toEqual(["speak"]);
    const second = await postPending(svc, ev.speak(slow, "Hallo?"));
    svc.deadlineClock.advance(800);
    expect((await second.answer).actions.map((a) => a.type)).toEqual(["speak"]);
    gate.release();
    await until(async () => (await svc.store.progress(slow)).processed >= (await svc.store.progress(slow)).queued, "both turns done");
    // The late answers leave with the next event.
    const collected = await svc.post(ev.speechEnded(slow), HEADERS);
    expect(collected.actions.length).toBeGreaterThan(0);
    await svc.post(ev.end(slow), HEADERS);

    // A model that calls a tool its step does not offer: the guard refuses it.
    await svc.post(ev.start(lying), HEADERS);
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }), reply.text("Wie kann ich helfen?"));
    await svc.post(ev.speak(lying, "Hallo."), HEADERS);
    await svc.post(ev.end(lying), HEADERS);

    // The WebSocket, its token in the URL's query as sipgate may send it.
    await svc.app.listen({ port: 0, host: "127.0.0.1" });
    const ws = new WebSocket(`ws://127.0.0.1:${(svc.app.server.address() as AddressInfo).port}/ws?token=${TOKEN}`, { perMessageDeflate: false });
    const frames: unknown[] = [];
    ws.on("message", (d) => frames.push(JSON.parse(d.toString())));
    await new Promise<void>((res, rej) => {
      ws.once("open", () => res());
      ws.once("error", rej);
    });
    ws.send(JSON.stringify(ev.start(socket)));
    await until(() => frames.length > 0, "the greeting frame");
    ws.send(JSON.stringify(ev.end(socket)));
    await until(async () => (await svc.store.get(socket)) === undefined, "the socket call's end");
    ws.close();

    // Closing the service exports what is buffered.
    await svc.close();
  });

  afterAll(async () => {
    restoreEnv();
    await receiver.close();
  });

  it("exports to /v1/traces as JSON, under the service name from OTEL_SERVICE_NAME", () => {
    expect(receiver.requests.length).toBeGreaterThan(0);
    expect(receiver.requests.every((r) => r.method === "POST" && r.url === "/v1/traces" && r.contentType?.startsWith("application/json"))).toBe(true);
    expect(new Set(receiver.spans.map((s) => s.resource["service.name"]))).toEqual(new Set(["trace-test-agent"]));
  });

  it("gives every event its own trace, rooted in the event's span", () => {
    const events = receiver.spans.filter((s) => s.name.startsWith("aiflow.event "));
    // What the test sent: start, two speaks and end (happy); start, two speaks, speech ended, end (slow); start, speak, end (lying); start, end (socket).
    expect(events.filter((s) => s.attributes["call.id"] === happy).map((s) => s.name)).toEqual(["aiflow.event session_start", "aiflow.event user_speak", "aiflow.event user_speak", "aiflow.event session_end"]);
    expect(named(events, "aiflow.event user_speak", slow)).toHaveLength(2);
    expect(named(events, "aiflow.event assistant_speech_ended", slow)).toHaveLength(1);
    expect(events.filter((s) => s.attributes["call.id"] === socket).map((s) => [s.name, s.attributes["aiflow.transport"]])).toEqual([
      ["aiflow.event session_start", "ws"],
      ["aiflow.event session_end", "ws"],
    ]);
    for (const e of events) expect(e.parentSpanId, e.name).toBeUndefined();
    expect(new Set(events.map((e) => e.traceId)).size).toBe(events.length);
  });

  it("puts every span under a call: call.id on each, and each call's spans only in its own traces", () => {
    const ids = new Set([happy, slow, lying, socket]);
    for (const s of receiver.spans) expect(ids.has(s.attributes["call.id"] as string), `${s.name} carries call.id`).toBe(true);
    const callOfTrace = new Map<string, unknown>();
    for (const s of receiver.spans) {
      const seen = callOfTrace.get(s.traceId);
      if (seen !== undefined) expect(s.attributes["call.id"], `${s.name} in a trace of ${String(seen)}`).toBe(seen);
      callOfTrace.set(s.traceId, s.attributes["call.id"]);
    }
  });

  it("nests a prompt turn under its event: the step, the model request (GenAI attributes), the tool call, the gate", () => {
    const byId = new Map(receiver.spans.map((s) => [s.spanId, s]));
    const parentName = (s: ReceivedSpan) => (s.parentSpanId ? byId.get(s.parentSpanId)?.name : undefined);
    const turns = named(receiver.spans, "aiflow.turn user_speak", happy);
    expect(turns).toHaveLength(2);
    for (const t of turns) expect(parentName(t)).toBe("aiflow.event user_speak");

    const chats = named(receiver.spans, `chat ${MODEL}`, happy);
    // One model request per caller turn (the fake answered each with one tool call).
    expect(chats).toHaveLength(2);
    for (const c of chats) {
      expect(parentName(c)).toMatch(/^aiflow\.step /);
      expect(c.kind).toBe(3); // CLIENT
      expect(c.attributes).toMatchObject({ "gen_ai.operation.name": "chat", "gen_ai.request.model": MODEL, "gen_ai.response.model": MODEL });
      expect(c.attributes["gen_ai.usage.input_tokens"]).toBeGreaterThan(0);
      expect(c.attributes["gen_ai.usage.output_tokens"]).toBeGreaterThan(0);
      expect(c.attributes["aiflow.llm.latency_ms"]).toBeGreaterThanOrEqual(0);
    }
    expect(chats.map((c) => c.attributes["aiflow.llm.tool_calls"])).toEqual([["start_sms_flow"], ["record_consent"]]);

    // The model's tool calls, as the fake model made them (the flow's own, code-run tools are traced too).
    const tools = receiver.spans.filter((s) => s.attributes["call.id"] === happy && s.name.startsWith("execute_tool ") && s.attributes["aiflow.tool.origin"] === "model");
    expect(tools.map((t) => [t.attributes["gen_ai.tool.name"], t.attributes["aiflow.tool.outcome"]])).toEqual([
      ["start_sms_flow", "ok"],
      ["record_consent", "ok"],
    ]);
    for (const t of tools) expect(parentName(t)).toMatch(/^aiflow\.step /);

    const gates = named(receiver.spans, "sms.gate send_sms", happy);
    expect(gates).toHaveLength(1);
    expect(gates[0]!.attributes).toMatchObject({ "aiflow.gate.allowed": true, "aiflow.gate.reason": "consent_recorded" });
    // In the trace of the caller's yes (the event that led to the send).
    const yes = named(receiver.spans, "aiflow.event user_speak", happy)[1]!;
    expect(gates[0]!.traceId).toBe(yes.traceId);
  });

  it("records each ledger and store write and each action delivered", () => {
    const appended = named(receiver.spans, "ledger.append", happy).map((s) => s.attributes["aiflow.ledger.kind"]);
    expect(appended).toEqual(expect.arrayContaining(["consent_asked", "consent_given", "sms_approved", "sms_handed_over"]));
    // Every event the test sent was queued (arrive), and every turn committed.
    // (queued alone, or with the call's lease taken at once; committed alone, or with the next event taken).
    expect([...named(receiver.spans, "store.arrive", happy), ...named(receiver.spans, "store.arriveAndTake", happy)]).toHaveLength(4);
    expect([...named(receiver.spans, "store.commit", happy), ...named(receiver.spans, "store.commitAndNext", happy)].map((s) => s.attributes["aiflow.commit.result"])).toEqual(["committed", "committed", "committed", "committed"]);
    const delivered = receiver.spans.filter((s) => s.attributes["call.id"] === happy && s.name.startsWith("aiflow.deliver "));
    // What the caller got: the greeting, the consent question, the SMS and the line after it.
    expect(delivered.map((s) => s.attributes["aiflow.action.type"])).toEqual(["speak", "speak", "send_sms", "speak"]);
  });

  it("links a turn that ran after its event was answered with a holding line to that event, and the late actions' delivery to the turn", () => {
    const events = named(receiver.spans, "aiflow.event user_speak", slow);
    const answers = events.map((e) => e.attributes["aiflow.answer.kind"]);
    expect(answers).toEqual(["holding", "holding"]);
    const turns = named(receiver.spans, "aiflow.turn user_speak", slow);
    expect(turns).toHaveLength(2);
    const [first, second] = turns.sort((a, b) => (a.attributes["aiflow.event.seq"] as number) - (b.attributes["aiflow.event.seq"] as number));
    // The first turn started while its event waited: a child that outlived its event's answer.
    expect(first!.parentSpanId).toBe(events[0]!.spanId);
    expect(first!.attributes["aiflow.turn.outlived_answer"]).toBe(true);
    // The second ran only after its event got its holding line: a trace of its own, linked to the event.
    expect(second!.parentSpanId).toBeUndefined();
    expect(second!.traceId).not.toBe(events[1]!.traceId);
    expect(second!.links.map((l) => l.spanId)).toEqual([events[1]!.spanId]);
    // Their actions left with assistant_speech_ended: delivered in that event's trace, linked to the turns.
    const collect = named(receiver.spans, "aiflow.event assistant_speech_ended", slow)[0]!;
    const delivered = receiver.spans.filter((s) => s.traceId === collect.traceId && s.name.startsWith("aiflow.deliver "));
    expect(delivered.length).toBeGreaterThan(0);
    const linkedTurns = new Set(delivered.flatMap((d) => d.links.map((l) => l.spanId)));
    expect(linkedTurns).toEqual(new Set([first!.spanId, second!.spanId]));
  });

  it("records a guard's refusal with its reason on the tool call", () => {
    const tool = named(receiver.spans, "execute_tool record_consent", lying);
    expect(tool).toHaveLength(1);
    expect(tool[0]!.attributes).toMatchObject({ "aiflow.tool.outcome": "refused", "aiflow.guard.reason": "tool_not_offered" });
    expect(tool[0]!.events.map((e) => [e.name, e.attributes["aiflow.guard.allowed"], e.attributes["aiflow.guard.reason"]])).toEqual([["guard", false, "tool_not_offered"]]);
  });

  it("holds no number in any form, not the token, and not what the caller said", () => {
    expect(receiver.spans.length).toBeGreaterThan(50);
    for (const s of receiver.spans) {
      for (const t of texts(s)) {
        const digits = t.replace(/\D/g, "");
        for (const n of NUMBER_DIGITS) expect(digits.includes(n), `${s.name}: "${t}" holds a number`).toBe(false);
      }
    }
    const all = receiver.bodies.join("\n");
    expect(all).not.toContain(TOKEN);
    expect(all).not.toContain("token=");
    for (const words of ["Öffnungszeiten", "Ja, gerne", "Hallo", "Wann haben Sie"]) expect(all).not.toContain(words);
  });
});

describe("with telemetry.transcript on", () => {
  const receiver = new OtlpReceiver();
  const id = "trace-transcript";

  beforeAll(async () => {
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = await receiver.start();
    process.env.OTEL_EXPORTER_OTLP_PROTOCOL = "http/json";
    const config = testConfig({ telemetry: { transcript: true } });
    const svc = await startTestService({ apiToken: TOKEN, config, tracing: await startTracing(config, process.env, [TOKEN]) });
    await playHappyCall(svc, id);
    await svc.close();
  });

  afterAll(async () => {
    restoreEnv();
    await receiver.close();
  });

  it("carries what the caller said and what they heard, every number masked", () => {
    const said = named(receiver.spans, "aiflow.event user_speak", id).map((s) => s.attributes["aiflow.caller.text"] as string);
    expect(said).toHaveLength(2);
    expect(said[0]).toContain("Öffnungszeiten per SMS");
    expect(said[0]).not.toContain(SAID_NUMBER);
    expect(said[1]).toBe("Ja, gerne.");
    const heard = receiver.spans.filter((s) => s.attributes["call.id"] === id && s.attributes["aiflow.action.type"] === "speak").map((s) => s.attributes["aiflow.action.text"] as string);
    expect(heard.some((t) => t.startsWith("Darf ich Ihnen die Informationen per SMS"))).toBe(true);
    for (const s of receiver.spans) for (const t of texts(s)) for (const n of NUMBER_DIGITS) expect(t.replace(/\D/g, "").includes(n), `${s.name}: "${t}"`).toBe(false);
  });
});
