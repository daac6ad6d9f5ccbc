import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ev } from "./support/events.js";
import { FakeOpenAIServer, reply } from "./support/fakeOpenAI.js";
import { freePort, isRunning, portAccepts, procInfo, waitGone } from "./support/processes.js";
import { MAIN, ROOT, baseEnv, buildDist, startProcess, stopAll } from "./support/serverProcess.js";
import { startReceiver } from "./support/webhookReceiver.js";
import { verifySignature } from "../src/outbox/signing.js";

/**
 * The service as an operator runs it: `npm start` (compiled JavaScript) or `node dist/src/main.js`,
 * a real process on a real port. Each test runs from a folder outside the package, so config and
 * prompts must be found from the package root.
 */

const outside = mkdtempSync(join(tmpdir(), "aiflow-start-"));
const fake = new FakeOpenAIServer();

/** The checked-in config with the ledger in a temp folder (never the checkout's data/). */
function configFile(name: string, edit: (yaml: string) => string = (y) => y): string {
  const path = join(outside, name);
  const yaml = readFileSync(join(ROOT, "config/agent.yaml"), "utf8").replace("path: data/consent-ledger.jsonl", `path: ${join(outside, `${name}.ledger.jsonl`)}`);
  writeFileSync(path, edit(yaml));
  return path;
}

/** `npm start -- args` from outside the package, as `npm --prefix <package> start`. */
const npmStart = (env: Record<string, string>, args: string[] = []) =>
  startProcess("npm", ["--prefix", ROOT, "start", ...(args.length ? ["--", ...args] : [])], { env: baseEnv(env), cwd: outside });
/** The compiled server directly, so its output is only its own (npm adds lines of its own on failure). */
const node = (env: Record<string, string>, args: string[] = []) => startProcess(process.execPath, [MAIN, ...args], { env: baseEnv(env), cwd: outside });

const json = { "content-type": "application/json" };
type Action = { type: string; text?: string };

beforeAll(async () => {
  buildDist();
  await fake.start();
}, 60_000);

afterAll(async () => {
  await stopAll();
  await fake.close();
});

