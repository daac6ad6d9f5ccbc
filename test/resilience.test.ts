import { createServer as createHttpServer } from "node:http";
import { createServer as createNetServer, type AddressInfo, type Server } from "node:net";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { pino } from "pino";
import {
  APIConnectionError,
  APIConnectionTimeoutError,
  APIError,
  APIUserAbortError,
  AuthenticationError,
  BadRequestError,
  InternalServerError,
  RateLimitError,
} from "openai";
import { ModelError } from "../src/llm/chatModel.js";
import { OpenAIChatModel } from "../src/llm/openaiChatModel.js";
import { ResilientModel, isRetryable } from "../src/llm/resilientModel.js";
import { createModel } from "../src/llm/createModel.js";
import { MemoryLedger } from "../src/ledger/memoryLedger.js";
import { createService } from "../src/service.js";
import { FakeOpenAIServer, reply } from "./support/fakeOpenAI.js";
import { ev } from "./support/events.js";
import { spoken, testConfig } from "./support/harness.js";
import { ManualClock } from "../src/engine/clock.js";

const primary = new FakeOpenAIServer();
const backup = new FakeOpenAIServer();
beforeAll(async () => {
  await primary.start();
  await backup.start();
});
afterAll(async () => {
  await primary.close();
  await backup.close();
});
beforeEach(() => {
  primary.reset();
  backup.reset();
});

const req = { model: "m", temperature: 0, maxTokens: 20, system: "s", messages: [{ role: "user" as const, content: "hi" }], tools: [] };
const client = (fake: FakeOpenAIServer) => new OpenAIChatModel({ apiKey: "k", baseURL: fake.baseURL, timeoutMs: 10_000, maxRetries: 0 });

function resilient(opts: Partial<ConstructorParameters<typeof ResilientModel>[1]> = {}, clock = { now: 0 }) {
  const sleeps: number[] = [];
  const fallbacks: string[] = [];
  const model = new ResilientModel(
    [
      { name: "primary", model: client(primary) },
      { name: "backup", model: client(backup), modelName: "backup-model" },
    ],
    {
      timeoutMs: 500,
      retries: 2,
      backoffInitialMs: 250,
      backoffMaxMs: 2000,
      breakerThreshold: 5,
      breakerCooldownMs: 30_000,
      now: () => clock.now,
      sleep: async (ms) => void sleeps.push(ms),
      onFallback: (from, to) => fallbacks.push(`${from}->${to}`),
      ...opts,
    },
  );
  return { model, sleeps, fallbacks };
}

