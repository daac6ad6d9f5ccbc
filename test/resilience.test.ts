import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { pino } from "pino";
import { ModelError } from "../src/llm/chatModel.js";
import { OpenAIChatModel } from "../src/llm/openaiChatModel.js";
import { ResilientModel, isRetryable } from "../src/llm/resilientModel.js";
import { createModel } from "../src/llm/createModel.js";
import { MemoryLedger } from "../src/ledger/memoryLedger.js";
import { createService } from "../src/service.js";
import { FakeOpenAIServer, reply } from "./support/fakeOpenAI.js";
import { ev } from "./support/events.js";
import { spoken, testConfig } from "./support/harness.js";

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
    expect(isRetryable(new ModelError("x", Object.assign(new Error("Connection error."), { name: "APIConnectionError" })))).toBe(true);
  });
});

describe("the caller never hears silence when every model fails", () => {
  async function serviceWith(patch: Record<string, unknown>) {
    primary.onRequest(() => reply.error(503));
    backup.onRequest(() => reply.error(500));
    const config = testConfig({ llm: { maxRetries: 1, backoffInitialMs: 1, backoffMaxMs: 2, fallbacks: [{ model: "backup-model", baseURL: backup.baseURL }] }, ...patch });
    const model = createModel(config, { OPENAI_BASE_URL: primary.baseURL, OPENAI_API_KEY: "k" });
    return createService({ config, model, ledger: new MemoryLedger(), logger: pino({ level: "silent" }) });
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
});