describe("npm start: usage and operator errors, one line each", () => {
  it("npm start -- --help prints the options and variables and starts nothing", async () => {
    const p = npmStart({}, ["--help"]);
    expect((await p.exited).code).toBe(0);
    expect(p.out()).toMatch(/^Usage: npm start/m);
    for (const word of ["--config", "--offline", "OPENAI_API_KEY", "OPENAI_BASE_URL", "AIFLOW_API_TOKEN", "server.allowNoToken", "LOG_LEVEL", "PORT, HOST", "REDIS_URL", "DATABASE_URL"]) {
      expect(p.out()).toContain(word);
    }
    expect(p.serverPid()).toBeUndefined(); // no log line: no server
  }, 30_000);

  it("npm start --offline without --: npm keeps the option; one line says what to type, exit 2 (issue 22, point 5)", async () => {
    const p = startProcess("npm", ["--prefix", ROOT, "start", "--offline"], { env: baseEnv({ HOST: "127.0.0.1" }), cwd: outside });
    expect((await p.exited).code).toBe(2);
    expect(p.err()).toContain("aiflow-sms-agent: npm took --offline as its own setting; type: npm start -- --offline");
    expect(p.err()).not.toContain("no model endpoint");
  }, 60_000);

  it("npm run chat --offline and npm start --offline --config …: the same one line, keeping what else was typed (fresh-clone walkthrough)", async () => {
    const chat = startProcess("npm", ["--prefix", ROOT, "run", "chat", "--offline"], { env: baseEnv({}), cwd: outside });
    expect((await chat.exited).code).toBe(2);
    expect(chat.err()).toContain("chat: npm took --offline as its own setting; type: npm run chat -- --offline");
    const start = startProcess("npm", ["--prefix", ROOT, "start", "--offline", "--", "--config", "config/callback.yaml"], { env: baseEnv({ HOST: "127.0.0.1" }), cwd: outside });
    expect((await start.exited).code).toBe(2);
    expect(start.err()).toContain("type: npm start -- --offline --config config/callback.yaml");
  }, 60_000);

  it("a model URL without a scheme is named first, before the token a public HOST needs (fresh-clone walkthrough)", async () => {
    const p = node({ OPENAI_BASE_URL: "localhost:11434/v1" });
    expect((await p.exited).code).toBe(1);
    expect(p.err()).toMatch(/OPENAI_BASE_URL: "localhost:11434\/v1" has no http:\/\/ or https:\/\/ in front/);
    expect(p.err()).not.toMatch(/AIFLOW_API_TOKEN/);
    const spaced = node({ OPENAI_BASE_URL: " http://127.0.0.1:11434/v1", HOST: "127.0.0.1" });
    expect((await spaced.exited).code).toBe(1);
    expect(spaced.err()).toMatch(/has spaces around it/);
  }, 60_000);

  it("without OPENAI_API_KEY or OPENAI_BASE_URL: exit 1 and one line saying what to set, also through npm", async () => {
    const p = node({ HOST: "127.0.0.1" });
    expect((await p.exited).code).toBe(1);
    expect(p.out()).toBe("");
    expect(p.err().trim().split("\n")).toEqual([expect.stringMatching(/^aiflow-sms-agent: no model endpoint: set OPENAI_API_KEY .* or OPENAI_BASE_URL .*--offline/)]);

    const viaNpm = npmStart({ HOST: "127.0.0.1" });
    expect((await viaNpm.exited).code).not.toBe(0);
    expect(viaNpm.err()).toContain("aiflow-sms-agent: no model endpoint");
  }, 30_000);

  it("a bad config, a missing config file, an unknown option and a bad LOG_LEVEL each stop start-up with one line", async () => {
    const bad = configFile("bad.yaml", (y) => y.replace("temperature: 0.2", "temperature: 7"));
    const cases = [
      { p: node({ OPENAI_API_KEY: "k", CONFIG: bad }), line: /llm\.temperature/ },
      { p: node({ OPENAI_API_KEY: "k" }, ["--config", join(outside, "missing.yaml")]), line: /^aiflow-sms-agent: cannot read config file .*missing\.yaml/ },
      { p: node({ OPENAI_API_KEY: "k" }, ["--verbose"]), line: /^aiflow-sms-agent: .*--verbose.*\(npm start -- --help lists the options\)$/m },
      { p: node({ OPENAI_API_KEY: "k", LOG_LEVEL: "loud" }), line: /^aiflow-sms-agent: invalid environment: LOG_LEVEL must be one of .*info.*, got "loud"$/m },
    ];
    for (const { p, line } of cases) {
      expect((await p.exited).code).toBe(1);
      expect(p.err()).toMatch(line);
      expect(p.err()).not.toMatch(/^\s+at /m); // no stack trace
    }
    // The zod report names each field on a line of its own; the others are exactly one line.
    for (const { p } of cases.slice(1)) expect(p.err().trim().split("\n")).toHaveLength(1);
  }, 30_000);

  it("a port already in use: exit 1 with one line naming the port and how to change it", async () => {
    const taken: Server = createServer();
    await new Promise<void>((r) => taken.listen(0, "127.0.0.1", r));
    const port = (taken.address() as { port: number }).port;
    try {
      const p = node({ OPENAI_API_KEY: "k", HOST: "127.0.0.1", PORT: String(port), CONFIG: configFile("busy.yaml") });
      expect((await p.exited).code).toBe(1);
      expect(p.err().trim().split("\n")).toEqual([`aiflow-sms-agent: port ${port} on 127.0.0.1 is already in use (set PORT or server.port)`]);
    } finally {
      await new Promise<void>((r) => taken.close(() => r()));
    }
  }, 30_000);
});

describe("secure by default: no token, no open address", () => {
  it("without AIFLOW_API_TOKEN on 0.0.0.0 it refuses to start, naming the token and server.allowNoToken", async () => {
    const p = node({ OPENAI_API_KEY: "k", HOST: "0.0.0.0", PORT: String(await freePort()), CONFIG: configFile("open.yaml") });
    expect((await p.exited).code).toBe(1);
    const lines = p.err().trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^aiflow-sms-agent: refusing to serve 0\.0\.0\.0 without AIFLOW_API_TOKEN/);
    expect(lines[0]).toContain("server.allowNoToken: true");
  }, 30_000);

  it("on 0.0.0.0 it starts with a token, or without one when the config says server.allowNoToken: true", async () => {
    const withToken = node({ OPENAI_API_KEY: "k", HOST: "0.0.0.0", PORT: String(await freePort()), AIFLOW_API_TOKEN: "t", CONFIG: configFile("token.yaml") });
    const optedOut = node({
      OPENAI_API_KEY: "k",
      HOST: "0.0.0.0",
      PORT: String(await freePort()),
      CONFIG: configFile("optout.yaml", (y) => y.replace("  host: 0.0.0.0\n", "  host: 0.0.0.0\n  allowNoToken: true\n")),
    });
    for (const p of [withToken, optedOut]) {
      await p.waitFor(/agent ready/);
      p.child.kill("SIGTERM");
      expect((await p.exited).code).toBe(0);
    }
    expect(optedOut.out()).toMatch(/"auth":false/);
  }, 30_000);

  it("on loopback without a token it starts (the default for a local try-out)", async () => {
    const p = node({ OPENAI_API_KEY: "k", HOST: "127.0.0.1", PORT: String(await freePort()), CONFIG: configFile("loopback.yaml") });
    await p.waitFor(/agent ready/);
    p.child.kill("SIGTERM");
    expect((await p.exited).code).toBe(0);
  }, 30_000);
});

