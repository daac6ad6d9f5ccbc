import { createServer, type Server, type Socket } from "node:net";
import { describe, expect, it } from "vitest";
import { ConfigError } from "../src/appConfig.js";
import { modelUrlProblem, redactUrl } from "../src/config/modelUrl.js";
import { EndpointMonitor, type ModelEndpointStatus } from "../src/llm/endpointMonitor.js";
import { createEndpointMonitor, createModel } from "../src/llm/createModel.js";
import { OpenAIChatModel } from "../src/llm/openaiChatModel.js";
import { FakeOpenAIServer } from "./support/fakeOpenAI.js";
import { freePort } from "./support/processes.js";
import { testConfig } from "./support/harness.js";

/**
 * The model endpoint's checks over real HTTP against the local OpenAI-compatible test server:
 * URL rules, what errors say (endpoint yes, key never), and the background re-check's life
 * cycle. test/startup.model.test.ts runs the same through the real server process.
 */

const KEY = "sk-test-DO-NOT-LOG-77aa01bc";
const request = { model: "m", temperature: 0, maxTokens: 5, system: "s", messages: [{ role: "user" as const, content: "hi" }], tools: [] };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("model URLs", () => {
  it("only http(s) URLs with a host; shown without credentials or query", () => {
    expect(modelUrlProblem("http://localhost:11434/v1")).toBeUndefined();
    expect(modelUrlProblem("https://RESOURCE.openai.azure.com/openai/v1/")).toBeUndefined();
    expect(modelUrlProblem("localhost:11434/v1")).toBe('"localhost:11434/v1" has no http:// or https:// in front (for example http://localhost:11434/v1)');
    expect(modelUrlProblem("htp://localhost/v1")).toBe('"htp://localhost/v1" starts with htp://; a model endpoint starts with http:// or https://');
    expect(modelUrlProblem("http://")).toMatch(/is not a URL|names no host/);
    expect(redactUrl("https://user:secret@host.example/v1?key=abc")).toBe("https://host.example/v1");
    expect(modelUrlProblem("user:secret@host:8000/v1")).not.toContain("secret");
  });

  it("createModel and the monitor refuse OPENAI_BASE_URL without a scheme as a ConfigError naming it (chat and eval say the same line)", () => {
    const config = testConfig();
    for (const make of [() => createModel(config, { OPENAI_BASE_URL: "localhost:11434/v1" }), () => createEndpointMonitor(config, { OPENAI_BASE_URL: "htp://x/v1" })]) {
      expect(make).toThrow(ConfigError);
      expect(make).toThrow(/^OPENAI_BASE_URL: /);
    }
  });
});

describe("model errors name the endpoint, never the key", () => {
  it("a 401 that quotes the key, and a refused connection", async () => {
    const fake = new FakeOpenAIServer();
    const url = await fake.start();
    try {
      fake.enqueue({ kind: "http_error", status: 401, body: { error: { message: `Incorrect API key provided: ${KEY}. Also sk-proj-abcd****wxyz.`, type: "invalid_request_error" } } });
      const model = new OpenAIChatModel({ apiKey: KEY, baseURL: url, timeoutMs: 2000, maxRetries: 0 });
      const err = (await model.complete(request).catch((e: Error) => e)) as Error;
      expect(err.message).toMatch(new RegExp(`^model request to ${url.replace(/[./]/g, "\\$&")} failed: 401 `));
      expect(err.message).not.toContain(KEY);
      expect(err.message).not.toContain("sk-proj");
    } finally {
      await fake.close();
    }
    const closed = `http://127.0.0.1:${await freePort()}/v1`;
    const dead = new OpenAIChatModel({ apiKey: KEY, baseURL: closed, timeoutMs: 2000, maxRetries: 0 });
    expect(((await dead.complete(request).catch((e: Error) => e)) as Error).message).toBe(`model request to ${closed} failed: Connection error: ECONNREFUSED`);
  });
});

describe("the background check", () => {
  it("follows the endpoint down and up, tells listeners each change once, keeps `since` while nothing changes, and stops", async () => {
    const fake = new FakeOpenAIServer();
    const port = await freePort();
    const url = await fake.start(port);
    const client = new OpenAIChatModel({ apiKey: KEY, baseURL: url, timeoutMs: 2000, maxRetries: 0 });
    const monitor = new EndpointMonitor({ url: client.endpoint, check: (ms, signal) => client.checkEndpoint(ms, signal), timeoutMs: 1000, intervalMs: 150 });
    const changes: ModelEndpointStatus[] = [];
    monitor.onChange((s) => changes.push(s));
    try {
      const first = await monitor.start();
      expect(first).toEqual({ reachable: true, since: expect.any(String), url });
      await sleep(400);
      expect(monitor.status().since).toBe(first.since); // still up: same since
      expect(fake.modelListCalls.length).toBeGreaterThanOrEqual(2);

      await fake.close();
      for (let i = 0; i < 40 && monitor.status().reachable; i++) await sleep(50);
      expect(monitor.status()).toMatchObject({ reachable: false, url, error: "Connection error: ECONNREFUSED" });
      expect(Date.parse(monitor.status().since)).toBeGreaterThan(Date.parse(first.since));

      await fake.start(port);
      for (let i = 0; i < 40 && !monitor.status().reachable; i++) await sleep(50);
      expect(monitor.status().reachable).toBe(true);
      expect(changes.map((c) => c.reachable)).toEqual([false, true]);
    } finally {
      monitor.stop();
    }
    const after = fake.modelListCalls.length;
    await sleep(500);
    expect(fake.modelListCalls.length).toBe(after);
    await fake.close();
  });

  it("a check that gets no answer ends at its bound, and stop() abandons one in flight", async () => {
    const held = new Set<Socket>();
    const silent: Server = createServer((s) => void held.add(s));
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    const client = new OpenAIChatModel({ apiKey: KEY, baseURL: `http://127.0.0.1:${(silent.address() as { port: number }).port}/v1`, timeoutMs: 60_000, maxRetries: 0 });
    // A check that ignores its bound's signal is still bounded.
    const deaf = new EndpointMonitor({ url: client.endpoint, check: () => new Promise(() => {}), timeoutMs: 300, intervalMs: 60_000 });
    const real = new EndpointMonitor({ url: client.endpoint, check: (ms, signal) => client.checkEndpoint(ms, signal), timeoutMs: 300, intervalMs: 60_000 });
    try {
      const t0 = Date.now();
      const [a, b] = await Promise.all([deaf.start(), real.start()]);
      expect(Date.now() - t0).toBeLessThan(2000);
      expect(a).toMatchObject({ reachable: false, error: "no answer within 300 ms" });
      expect(b).toMatchObject({ reachable: false, error: expect.stringMatching(/timed out|no answer within 300 ms/) });

      // Closing the service stops the monitor: the request in flight is aborted at once.
      const closing = new EndpointMonitor({ url: client.endpoint, check: (ms, signal) => client.checkEndpoint(ms, signal), timeoutMs: 10_000, intervalMs: 10 });
      const first = closing.start();
      await sleep(200);
      const stoppedAt = Date.now();
      closing.stop();
      await first;
      expect(Date.now() - stoppedAt).toBeLessThan(1000);
    } finally {
      deaf.stop();
      real.stop();
      for (const s of held) s.destroy();
      await new Promise<void>((r) => silent.close(() => r()));
    }
  });
});