describe("ResilientModel", () => {
  it("retries 429 and 5xx with backoff doubling, then succeeds on the same model", async () => {
    primary.enqueue(reply.error(429), reply.error(503), reply.text("ok"));
    const { model, sleeps, fallbacks } = resilient();
    expect((await model.complete(req)).text).toBe("ok");
    expect(primary.requests).toHaveLength(3);
    expect(sleeps).toEqual([250, 500]);
    expect(fallbacks).toEqual([]);
  });

  it("does not retry a 400; falls back to the next model, with its own model name and endpoint", async () => {
    primary.enqueue(reply.error(400));
    backup.enqueue(reply.text("from backup"));
    const { model, fallbacks } = resilient();
    expect((await model.complete(req)).text).toBe("from backup");
    expect(primary.requests).toHaveLength(1);
    expect(backup.requests[0]!.model).toBe("backup-model");
    expect(fallbacks).toEqual(["primary->backup"]);
  });

  it("a hanging model is cut off by the per-request timeout and the fallback answers", async () => {
    primary.onRequest(() => reply.hang());
    backup.enqueue(reply.text("fast"));
    const { model } = resilient({ retries: 0, timeoutMs: 300 });
    const t0 = Date.now();
    expect((await model.complete(req)).text).toBe("fast");
    expect(Date.now() - t0).toBeLessThan(3000);
  });

  it("a circuit breaker skips a dead provider until its cooldown passed", async () => {
    const clock = { now: 0 };
    primary.onRequest(() => reply.error(500));
    backup.onRequest(() => reply.text("backup"));
    const { model } = resilient({ retries: 0, breakerThreshold: 2, breakerCooldownMs: 10_000 }, clock);
    await model.complete(req);
    await model.complete(req);
    expect(model.openCircuits()).toEqual(["primary"]);
    const before = primary.requests.length;
    await model.complete(req);
    await model.complete(req);
    expect(primary.requests.length).toBe(before);
    clock.now += 10_001;
    primary.reset();
    primary.enqueue(reply.text("primary is back"));
    expect((await model.complete(req)).text).toBe("primary is back");
    expect(model.openCircuits()).toEqual([]);
  });

  it("when every model fails it throws one ModelError naming each failure", async () => {
    primary.onRequest(() => reply.error(500));
    backup.onRequest(() => reply.error(503));
    const { model } = resilient({ retries: 1 });
    await expect(model.complete(req)).rejects.toThrow(/every model failed: primary: .*backup: /);
  });

  it("classifies errors", () => {
    expect(isRetryable(new ModelError("x", Object.assign(new Error("x"), { status: 429 })))).toBe(true);
    expect(isRetryable(new ModelError("x", Object.assign(new Error("x"), { status: 401 })))).toBe(false);
  });

  it("classifies the openai client's errors by class", () => {
    const headers = new Headers();
    const wrapped = (e: unknown) => isRetryable(new ModelError("model request failed", e));
    // Connection errors have no status and the plain name "Error": only their class tells.
    expect(new APIConnectionError({ message: undefined }).name).toBe("Error");
    expect(wrapped(new APIConnectionError({ message: undefined, cause: new TypeError("fetch failed") }))).toBe(true);
    expect(wrapped(new APIConnectionTimeoutError())).toBe(true);
    expect(wrapped(new RateLimitError(429, undefined, undefined, headers))).toBe(true);
    expect(wrapped(new InternalServerError(503, undefined, undefined, headers))).toBe(true);
    expect(wrapped(APIError.generate(408, undefined, undefined, headers))).toBe(true);
    expect(wrapped(new BadRequestError(400, undefined, undefined, headers))).toBe(false);
    expect(wrapped(new AuthenticationError(401, undefined, undefined, headers))).toBe(false);
    expect(wrapped(new APIUserAbortError())).toBe(false);
  });

  it("classifies socket errors by code, also a few causes down; not by message", () => {
    const cut = Object.assign(new TypeError("terminated"), { cause: Object.assign(new Error("other side closed"), { code: "UND_ERR_SOCKET" }) });
    expect(isRetryable(new ModelError("model stream failed: terminated", cut))).toBe(true);
    expect(isRetryable(Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), { code: "ECONNREFUSED" }))).toBe(true);
    expect(isRetryable(new ModelError("x", new Error("Connection error.")))).toBe(false);
    expect(isRetryable(new ModelError("model answered without choices"))).toBe(false);
  });
});

/**
 * A model endpoint that fails below HTTP, through the real openai client: the TCP connection is
 * accepted and then dropped (after the request arrived, or at once with a reset), or nothing
 * listens on the port at all. Each must cost what a 5xx costs: retries, then the fallback, and
 * the circuit breaker counts it.
 */
type FailureKind = "503" | "dropped" | "reset" | "refused" | "cut mid-stream";

interface FailingEndpoint {
  baseURL: string;
  /** Attempts that reached the endpoint: HTTP requests, or TCP connections where no HTTP is spoken (0 for a refused port). */
  arrived(): number;
  close(): Promise<void>;
}

async function failingEndpoint(kind: FailureKind): Promise<FailingEndpoint> {
  let arrived = 0;
  let server: Server;
  if (kind === "503" || kind === "cut mid-stream") {
    server = createHttpServer((req, res) => {
      arrived++;
      req.resume();
      req.on("end", () => {
        if (kind === "503") {
          res.writeHead(503, { "content-type": "application/json" }).end(JSON.stringify({ error: { message: "overloaded" } }));
          return;
        }
        // The stream starts (headers and a role-only chunk, no words yet), then the connection dies.
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.write(`data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", created: 1, model: "m", choices: [{ index: 0, delta: { role: "assistant" } }] })}\n\n`);
        setTimeout(() => res.socket?.destroy(), 10);
      });
    });
  } else {
    server = createNetServer((socket) => {
      arrived++;
      if (kind === "reset") socket.resetAndDestroy();
      // Read the request, then close without a byte of answer (a crashed or restarting server).
      else socket.once("data", () => socket.destroy());
    });
  }
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  if (kind === "refused") await new Promise((resolve) => server.close(resolve));
  return {
    baseURL: `http://127.0.0.1:${port}/v1`,
    arrived: () => arrived,
    close: () => (kind === "refused" ? Promise.resolve() : new Promise<void>((resolve) => server.close(() => resolve()))),
  };
}

