import { request } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { actionSchema } from "../src/aiflow/actions.js";
import { reply } from "./support/fakeOpenAI.js";
import { ev } from "./support/events.js";
import { startTestService, testConfig, type TestService } from "./support/harness.js";
import { REFERENCE_EVENT_FIXTURES } from "./support/fixtures.js";

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
    ["user_speak without text", `{"type":"user_speak","session":{"id":"x"}}`, /text/],
    ["ill-typed barged_in", `{"type":"user_speak","text":"a","barged_in":"yes","session":{"id":"x"}}`, /barged_in/],
    ["unknown sms_failed reason", `{"type":"sms_failed","recipient":"4915112345678","reason":"nope","message":"","session":{"id":"x"}}`, /reason/],
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
