import { createHash } from "node:crypto";
import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { ManualClock } from "../src/engine/clock.js";
import { MemoryLedger } from "../src/ledger/memoryLedger.js";
import { OpenAIChatModel } from "../src/llm/openaiChatModel.js";
import { readEvent } from "../src/server/intake.js";
import { createService, type Service } from "../src/service.js";
import { FakeOpenAIServer } from "./support/fakeOpenAI.js";
import { ev } from "./support/events.js";
import { testConfig } from "./support/harness.js";

/**
 * One intake for both transports: the webhook and the WebSocket read events through the same
 * code (src/server/intake.ts) and pass the same token hook (src/server/auth.ts). Shown here by
 * sending the same inputs over both and comparing the log lines, which differ only in `transport`.
 */

describe("readEvent: raw text in, event + redelivery key or a named rejection out", () => {
  it("an event comes with the sha256 of exactly the text sent", () => {
    const raw = JSON.stringify(ev.start("key-1"));
    const r = readEvent(raw);
    expect(r).toMatchObject({ kind: "event", event: { type: "session_start", session: { id: "key-1" } } });
    expect(r.kind === "event" && r.key).toBe(createHash("sha256").update(raw).digest("hex"));
    // Same event, other bytes: another key (a redelivery is byte-identical).
    const spaced = readEvent(JSON.stringify(ev.start("key-1"), null, 1));
    expect(spaced.kind === "event" && spaced.key).not.toBe(r.kind === "event" && r.key);
  });

  it.each([
    ["{not json", "not_json", "Invalid event: not valid JSON"],
    ["", "not_json", "Invalid event: not valid JSON"],
    [`{"type":"session_start","__proto__":{"x":1},"session":{"id":"p"}}`, "forbidden_key", /forbidden prototype key/],
    [`{"type":"session_start","constructor":{"prototype":{"x":1}},"session":{"id":"p"}}`, "forbidden_key", /forbidden prototype key/],
    [`[1,2]`, "invalid_event", /object/],
    [`{"session":{"id":"x"}}`, "invalid_event", /type/],
    [`{"type":"user_speak","text":"hi","session":{"id":7}}`, "invalid_event", /session\.id/],
  ])("%s → %s", (raw, problem, message) => {
    const r = readEvent(raw);
    expect(r).toMatchObject({ kind: "rejected", problem });
    expect(r.kind === "rejected" && r.message).toMatch(message);
  });

  it("an unknown type (also one named like an Object.prototype member) is recognised, not rejected", () => {
    expect(readEvent(`{"type":"brand_new","session":{"id":"u"}}`)).toEqual({ kind: "unknown", type: "brand_new", sessionId: "u" });
    expect(readEvent(`{"type":"toString","session":{"id":"u"}}`)).toMatchObject({ kind: "unknown", type: "toString" });
  });
});

