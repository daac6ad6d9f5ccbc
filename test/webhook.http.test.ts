import { request } from "node:http";
import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { actionSchema } from "../src/aiflow/actions.js";
import { MemoryLedger } from "../src/ledger/memoryLedger.js";
import { OpenAIChatModel } from "../src/llm/openaiChatModel.js";
import { MeteredLedger } from "../src/metrics/meteredLedger.js";
import { Metrics } from "../src/metrics/metrics.js";
import { createService } from "../src/service.js";
import { FakeOpenAIServer, reply } from "./support/fakeOpenAI.js";
import { CALLER, ev, session } from "./support/events.js";
import { smsActions, spoken, startTestService, testConfig, type TestService } from "./support/harness.js";
import { REFERENCE_EVENT_FIXTURES } from "./support/fixtures.js";
import { ManualClock } from "../src/engine/clock.js";

let svc: TestService;
beforeAll(async () => {
  svc = await startTestService();
  svc.fake.onRequest(() => reply.text("Gern, wie kann ich helfen?"));
});
afterAll(async () => svc.close());

describe("protocol fixtures (reference §6)", () => {
  it("every fixture, in order, gets 200 with valid actions or 204, never an error", async () => {
    const statuses: number[] = [];
    for (const raw of REFERENCE_EVENT_FIXTURES) {
      const r = await svc.post(raw);
      statuses.push(r.status);
      expect([200, 204]).toContain(r.status);
      for (const a of r.actions) expect(actionSchema.safeParse(a).success).toBe(true);
      const type = JSON.parse(raw).type as string;
      if (type === "session_end" || type === "some_future_event" || type === "user_speech_started") expect(r.status).toBe(204);
      if (type === "session_start" || type === "user_speak") expect(r.status).toBe(200);
    }
    expect(statuses).toHaveLength(REFERENCE_EVENT_FIXTURES.length);
  });

  it("the legacy transcript field reaches the model as the caller's words", async () => {
    svc.fake.requests.length = 0;
    await svc.post(`{"type":"user_speak","transcript":"hallo legacy","session":{"id":"legacy-2","account_id":"a","phone_number":"+491234567890"}}`);
    expect(svc.fake.requests[0]!.messages.at(-1)).toMatchObject({ role: "user", content: "hallo legacy" });
  });

  it("a legacy user_barge_in is a caller turn that interrupted the agent", async () => {
    svc.fake.requests.length = 0;
    const id = "legacy-barge";
    await svc.post(ev.start(id));
    const r = await svc.post({ type: "user_barge_in", text: "Stopp", session: { id, account_id: "a", phone_number: "+491234567890" } });
    expect(r.status).toBe(200);
    const assistant = svc.fake.requests[0]!.messages.filter((m) => m.role === "assistant").at(-1)!;
    expect(assistant.content).toMatch(/interrupted by the caller/);
  });

  it("outbound calls use the dialled customer's number as the default recipient", async () => {
    const id = "outbound-1";
    await svc.post({ type: "session_start", session: { id, account_id: "1", phone_number: "4915790000687", direction: "outbound", from_phone_number: "4921155660", to_phone_number: "4915790000687" } });
    expect((await svc.store.get(id))!.callerNumber).toBe("4915790000687");
  });
});