describe("connection failures get the same retries, fallback and circuit breaker as a 5xx", () => {
  function overFailing(endpoint: FailingEndpoint, opts: Partial<ConstructorParameters<typeof ResilientModel>[1]>, clock = { now: 0 }) {
    const sleeps: number[] = [];
    const fallbacks: string[] = [];
    const errors: string[] = [];
    const model = new ResilientModel(
      [
        // maxRetries 0 as in production: retries are the wrapper's job, so each attempt is one request.
        { name: "flaky", model: new OpenAIChatModel({ apiKey: "k", baseURL: endpoint.baseURL, timeoutMs: 10_000, maxRetries: 0 }) },
        { name: "backup", model: client(backup), modelName: "backup-model" },
      ],
      {
        timeoutMs: 5000,
        retries: 2,
        backoffInitialMs: 250,
        backoffMaxMs: 2000,
        breakerThreshold: 100,
        breakerCooldownMs: 30_000,
        now: () => clock.now,
        sleep: async (ms) => void sleeps.push(ms),
        onFallback: (from, to) => fallbacks.push(`${from}->${to}`),
        onError: (route, reason) => route === "flaky" && errors.push(reason),
        ...opts,
      },
    );
    return { model, sleeps, fallbacks, errors };
  }

  const KINDS: FailureKind[] = ["503", "dropped", "reset", "refused"];

  it.each(KINDS)("%s: retries+1 attempts with backoff, then the fallback answers", async (kind) => {
    const endpoint = await failingEndpoint(kind);
    try {
      backup.enqueue(reply.text("from backup"));
      const { model, sleeps, fallbacks, errors } = overFailing(endpoint, { retries: 2 });
      expect((await model.complete(req)).text).toBe("from backup");
      expect(errors).toHaveLength(3);
      if (kind !== "refused") expect(endpoint.arrived()).toBe(3);
      expect(sleeps).toEqual([250, 500]);
      expect(fallbacks).toEqual(["flaky->backup"]);
      expect(backup.requests).toHaveLength(1);
      expect(backup.requests[0]!.model).toBe("backup-model");
    } finally {
      await endpoint.close();
    }
  });

  it.each([...KINDS, "cut mid-stream"] as FailureKind[])("%s while streaming: retried before any words, then the fallback's words", async (kind) => {
    const endpoint = await failingEndpoint(kind);
    try {
      backup.enqueue(reply.text("gestreamte Antwort"));
      const { model, sleeps, fallbacks, errors } = overFailing(endpoint, { retries: 1 });
      const heard: string[] = [];
      const res = await model.stream(req, (d) => heard.push(d));
      expect(res.text).toBe("gestreamte Antwort");
      expect(heard.join("")).toBe("gestreamte Antwort");
      expect(errors).toHaveLength(2);
      if (kind !== "refused") expect(endpoint.arrived()).toBe(2);
      expect(sleeps).toEqual([250]);
      expect(fallbacks).toEqual(["flaky->backup"]);
    } finally {
      await endpoint.close();
    }
  });

  it.each(KINDS)("%s: the breaker opens after the threshold and the dead endpoint is skipped until the cooldown passed", async (kind) => {
    const endpoint = await failingEndpoint(kind);
    const clock = { now: 0 };
    try {
      backup.onRequest(() => reply.text("backup"));
      // 2 attempts per call, threshold 4: the second call's last failure opens the circuit.
      const { model, errors, fallbacks } = overFailing(endpoint, { retries: 1, breakerThreshold: 4, breakerCooldownMs: 10_000 }, clock);
      await model.complete(req);
      expect(model.openCircuits()).toEqual([]);
      await model.complete(req);
      expect(errors).toHaveLength(4);
      expect(model.openCircuits()).toEqual(["flaky"]);
      const arrivedWhenOpened = endpoint.arrived();
      if (kind !== "refused") expect(arrivedWhenOpened).toBe(4);

      // Open: no attempt at all, straight to the fallback.
      expect((await model.complete(req)).text).toBe("backup");
      expect(errors).toHaveLength(4);
      expect(endpoint.arrived()).toBe(arrivedWhenOpened);
      expect(backup.requests).toHaveLength(3);
      expect(fallbacks).toEqual(["flaky->backup", "flaky->backup"]); // the open circuit is skipped, not a fallback

      // After the cooldown the endpoint is tried again.
      clock.now += 10_001;
      await model.complete(req);
      expect(errors.length).toBeGreaterThan(4);
    } finally {
      await endpoint.close();
    }
  });
});