describe("both transports through the one intake", () => {
  const TOKEN = "intake-s3cret-token";
  const WRONG = "wrong-guess-token";
  const fake = new FakeOpenAIServer();
  const lines: Array<Record<string, unknown>> = [];
  let svc: Service;
  let base: string;

  beforeAll(async () => {
    await fake.start();
    const sink = new Writable({
      write(chunk, _enc, done) {
        for (const line of String(chunk).split("\n").filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    svc = createService({
      config: testConfig(),
      model: new OpenAIChatModel({ apiKey: "k", baseURL: fake.baseURL, timeoutMs: 2000, maxRetries: 0 }),
      ledger: new MemoryLedger(),
      logger: pino({ level: "info" }, sink),
      apiToken: TOKEN,
      clock: new ManualClock(),
    });
    await svc.app.listen({ port: 0, host: "127.0.0.1" });
    base = `127.0.0.1:${(svc.app.server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await svc.close();
    await fake.close();
  });

  const post = async (raw: string, headers: Record<string, string> = { "x-api-token": TOKEN }, path = "/webhook") => {
    const res = await fetch(`http://${base}${path}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: raw });
    const text = await res.text();
    return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : undefined };
  };

  async function open(path = "/ws", headers: Record<string, string> = { "x-api-token": TOKEN }) {
    const ws = new WebSocket(`ws://${base}${path}`, { headers, perMessageDeflate: false });
    const frames: unknown[] = [];
    ws.on("message", (d) => frames.push(JSON.parse(d.toString())));
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
    });
    return { ws, frames };
  }

  /** The intake's lines of one transport since `from`, without what differs per line anyway. */
  const intakeLines = (from: number, transport: "http" | "ws") =>
    lines
      .slice(from)
      .filter((l) => l.transport === transport)
      .map(({ time: _t, pid: _p, hostname: _h, reqId: _r, transport: _tr, ...rest }) => rest);

  async function until(pred: () => boolean) {
    for (let i = 0; i < 300 && !pred(); i++) await new Promise((r) => setTimeout(r, 10));
    expect(pred()).toBe(true);
  }

  const MALFORMED = [
    "{not json",
    "",
    `{"type":"session_start","__proto__":{"x":1},"session":{"id":"p"}}`,
    `[1,2]`,
    `"hello"`,
    `{"session":{"id":"x"}}`,
    `{"type":42,"session":{"id":"x"}}`,
    `{"type":"user_speak","text":"hi"}`,
    `{"type":"session_start","session":{"id":""}}`,
  ];

  it("the same malformed input gives the same log line on both; HTTP answers 400 with its message, the socket nothing", async () => {
    const { ws, frames } = await open();
    for (const raw of MALFORMED) {
      const from = lines.length;
      const http = await post(raw);
      ws.send(raw);
      await until(() => intakeLines(from, "ws").length > 0);
      const [h, w] = [intakeLines(from, "http"), intakeLines(from, "ws")];
      expect(h, raw).toHaveLength(1);
      expect(w, raw).toEqual(h);
      expect(h[0]).toMatchObject({ level: 40, msg: "event rejected", problem: expect.any(String), error: expect.any(String) });
      expect(http.status, raw).toBe(400);
      expect(http.body).toEqual({ error: h[0]!.error });
    }
    // Nothing but actions ever goes to sipgate, and the socket stays open.
    expect(frames).toEqual([]);
    expect(ws.readyState).toBe(WebSocket.OPEN);
    ws.close();
  });

  it("an unknown event type is logged the same way on both: 204 over HTTP, nothing over the socket", async () => {
    const { ws, frames } = await open();
    const raw = JSON.stringify({ type: "brand_new_event", session: { id: "intake-unknown" } });
    const from = lines.length;
    const http = await post(raw);
    ws.send(raw);
    await until(() => intakeLines(from, "ws").length > 0);
    expect(http.status).toBe(204);
    expect(intakeLines(from, "http")).toEqual([{ level: 30, msg: "unknown event type ignored", eventType: "brand_new_event", sessionId: "intake-unknown" }]);
    expect(intakeLines(from, "ws")).toEqual(intakeLines(from, "http"));
    expect(frames).toEqual([]);
    ws.close();
  });

  it("an unexpected error while handling is logged the same way on both: 204 over HTTP (never a 500), nothing over the socket", async () => {
    const boom = new Error("the pipeline broke");
    const { answerHttp, handleWs } = svc.pipeline;
    svc.pipeline.answerHttp = async () => {
      throw boom;
    };
    svc.pipeline.handleWs = async () => {
      throw boom;
    };
    try {
      const { ws, frames } = await open();
      const raw = JSON.stringify(ev.start("intake-boom"));
      const from = lines.length;
      const http = await post(raw);
      ws.send(raw);
      await until(() => intakeLines(from, "ws").length > 0);
      expect(http.status).toBe(204);
      const [h] = intakeLines(from, "http");
      expect(h).toMatchObject({ level: 50, msg: "unexpected error while handling an event", sessionId: "intake-boom", event: "session_start", err: { message: "the pipeline broke" } });
      expect(intakeLines(from, "ws")).toEqual([h]);
      expect(frames).toEqual([]);
      ws.close();
    } finally {
      svc.pipeline.answerHttp = answerHttp;
      svc.pipeline.handleWs = handleWs;
    }
  });

  it("one token hook for every route: the webhook and the WebSocket upgrade pass the same check", async () => {
    const routes = svc.app.printRoutes({ includeHooks: true, commonPrefix: false });
    // Each route's onRequest hooks name the same one token check.
    const hooks = [...routes.matchAll(/(\/\S*) \((\w+)\)\n[^\n]*\(onRequest\) (\[[^\]]*\])/g)].map((m) => [`${m[2]} ${m[1]}`, JSON.parse(m[3]!) as string[]]);
    expect(hooks.map(([r]) => r)).toEqual(expect.arrayContaining(["GET /ws", "POST /webhook", "GET /healthz", "GET /metrics"]));
    for (const [, names] of hooks) expect((names as string[]).filter((n) => n === "checkApiToken()")).toHaveLength(1);

    // Header: both transports.
    expect((await post(JSON.stringify(ev.start("auth-h")))).status).toBe(200);
    (await open()).ws.close();
    // The query parameter: the WebSocket upgrade only (sipgate documents no upgrade headers).
    (await open(`/ws?token=${TOKEN}`, {})).ws.close();
    expect((await post(JSON.stringify(ev.start("auth-q")), {}, `/webhook?token=${TOKEN}`)).status).toBe(401);

    // Refused the same way, with the same line.
    const from = lines.length;
    const refused = await post(JSON.stringify(ev.start("auth-none")), {});
    expect(refused).toEqual({ status: 401, body: { error: "Unauthorized" } });
    await expect(open("/ws", {})).rejects.toThrow(/401/);
    await expect(open(`/ws?token=${WRONG}`, {})).rejects.toThrow(/401/);
    await expect(open("/ws", { "x-api-token": WRONG })).rejects.toThrow(/401/);
    const rejections = lines.slice(from).filter((l) => l.msg === "rejected request with a missing or wrong API token");
    expect(rejections.map((l) => [l.level, l.path])).toEqual([
      [40, "/webhook"],
      [40, "/ws"],
      [40, "/ws"],
      [40, "/ws"],
    ]);

    // The platform's endpoints stay open.
    expect((await fetch(`http://${base}/healthz`)).status).toBe(200);
    expect((await fetch(`http://${base}/metrics`)).status).toBe(200);
  });

  it("no log line ever contains the token, whichever route it was sent to in the query", async () => {
    const from = lines.length;
    (await open(`/ws?token=${TOKEN}`, {})).ws.close();
    await expect(open(`/ws?token=${WRONG}`, {})).rejects.toThrow(/401/);
    await expect(open(`/ws?a=1&token=${WRONG}`, {})).rejects.toThrow(/401/);
    // An upgrade to a route that is no WebSocket is refused, not accepted and dropped.
    await expect(open(`/healthz?token=${TOKEN}`, {})).rejects.toThrow(/404/);
    await expect(open(`/nowhere?token=${TOKEN}`)).rejects.toThrow(/404/);
    await fetch(`http://${base}/healthz?token=${TOKEN}`);
    await fetch(`http://${base}/nowhere?token=${TOKEN}`, { headers: { "x-api-token": TOKEN } });
    await post(JSON.stringify(ev.start("log-q")), {}, `/webhook?token=${TOKEN}`);
    await post("{bad", { "x-api-token": TOKEN }, `/webhook?token=${TOKEN}`);
    await new Promise((r) => setTimeout(r, 50));

    const written = lines.slice(from);
    const text = JSON.stringify(written);
    expect(text).not.toContain(TOKEN);
    expect(text).not.toContain(WRONG);
    // Not vacuous: Fastify's request lines were written, with the path and no query.
    const urls = written.filter((l) => l.msg === "incoming request").map((l) => (l.req as { url: string }).url);
    expect(urls).toEqual(expect.arrayContaining(["/ws?[redacted]", "/healthz?[redacted]", "/nowhere?[redacted]", "/webhook?[redacted]"]));
    expect(written.some((l) => l.msg === "route not found" && l.path === "/nowhere")).toBe(true);
  });
});