describe("bad input gets 400 with a message naming the problem", () => {
  it.each([
    ["malformed JSON", "{not json", /not valid JSON/],
    ["missing type", `{"session":{"id":"x"}}`, /type/],
    ["type of the wrong kind", `{"type":42,"session":{"id":"x"}}`, /type/],
    ["missing session", `{"type":"user_speak","text":"hi"}`, /session/],
    ["missing session id", `{"type":"session_start","session":{"account_id":"1"}}`, /session\.id/],
    ["session id of the wrong kind", `{"type":"user_speak","text":"hi","session":{"id":7}}`, /session\.id/],
    ["session that is not an object", `{"type":"session_start","session":"abc"}`, /session/],
    ["a JSON array", `[1,2]`, /object/],
    ["a JSON string", `"hello"`, /object/],
    ["empty session id", `{"type":"session_start","session":{"id":""}}`, /session\.id/],
    ["prototype poisoning", `{"type":"session_start","__proto__":{"x":1},"session":{"id":"p"}}`, /./],
  ])("%s", async (_name, body, message) => {
    const r = await svc.post(body);
    expect(r.status).toBe(400);
    expect((r.body as { error: string }).error).toMatch(message);
  });

  it("an oversized body", async () => {
    const big = JSON.stringify({ type: "user_speak", text: "x".repeat(70_000), session: { id: "big" } });
    const r = await svc.post(big);
    expect(r.status).toBe(400);
    expect((r.body as { error: string }).error).toMatch(/exceeds 65536 bytes/);
  });

  it("a body that is not JSON", async () => {
    const r = await svc.app.inject({ method: "POST", url: "/webhook", headers: { "content-type": "text/plain" }, payload: "hello" });
    expect(r.statusCode).toBe(400);
    expect(r.json().error).toMatch(/application\/json/);
  });

  it("an empty JSON body", async () => {
    const r = await svc.app.inject({ method: "POST", url: "/webhook", headers: { "content-type": "application/json" }, payload: "" });
    expect(r.statusCode).toBe(400);
    expect(r.json().error).toMatch(/JSON/);
  });

  it("an unknown event type is accepted with 204", async () => {
    const r = await svc.post({ type: "future_thing", session: { id: "f" } });
    expect(r.status).toBe(204);
  });
});

describe("tolerant reading: a field the service can do without never costs the caller's turn", () => {
  const LANDLINE = "493012345678";

  it("account_id as a number: 200, greeting, the id kept as a string", async () => {
    const r = await svc.post({ type: "session_start", session: { ...session("tol-account"), account_id: 1234567 } });
    expect(r.status).toBe(200);
    expect(r.actions).toEqual([expect.objectContaining({ type: "speak", session_id: "tol-account", text: expect.stringMatching(/Guten Tag/) })]);
    expect((await svc.store.get("tol-account"))!.accountId).toBe("1234567");
  });

  it("direction null: 200, greeting, handled as an inbound call (the caller's number is the default)", async () => {
    const r = await svc.post({ type: "session_start", session: { ...session("tol-direction"), direction: null } });
    expect(r.status).toBe(200);
    expect(spoken(r.actions)[0]).toMatch(/Guten Tag/);
    const state = (await svc.store.get("tol-direction"))!;
    expect(state.direction).toBe("inbound");
    expect(state.callerNumber).toBe(CALLER);
  });

  it("an anonymous caller (from_phone_number null) is greeted and later asked for a number", async () => {
    const id = "tol-anonymous";
    const anonymous = { ...session(id), from_phone_number: null };
    const start = await svc.post({ type: "session_start", session: anonymous });
    expect(start.status).toBe(200);
    expect(spoken(start.actions)[0]).toMatch(/Guten Tag/);
    expect((await svc.store.get(id))!.callerNumber).toBeUndefined();

    svc.fake.enqueue(reply.tool("start_sms_flow", { info: "address" }));
    const r = await svc.post({ type: "user_speak", text: "Schicken Sie mir die Adresse per SMS?", barged_in: false, session: anonymous });
    expect(r.status).toBe(200);
    // No own number to offer: the flow asks for one instead of reading back a number.
    expect(spoken(r.actions)[0]).toMatch(/An welche Handynummer/);
    const state = (await svc.store.get(id))!;
    expect(state.step).toBe("collect_number");
    expect(state.sms.number).toBeUndefined();
    expect(smsActions(r.actions)).toEqual([]);
  });

  it("barged_in null: 200, the words reach the model as a normal (not interrupting) turn", async () => {
    const id = "tol-barged";
    await svc.post(ev.start(id));
    svc.fake.requests.length = 0;
    const r = await svc.post({ type: "user_speak", text: "Wann haben Sie geöffnet?", barged_in: null, session: session(id) });
    expect(r.status).toBe(200);
    expect(spoken(r.actions)).toHaveLength(1);
    const messages = svc.fake.requests[0]!.messages;
    expect(messages.at(-1)).toMatchObject({ role: "user", content: "Wann haben Sie geöffnet?" });
    expect(JSON.stringify(messages)).not.toMatch(/interrupted by the caller/);
  });

  it("user_speak with text null is a turn with empty words, answered, not a 400", async () => {
    const id = "tol-text";
    await svc.post(ev.start(id));
    svc.fake.requests.length = 0;
    const r = await svc.post({ type: "user_speak", text: null, session: session(id) });
    expect(r.status).toBe(200);
    expect(spoken(r.actions)).toHaveLength(1);
    expect(svc.fake.requests).toHaveLength(1);
  });

  it("dtmf_received without a readable key is ignored (204), the keyed number so far kept", async () => {
    const id = "tol-dtmf";
    await svc.post(ev.start(id, { from: LANDLINE }));
    svc.fake.enqueue(reply.tool("start_sms_flow", { info: "address" }));
    await svc.post(ev.speak(id, "Schicken Sie mir die Adresse per SMS?", false, { from: LANDLINE }));
    expect((await svc.store.get(id))!.step).toBe("collect_number");
    expect((await svc.post(ev.dtmf(id, "0"))).status).toBe(204);
    for (const bad of [{}, { digit: null }, { digit: "x" }]) {
      const r = await svc.post({ type: "dtmf_received", ...bad, session: session(id) });
      expect(r.status).toBe(204);
    }
    expect((await svc.store.get(id))!.dtmf).toBe("0");
  });

  it("DTMF keys A-D are accepted and skipped in number entry", async () => {
    const id = "tol-dtmf-abcd";
    await svc.post(ev.start(id, { from: LANDLINE }));
    svc.fake.enqueue(reply.tool("start_sms_flow", { info: "address" }));
    await svc.post(ev.speak(id, "Schicken Sie mir die Adresse per SMS?", false, { from: LANDLINE }));
    svc.fake.requests.length = 0;
    for (const key of ["A", ..."0170", "B", ..."123", "C", ..."4567", "D"]) {
      expect((await svc.post(ev.dtmf(id, key))).status).toBe(204);
    }
    expect((await svc.store.get(id))!.dtmf).toBe("01701234567");
    const r = await svc.post(ev.dtmf(id, "#"));
    expect(spoken(r.actions)).toEqual(["Darf ich Ihnen die Informationen per SMS an die Nummer 0 1 7 0, 1 2 3, 4 5, 6 7 schicken?"]);
    expect((await svc.store.get(id))!.sms.number).toBe("491701234567");
    expect(svc.fake.requests).toHaveLength(0); // keypad entry needs no model request
  });
});

