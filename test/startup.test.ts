import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FakeOpenAIServer, reply } from "./support/fakeOpenAI.js";
import { ev } from "./support/events.js";

/** `npm start` as an operator runs it: a real process, real port, real env. */

const TSX = join("node_modules", ".bin", "tsx");

function run(env: Record<string, string>, args: string[] = [], untilReady = false) {
  const child = spawn(TSX, ["src/main.ts", ...args], { env: { PATH: process.env.PATH!, HOME: process.env.HOME ?? "/tmp", ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (c) => (stdout += c));
  child.stderr.on("data", (c) => (stderr += c));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const ready = untilReady
    ? new Promise<void>((resolve, reject) => {
        const t = setInterval(() => {
          if (stdout.includes("POST /webhook")) {
            clearInterval(t);
            resolve();
          }
        }, 50);
        void exited.then((code) => {
          clearInterval(t);
          reject(new Error(`exited with ${code}: ${stderr}${stdout}`));
        });
      })
    : Promise.resolve();
  return { child, exited, ready, out: () => stdout, err: () => stderr };
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe("npm start", () => {
  const dir = mkdtempSync(join(tmpdir(), "aiflow-start-"));
  const fake = new FakeOpenAIServer();
  beforeAll(async () => {
    await fake.start();
  });
  afterAll(async () => fake.close());

  it("without OPENAI_API_KEY or OPENAI_BASE_URL exits non-zero with one line saying what to set", async () => {
    const p = run({});
    expect(await p.exited).toBe(1);
    const lines = p.err().trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/set OPENAI_API_KEY .* or OPENAI_BASE_URL/);
  }, 20_000);

  it("a bad config stops start-up with a message naming the field", async () => {
    const bad = join(dir, "bad.yaml");
    writeFileSync(bad, readFileSync("config/agent.yaml", "utf8").replace("temperature: 0.2", "temperature: 7"));
    const p = run({ OPENAI_API_KEY: "k", CONFIG: bad });
    expect(await p.exited).toBe(1);
    expect(p.err()).toMatch(/llm\.temperature/);
    const viaFlag = run({ OPENAI_API_KEY: "k" }, ["--config", join(dir, "missing.yaml")]);
    expect(await viaFlag.exited).toBe(1);
    expect(viaFlag.err()).toMatch(/cannot read config file .*missing\.yaml/);
  }, 20_000);

  it("serves a call on PORT/HOST against OPENAI_BASE_URL with the token, then shuts down on SIGTERM", async () => {
    const port = await freePort();
    fake.enqueue(reply.text("Wir haben Montag bis Freitag geöffnet."));
    const p = run(
      { OPENAI_BASE_URL: fake.baseURL, PORT: String(port), HOST: "127.0.0.1", AIFLOW_API_TOKEN: "tok", LLM_MODEL: "env-model", CONFIG: "config/agent.yaml" },
      [],
      true,
    );
    try {
      await p.ready;
      const base = `http://127.0.0.1:${port}`;
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      const unauthorized = await fetch(`${base}/webhook`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(ev.start("proc-1")) });
      expect(unauthorized.status).toBe(401);
      const headers = { "content-type": "application/json", "x-api-token": "tok" };
      const start = await fetch(`${base}/webhook`, { method: "POST", headers, body: JSON.stringify(ev.start("proc-1")) });
      expect(start.status).toBe(200);
      const turn = await fetch(`${base}/webhook`, { method: "POST", headers, body: JSON.stringify(ev.speak("proc-1", "Wann haben Sie offen?")) });
      expect(await turn.json()).toMatchObject({ type: "speak", text: "Wir haben Montag bis Freitag geöffnet." });
      expect(fake.requests.at(-1)!.model).toBe("env-model");
      p.child.kill("SIGTERM");
      expect(await p.exited).toBe(0);
      // Structured logs: one line per event with session, step and timings.
      const handled = p
        .out()
        .split("\n")
        .filter((l) => l.includes('"event handled"'))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(handled.length).toBeGreaterThanOrEqual(2);
      expect(handled.at(-1)).toMatchObject({ sessionId: "proc-1", event: "user_speak", step: "main", llmRequests: 1 });
      expect(handled.at(-1)).toHaveProperty("modelMs");
      expect(handled.at(-1)).toHaveProperty("engineMs");
      expect(handled.at(-1)).toHaveProperty("promptTokens");
    } finally {
      p.child.kill("SIGKILL");
    }
  }, 30_000);
});