describe("npm start runs the compiled server and stops when told", () => {
  it("serves a call on PORT/HOST against OPENAI_BASE_URL; SIGTERM to npm finishes the request in flight, the server exits, the port is free", async () => {
    const port = await freePort();
    const p = npmStart({
      OPENAI_BASE_URL: fake.baseURL,
      PORT: String(port),
      HOST: "127.0.0.1",
      AIFLOW_API_TOKEN: "tok",
      LLM_MODEL: "env-model",
      LOG_LEVEL: "info",
      CONFIG: configFile("serve.yaml"),
    });
    await p.waitFor(/"msg":"sipgate AI Flow agent ready: POST \/webhook"/);
    const server = p.serverPid()!;
    // npm's child is the compiled server itself (the start script execs node), not tsx or a shell.
    expect(procInfo(server)).toMatchObject({ ppid: p.child.pid, cmd: expect.stringMatching(/^node .*dist\/src\/main\.js$/) });

    const base = `http://127.0.0.1:${port}`;
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/webhook`, { method: "POST", headers: json, body: JSON.stringify(ev.start("proc-1")) })).status).toBe(401);
    const headers = { ...json, "x-api-token": "tok" };
    expect((await fetch(`${base}/webhook`, { method: "POST", headers, body: JSON.stringify(ev.start("proc-1")) })).status).toBe(200);

    // A turn whose model answer takes a while; SIGTERM arrives while it is in flight.
    const asked = fake.requests.length;
    fake.enqueue(reply.text("Wir haben Montag bis Freitag geöffnet.", 600));
    const turn = fetch(`${base}/webhook`, { method: "POST", headers, body: JSON.stringify(ev.speak("proc-1", "Wann haben Sie offen?")) });
    while (fake.requests.length === asked) await new Promise((r) => setTimeout(r, 10));
    p.child.kill("SIGTERM");

    const answer = await turn;
    expect(answer.status).toBe(200);
    expect(await answer.json()).toMatchObject({ type: "speak", text: "Wir haben Montag bis Freitag geöffnet." });
    expect(fake.requests.at(-1)!.model).toBe("env-model");
    expect((await p.exited).code).toBe(0);
    expect(await waitGone(server)).toBe(true);
    expect(() => process.kill(server, 0)).toThrow(expect.objectContaining({ code: "ESRCH" }));
    expect(await portAccepts(port)).toBe(false);
    expect(p.out()).toMatch(/"signal":"SIGTERM","msg":"shutting down: finishing in-flight requests"/);

    // Structured logs: one line per event with session, step and timings.
    const handled = p
      .out()
      .split("\n")
      .filter((l) => l.includes('"event handled"'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(handled.at(-1)).toMatchObject({ sessionId: "proc-1", event: "user_speak", step: "main", llmRequests: 1 });
    expect(handled.at(-1)).toHaveProperty("modelMs");
    expect(handled.at(-1)).toHaveProperty("engineMs");
    expect(handled.at(-1)).toHaveProperty("promptTokens");
  }, 60_000);

  it("when npm itself is killed (SIGKILL, no chance to forward), the server notices and exits, freeing the port", async () => {
    const port = await freePort();
    const p = npmStart({ OPENAI_BASE_URL: fake.baseURL, PORT: String(port), HOST: "127.0.0.1", CONFIG: configFile("orphan.yaml") });
    await p.waitFor(/agent ready/);
    const server = p.serverPid()!;
    p.child.kill("SIGKILL");
    await p.exited;
    expect(await waitGone(server, 5000)).toBe(true);
    expect(await portAccepts(port)).toBe(false);
  }, 60_000);
});

describe("npm start -- --offline: the real webhook on the built-in scripted model", () => {
  it("needs no API key, says DEMO MODE, answers a call asking for an SMS, and /healthz shows demo", async () => {
    const port = await freePort();
    // From a folder outside the package, compiled server directly: config and prompts come from the package.
    const p = node({ PORT: String(port) }, ["--offline"]);
    const ready = await p.waitFor(/^.*DEMO MODE: scripted model, not a real LLM.*$/m);
    // Without HOST a demo stays on this machine, so no token is needed.
    expect(JSON.parse(ready)).toMatchObject({ demo: true, model: "scripted", url: `http://127.0.0.1:${port}/webhook`, store: "memory" });
    expect(isRunning(p.child.pid!)).toBe(true);

    const base = `http://127.0.0.1:${port}`;
    const post = async (event: unknown) => {
      const r = await fetch(`${base}/webhook`, { method: "POST", headers: json, body: JSON.stringify(event) });
      expect(r.status).toBe(200);
      const body = (await r.json()) as Action | Action[];
      return Array.isArray(body) ? body : [body];
    };
    expect((await post(ev.start("demo-1")))[0]).toMatchObject({ type: "speak", text: expect.stringContaining("Praxis Dr. Muster") });
    const asked = await post(ev.speak("demo-1", "Können Sie mir die Öffnungszeiten per SMS schicken?"));
    expect(asked[0]).toMatchObject({ type: "speak", text: expect.stringMatching(/^Darf ich Ihnen die Informationen per SMS an die Nummer/) });

    expect(await (await fetch(`${base}/healthz`)).json()).toMatchObject({ status: "ok", demo: true, model: "scripted" });
    p.child.kill("SIGTERM");
    expect((await p.exited).code).toBe(0);
  }, 30_000);

  it("agent: callback: without its signing secret one line naming the variable; with it, a call's report reaches the receiver, signed", async () => {
    const rx = await startReceiver(() => ({ status: 200 }));
    try {
      const config = join(outside, "callback.yaml");
      writeFileSync(
        config,
        readFileSync(join(ROOT, "config/callback.yaml"), "utf8")
          .replace("path: data/consent-ledger.jsonl", `path: ${join(outside, "callback.ledger.jsonl")}`)
          .replace(/url: https:\/\/crm\.praxis-muster\.example\/\S+/, `url: ${rx.url}`)
          .replace("pollMs: 1000", "pollMs: 50"),
      );
      const missing = node({ HOST: "127.0.0.1", OPENAI_BASE_URL: fake.baseURL }, ["--config", config]);
      expect((await missing.exited).code).toBe(1);
      expect(missing.err().trim().split("\n")).toEqual([expect.stringMatching(/^aiflow-sms-agent: agents\.callback\.endpoint\.secretEnv: set CALLBACK_SIGNING_SECRET /)]);

      const port = await freePort();
      const p = node({ HOST: "127.0.0.1", PORT: String(port), OPENAI_BASE_URL: fake.baseURL, OPENAI_API_KEY: "k", CALLBACK_SIGNING_SECRET: "s3cret" }, ["--config", config]);
      expect(JSON.parse(await p.waitFor(/^.*agent ready.*$/m))).toMatchObject({ agent: "callback" });
      const post = (event: unknown) => fetch(`http://127.0.0.1:${port}/webhook`, { method: "POST", headers: json, body: JSON.stringify(event) });
      expect((await post(ev.start("cb-start-1"))).status).toBe(200);
      expect((await post(ev.end("cb-start-1"))).status).toBe(204);
      for (let i = 0; i < 200 && rx.received.length === 0; i++) await new Promise((r) => setTimeout(r, 25));
      const [got] = rx.received;
      expect(got!.headers["idempotency-key"]).toBe("cb-start-1");
      const ok = verifySignature("s3cret", { timestamp: got!.headers["x-signature-timestamp"], signature: got!.headers["x-signature"] }, got!.body, { nowSeconds: Math.floor(Date.now() / 1000) });
      expect(ok).toBe(true);
      expect(JSON.parse(got!.body)).toMatchObject({ type: "callback_request", callId: "cb-start-1", call: { ended: "session_end" } });
      p.child.kill("SIGTERM");
      expect((await p.exited).code).toBe(0);
    } finally {
      await rx.close();
    }
  }, 30_000);

  it("LLM_MODEL=scripted is the same demo", async () => {
    const p = node({ PORT: String(await freePort()), LLM_MODEL: "scripted" });
    await p.waitFor(/DEMO MODE/);
    p.child.kill("SIGTERM");
    expect((await p.exited).code).toBe(0);
  }, 30_000);
});
