import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ev } from "./support/events.js";
import { FakeOpenAIServer } from "./support/fakeOpenAI.js";
import { freePort, waitGone } from "./support/processes.js";
import { MAIN, ROOT, baseEnv, buildDist, startProcess, stopAll, type RunningProcess } from "./support/serverProcess.js";

/**
 * Issue 22, point 2 of "Must work": the real server process with a model URL that cannot work
 * (refused at start-up, one line naming the setting) or an endpoint that does not answer
 * (started, one warning line naming the URL and the error, /healthz 200 with the model's state,
 * kept current in the background), and with the local OpenAI-compatible test server.
 */

const outside = mkdtempSync(join(tmpdir(), "aiflow-model-"));
/** Long enough to find in any output, and never allowed in it. */
const KEY = "sk-test-DO-NOT-LOG-4f9c2b7e1a";
const json = { "content-type": "application/json" };

function configFile(name: string, edit: (yaml: string) => string = (y) => y): string {
  const path = join(outside, name);
  const yaml = readFileSync(join(ROOT, "config/agent.yaml"), "utf8").replace("path: data/consent-ledger.jsonl", `path: ${join(outside, `${name}.ledger.jsonl`)}`);
  writeFileSync(path, edit(yaml));
  return path;
}

const node = (env: Record<string, string>) => startProcess(process.execPath, [MAIN], { env: baseEnv({ HOST: "127.0.0.1", ...env }), cwd: outside });

const logLines = (p: RunningProcess) =>
  p
    .out()
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown> & { level: number; msg: string });

async function healthz(port: number): Promise<{ status: number; body: Record<string, unknown> & { model: { reachable: boolean; since: string; url: string; error?: string } } }> {
  const r = await fetch(`http://127.0.0.1:${port}/healthz`);
  return { status: r.status, body: (await r.json()) as never };
}

beforeAll(() => buildDist(), 60_000);
afterAll(async () => stopAll());

describe("a model URL without http(s): start-up refuses it in one line naming the setting, exit 1", () => {
  it.each([
    ["localhost:11434/v1", 'aiflow-sms-agent: OPENAI_BASE_URL: "localhost:11434/v1" has no http:// or https:// in front (for example http://localhost:11434/v1)'],
    ["htp://127.0.0.1:11434/v1", 'aiflow-sms-agent: OPENAI_BASE_URL: "htp://127.0.0.1:11434/v1" starts with htp://; a model endpoint starts with http:// or https://'],
  ])("OPENAI_BASE_URL=%s", async (url, line) => {
    const p = node({ OPENAI_BASE_URL: url, OPENAI_API_KEY: KEY, PORT: String(await freePort()), CONFIG: configFile("scheme.yaml") });
    expect((await p.exited).code).toBe(1);
    expect(p.err().trim().split("\n")).toEqual([line]);
    expect(p.out()).toBe(""); // no server, no log line
  }, 30_000);

  it("a fallback's baseURL in the config file: the config error names llm.fallbacks.0.baseURL", async () => {
    const config = configFile("fallback.yaml", (y) => y.replace("  steps:\n", '  fallbacks:\n    - { model: local, baseURL: "localhost:8000/v1" }\n  steps:\n'));
    const p = node({ OPENAI_API_KEY: KEY, PORT: String(await freePort()), CONFIG: config });
    expect((await p.exited).code).toBe(1);
    expect(p.err()).toMatch(/^aiflow-sms-agent: invalid config .*fallback\.yaml:\n {2}llm\.fallbacks\.0\.baseURL: "localhost:8000\/v1" has no http:\/\/ or https:\/\/ in front/);
    expect(p.err()).not.toMatch(/^\s+at /m);
  }, 30_000);
});