describe("sms_failed with an undocumented reason", () => {
  const fake = new FakeOpenAIServer();
  const logLines: Array<Record<string, unknown>> = [];
  const metrics = new Metrics({ defaultMetrics: false });
  const memory = new MemoryLedger();
  let service: ReturnType<typeof createService>;
  const post = async (event: unknown) => {
    const res = await service.app.inject({ method: "POST", url: "/webhook", headers: { "content-type": "application/json" }, payload: JSON.stringify(event) });
    const body = res.body ? (JSON.parse(res.body) as unknown) : undefined;
    return { status: res.statusCode, actions: res.statusCode === 200 ? ((Array.isArray(body) ? body : [body]) as Parameters<typeof spoken>[0]) : [] };
  };

  beforeAll(async () => {
    await fake.start();
    const config = testConfig();
    const sink = new Writable({
      write(chunk, _enc, done) {
        for (const line of String(chunk).split("\n").filter(Boolean)) logLines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    service = createService({
    // Deadlines (server.answerWithinMs) move only when told: no answer depends on machine speed.
    clock: new ManualClock(),
      config,
      model: new OpenAIChatModel({ apiKey: "test-key", baseURL: fake.baseURL, timeoutMs: config.llm.timeoutMs, maxRetries: config.llm.maxRetries }),
      ledger: new MeteredLedger(memory, metrics),
      logger: pino({ level: "info" }, sink),
      onTurn: (turn) => metrics.observeTurn(turn),
    });
  });
  afterAll(async () => {
    await service.close();
    await fake.close();
  });

  it("is handled as unknown: 200, the transient-failure path, metric label 'unknown', raw value in the log only", async () => {
    const id = "tol-reason";
    await post(ev.start(id));
    fake.enqueue(reply.tool("start_sms_flow", { info: "address" }));
    await post(ev.speak(id, "Schicken Sie mir die Adresse per SMS?"));
    fake.enqueue(reply.tool("record_consent", { consented: true }));
    const sent = await post(ev.speak(id, "Ja, gerne."));
    expect(smsActions(sent.actions)).toHaveLength(1);

    const failed = await post(ev.smsFailed(id, "carrier_on_strike"));
    expect(failed.status).toBe(200);
    // "unknown" is a transient reason: one retry, after a new yes to the question.
    expect(spoken(failed.actions)[0]).toMatch(/Die SMS konnte leider nicht verschickt werden/);
    expect(spoken(failed.actions).at(-1)).toMatch(/Darf ich Ihnen/);

    expect(memory.records.filter((r) => r.kind === "sms_failed")).toEqual([expect.objectContaining({ number: CALLER, outcome: "unknown" })]);
    const text = await metrics.render();
    expect(text).toMatch(/^aiflow_sms_failed_total\{reason="unknown"\} 1$/m);
    expect(text).not.toContain("carrier_on_strike");
    const line = logLines.find((l) => l.msg === "SMS failed: transient");
    expect(line).toMatchObject({ sessionId: id, reason: "unknown", rawReason: "carrier_on_strike" });
  });

  it("a documented reason logs no raw value", async () => {
    const id = "tol-reason-known";
    await post(ev.start(id));
    fake.enqueue(reply.tool("start_sms_flow", { info: "address" }));
    await post(ev.speak(id, "Schicken Sie mir die Adresse per SMS?"));
    fake.enqueue(reply.tool("record_consent", { consented: true }));
    await post(ev.speak(id, "Ja, gerne."));
    const before = logLines.length;
    await post(ev.smsFailed(id, "no_sms_extension"));
    const line = logLines.slice(before).find((l) => l.msg === "SMS failed: account problem, needs an operator");
    expect(line).toMatchObject({ reason: "no_sms_extension" });
    expect(line).not.toHaveProperty("rawReason");
  });
});

describe("API token", () => {
  let secured: TestService;
  beforeAll(async () => {
    secured = await startTestService({ apiToken: "s3cret-token", config: testConfig({ server: { apiTokenHeader: "X-API-TOKEN" } }) });
  });
  afterAll(async () => secured.close());

  it("missing token → 401", async () => {
    const r = await secured.post(ev.start("auth-1"));
    expect(r.status).toBe(401);
    expect(r.body).toEqual({ error: "Unauthorized" });
  });
  it("wrong token (also of another length) → 401", async () => {
    expect((await secured.post(ev.start("auth-2"), { "x-api-token": "s3cret-tokeN" })).status).toBe(401);
    expect((await secured.post(ev.start("auth-2"), { "x-api-token": "x" })).status).toBe(401);
  });
  it("right token → 200, header name case-insensitive", async () => {
    expect((await secured.post(ev.start("auth-3"), { "X-API-Token": "s3cret-token" })).status).toBe(200);
  });
  it("a configured header name is honoured", async () => {
    const custom = await startTestService({ apiToken: "k", config: testConfig({ server: { apiTokenHeader: "X-API-Key" } }) });
    try {
      expect((await custom.post(ev.start("auth-4"), { "x-api-token": "k" })).status).toBe(401);
      expect((await custom.post(ev.start("auth-4"), { "x-api-key": "k" })).status).toBe(200);
    } finally {
      await custom.close();
    }
  });
  it("healthz needs no token", async () => {
    const r = await secured.app.inject({ method: "GET", url: "/healthz" });
    expect(r.statusCode).toBe(200);
    expect(r.json()).toMatchObject({ status: "ok" });
  });
});

describe("over a real port", () => {
  it("answers a call over HTTP like sipgate would see it", async () => {
    await svc.app.listen({ port: 0, host: "127.0.0.1" });
    const { port } = svc.app.server.address() as AddressInfo;
    const post = (body: string) =>
      new Promise<{ status: number; text: string; type: string | undefined }>((resolve, reject) => {
        const req = request({ host: "127.0.0.1", port, path: "/webhook", method: "POST", headers: { "content-type": "application/json" } }, (res) => {
          let text = "";
          res.on("data", (c) => (text += c));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, text, type: res.headers["content-type"] }));
        });
        req.on("error", reject);
        req.end(body);
      });
    const r = await post(JSON.stringify(ev.start("real-port")));
    expect(r.status).toBe(200);
    expect(r.type).toMatch(/application\/json/);
    expect(JSON.parse(r.text)).toMatchObject({ type: "speak", session_id: "real-port" });
    const bad = await post("{oops");
    expect(bad.status).toBe(400);
  });
});