describe("the caller never hears silence when every model fails", () => {
  async function serviceWith(patch: Record<string, unknown>) {
    primary.onRequest(() => reply.error(503));
    backup.onRequest(() => reply.error(500));
    const config = testConfig({ llm: { maxRetries: 1, backoffInitialMs: 1, backoffMaxMs: 2, fallbacks: [{ model: "backup-model", baseURL: backup.baseURL }] }, ...patch });
    const model = createModel(config, { OPENAI_BASE_URL: primary.baseURL, OPENAI_API_KEY: "k" });
    return createService({
    // Deadlines (server.answerWithinMs) move only when told: no answer depends on machine speed.
    clock: new ManualClock(), config, model, ledger: new MemoryLedger(), logger: pino({ level: "silent" }) });
  }
  const post = async (svc: Awaited<ReturnType<typeof serviceWith>>, e: unknown) => {
    const r = await svc.app.inject({ method: "POST", url: "/webhook", headers: { "content-type": "application/json" }, payload: JSON.stringify(e) });
    return { status: r.statusCode, actions: r.statusCode === 200 ? [].concat(r.json()) : [] };
  };

  it("apologizes and the call goes on (default)", async () => {
    const svc = await serviceWith({});
    try {
      await post(svc, ev.start("all-fail-1"));
      const r = await post(svc, ev.speak("all-fail-1", "Hallo?"));
      expect(r.status).toBe(200);
      expect(spoken(r.actions)).toEqual(["Entschuldigung, ich habe gerade eine technische Störung. Können Sie Ihre Frage bitte noch einmal stellen?"]);
      expect(primary.requests).toHaveLength(2);
      expect(backup.requests).toHaveLength(2);
      const metrics = await svc.metrics.render();
      expect(metrics).toMatch(/aiflow_model_requests_total\{[^}]*outcome="error"[^}]*\} 1/);
    } finally {
      await svc.close();
    }
  });

  it("apologizes and transfers to a person when configured", async () => {
    const svc = await serviceWith({ llm: { maxRetries: 0, fallbacks: [], onAllModelsFailed: { action: "transfer", transferTo: "4921112345600", callerIdName: "Praxis" } } });
    try {
      await post(svc, ev.start("all-fail-2"));
      const r = await post(svc, ev.speak("all-fail-2", "Hallo?"));
      expect(r.actions.map((a: { type: string }) => a.type)).toEqual(["speak", "transfer"]);
      expect(r.actions[1]).toEqual({ type: "transfer", session_id: "all-fail-2", target_phone_number: "4921112345600", caller_id_name: "Praxis", caller_id_number: "4921112345678", timeout: 30 });
    } finally {
      await svc.close();
    }
  });

  it("on an outbound call the transfer shows the flow's own number (from_phone_number), not the customer's", async () => {
    const svc = await serviceWith({ llm: { maxRetries: 0, fallbacks: [], onAllModelsFailed: { action: "transfer", transferTo: "4921112345600", callerIdName: "Praxis" } } });
    try {
      // sipgate's outbound shape: the customer is in to_phone_number and phone_number.
      const out = { from: "4921112345678", to: "4915112345678", direction: "outbound" as const };
      const session = { id: "all-fail-out", account_id: "1", phone_number: "4915112345678", direction: "outbound", from_phone_number: out.from, to_phone_number: out.to };
      await post(svc, { type: "session_start", session });
      const r = await post(svc, { type: "user_speak", text: "Hallo?", session });
      expect(r.actions[1]).toMatchObject({ type: "transfer", caller_id_number: "4921112345678" });
    } finally {
      await svc.close();
    }
  });
});