describe("an endpoint that does not answer: the service starts, says so once, and /healthz carries the model's state", () => {
  it("a closed port: one warning naming the URL and the error; /healthz 200 with model.reachable false; model errors name the endpoint, never the key; the background check sees it come up; SIGTERM stops all", async () => {
    const modelPort = await freePort();
    const url = `http://127.0.0.1:${modelPort}/v1`;
    const port = await freePort();
    const started = Date.now();
    const p = node({ OPENAI_BASE_URL: url, OPENAI_API_KEY: KEY, PORT: String(port), CONFIG: configFile("closed.yaml") });
    await p.waitFor(/agent ready/);

    const warnings = logLines(p).filter((l) => l.level === 40);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.msg).toBe(`model endpoint ${url} not reachable: Connection error: ECONNREFUSED`);
    const ready = logLines(p).find((l) => /agent ready/.test(l.msg))!;
    expect(ready).toMatchObject({ endpoint: url, modelReachable: false });

    const down = await healthz(port);
    expect(down.status).toBe(200);
    expect(down.body).toMatchObject({ status: "ok", model: { reachable: false, url, error: "Connection error: ECONNREFUSED" } });
    const since = Date.parse(down.body.model.since);
    expect(since).toBeGreaterThanOrEqual(started - 1000);
    expect(since).toBeLessThanOrEqual(Date.now());

    // A caller meets the dead model: the log line names the endpoint.
    const post = (event: unknown) => fetch(`http://127.0.0.1:${port}/webhook`, { method: "POST", headers: json, body: JSON.stringify(event) });
    await post(ev.start("model-down-1"));
    const answer = (await (await post(ev.speak("model-down-1", "Wann haben Sie geöffnet?"))).json()) as { text: string };
    expect(answer.text).toMatch(/technische Störung/);
    // The apology may leave (a holding line's deadline) before the failed request is logged.
    await p.waitFor(/"msg":"model request failed"/);
    const failed = logLines(p).find((l) => l.msg === "model request failed")!;
    expect(failed.err).toContain(`model request to ${url} failed: Connection error: ECONNREFUSED`);

    // The endpoint comes up: the next background check (30 s after the last) sees it, not sooner.
    const fake = new FakeOpenAIServer();
    await fake.start(modelPort);
    try {
      const cameUp = Date.now();
      let up = down;
      while (!up.body.model.reachable && Date.now() - cameUp < 40_000) {
        await new Promise((r) => setTimeout(r, 500));
        up = await healthz(port);
      }
      expect(up.body.model).toMatchObject({ reachable: true, url });
      expect(up.body.model).not.toHaveProperty("error");
      expect(Date.parse(up.body.model.since)).toBeGreaterThan(since);
      // One check did it, at least 30 s after the start-up check.
      expect(fake.modelListCalls).toHaveLength(1);
      expect(fake.modelListCalls[0]! - since).toBeGreaterThanOrEqual(29_000);
      expect(logLines(p).filter((l) => l.msg === `model endpoint ${url} reachable again`)).toHaveLength(1);

      expect(p.out() + p.err()).not.toContain(KEY);
      expect(JSON.stringify(up.body)).not.toContain(KEY);

      const server = p.child.pid!;
      p.child.kill("SIGTERM");
      expect((await p.exited).code).toBe(0);
      expect(await waitGone(server)).toBe(true);
    } finally {
      await fake.close();
    }
  }, 90_000);

  it("an endpoint that accepts the connection and never answers: start-up waits a few seconds at most, and says it timed out", async () => {
    const held = new Set<Socket>();
    const silent: Server = createServer((s) => void held.add(s));
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(silent.address() as { port: number }).port}/v1`;
    try {
      const port = await freePort();
      const spawned = Date.now();
      const p = node({ OPENAI_BASE_URL: url, OPENAI_API_KEY: KEY, PORT: String(port), CONFIG: configFile("silent.yaml") });
      await p.waitFor(/agent ready/);
      // The check's bound is 3 s; the process itself takes a second or two to load.
      expect(Date.now() - spawned).toBeLessThan(9000);
      const warnings = logLines(p).filter((l) => l.level === 40);
      expect(warnings).toHaveLength(1);
      expect(warnings[0]!.msg).toMatch(new RegExp(`^model endpoint ${url.replace(/[./]/g, "\\$&")} not reachable: (Request timed out\\.|no answer within 3000 ms)$`));
      expect((await healthz(port)).body.model).toMatchObject({ reachable: false, url });
      p.child.kill("SIGTERM");
      expect((await p.exited).code).toBe(0);
    } finally {
      for (const s of held) s.destroy();
      await new Promise<void>((r) => silent.close(() => r()));
    }
  }, 30_000);
});

describe("the local OpenAI-compatible test server, reachable", () => {
  it("no warning; the ready line and /healthz say reachable, with the URL and never the key; one models-list request at start-up", async () => {
    const fake = new FakeOpenAIServer();
    const url = await fake.start();
    try {
      const port = await freePort();
      const p = node({ OPENAI_BASE_URL: url, OPENAI_API_KEY: KEY, PORT: String(port), CONFIG: configFile("reachable.yaml") });
      await p.waitFor(/agent ready/);
      expect(logLines(p).filter((l) => l.level >= 40)).toEqual([]);
      expect(logLines(p).find((l) => /agent ready/.test(l.msg))).toMatchObject({ endpoint: url, modelReachable: true });
      const h = await healthz(port);
      expect(h.status).toBe(200);
      expect(h.body.model).toEqual({ reachable: true, since: expect.stringMatching(/^\d{4}-\d\d-\d\dT/), url });
      expect(fake.modelListCalls).toHaveLength(1);
      expect(fake.calls).toEqual([]); // the check costs no chat request
      expect(p.out() + p.err() + JSON.stringify(h.body)).not.toContain(KEY);
      p.child.kill("SIGTERM");
      expect((await p.exited).code).toBe(0);
    } finally {
      await fake.close();
    }
  }, 30_000);
});
