import { spawn } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { EndpointWatch, isUnreachableFailure } from "../evals/harness/endpointWatch.js";
import type { ChatModel } from "../src/llm/chatModel.js";
import { FakeOpenAIServer, reply, type ChatBody } from "./support/fakeOpenAI.js";

const TSX = join("node_modules", ".bin", "tsx");

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/**
 * `npm run eval` as a child process. Asynchronous, not spawnSync: the fake model server runs in
 * this process and must keep answering while the child waits for it.
 */
function runEval(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env };
  // The developer's own endpoint, model or config must not leak into what is tested here.
  for (const k of ["OPENAI_API_KEY", "OPENAI_BASE_URL", "LLM_MODEL", "CONFIG"]) delete childEnv[k];
  Object.assign(childEnv, env);
  return new Promise((resolve, reject) => {
    const child = spawn(TSX, ["evals/run.ts", ...args], { env: childEnv });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (status) => resolve({ status, stdout, stderr }));
  });
}

/** A port nothing listens on: bound by the OS, then released. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as { port: number };
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

const isPersonaRequest = (body: ChatBody) => String(body.messages[0]?.content ?? "").includes("role-playing a phone caller");
const offers = (body: ChatBody, tool: string) => (body.tools ?? []).some((t) => t.function.name === tool);

let fake: FakeOpenAIServer | undefined;
afterEach(async () => {
  await fake?.close();
  fake = undefined;
});

describe("npm run eval: persona scenarios record and replay", () => {
  it("a replay reproduces the recorded persona caller, not the offline persona, with no miss and no network", async () => {
    fake = new FakeOpenAIServer();
    const baseURL = await fake.start();
    // A caller who says other things than the offline scripted persona would: a replay that
    // substituted the offline persona would send the agent other requests and miss.
    const OPENER = "Hallo, ich brauche ganz schnell den Buchungslink aufs Handy.";
    fake.onRequest((body) => {
      if (isPersonaRequest(body)) {
        const agentLines = body.messages.slice(1).map((m) => String(m.content));
        if (agentLines.length <= 1) return reply.text(OPENER);
        return reply.text(/abgeschickt/.test(agentLines.at(-1)!) ? "HANGUP" : "Ja, bitte.");
      }
      if (offers(body, "start_sms_flow")) return reply.tool("start_sms_flow", { info: "booking_link" });
      if (offers(body, "record_consent")) return reply.tool("record_consent", { consented: true });
      return reply.text("Gern.");
    });
    const dir = mkdtempSync(join(tmpdir(), "cass-persona-"));
    const rec = await runEval(["--models", "fake-model", "--filter", "persona", "--record", dir, "--out", join(dir, "o1")], { OPENAI_BASE_URL: baseURL, OPENAI_API_KEY: "test" });
    expect(rec.status, rec.stderr + rec.stdout).toBe(0);
    expect(readdirSync(dir).filter((f) => f.endsWith(".json")).sort()).toEqual(["fake-model.json", "fake-model.persona-caller.json"]);
    expect(fake.requests.some(isPersonaRequest)).toBe(true);
    await fake.close();
    fake = undefined;

    const rep = await runEval(["--replay", dir, "--models", "fake-model", "--filter", "persona", "--out", join(dir, "o2")]);
    expect(rep.status, rep.stderr + rep.stdout).toBe(0);
    expect(rep.stderr).not.toMatch(/cassette miss/);
    const recorded = JSON.parse(readFileSync(join(dir, "o1", "report.json"), "utf8")).trials[0];
    const replayed = JSON.parse(readFileSync(join(dir, "o2", "report.json"), "utf8")).trials[0];
    expect(replayed.error).toBeUndefined();
    expect(replayed.passed).toBe(true);
    const said = (t: { transcript: Array<{ caller: string; actions: unknown[] }> }) => t.transcript.map((e) => [e.caller, e.actions]);
    expect(said(replayed)).toEqual(said(recorded));
    expect(replayed.transcript.map((e: { caller: string }) => e.caller)).toContain(OPENER);
  }, 120_000);

  it("an offline recording replays the same way, and a replay dir without the caller's cassette names the missing file", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cass-persona-offline-"));
    const rec = await runEval(["--offline", "--filter", "persona", "--record", dir, "--out", join(dir, "o1")]);
    expect(rec.status, rec.stderr).toBe(0);
    const rep = await runEval(["--replay", dir, "--models", "scripted", "--filter", "persona", "--out", join(dir, "o2")]);
    expect(rep.status, rep.stderr + rep.stdout).toBe(0);
    const transcript = (o: string) => JSON.parse(readFileSync(join(dir, o, "report.json"), "utf8")).trials[0].transcript.map((e: { caller: string; actions: unknown[] }) => [e.caller, e.actions]);
    expect(transcript("o2")).toEqual(transcript("o1"));

    // A cassette recorded before callers were recorded: one line naming the file, no stack trace.
    const old = mkdtempSync(join(tmpdir(), "cass-old-"));
    copyFileSync(join(dir, "scripted.json"), join(old, "scripted.json"));
    const missing = await runEval(["--replay", old, "--models", "scripted", "--filter", "persona", "--out", join(old, "o")]);
    expect(missing.status).toBe(1);
    expect(missing.stderr.trim()).toMatch(/^eval: no cassette for model scripted\.persona-caller: .*scripted\.persona-caller\.json does not exist; record one with --record/);
    expect(missing.stderr).not.toMatch(/\n\s+at /);
  }, 120_000);
});

describe("npm run eval: a model that cannot be reached is an error, not 0% pass", () => {
  it("a closed port: one line naming the model and endpoint, exit 2, no score table", async () => {
    const url = `http://127.0.0.1:${await closedPort()}/v1`;
    const r = await runEval(["--models", "gpt-4o-mini", "--filter", "happy-own-number-de", "--out", mkdtempSync(join(tmpdir(), "eval-out-"))], { OPENAI_BASE_URL: url });
    expect(r.status, r.stderr + r.stdout).toBe(2);
    expect(r.stderr.trim().split("\n").at(-1)).toBe(`eval: model gpt-4o-mini at ${url} is unreachable (Connection error: ECONNREFUSED)`);
    expect(r.stdout).not.toMatch(/pass rate|eval FAILED/);
  }, 60_000);

  it("a URL without http(s) (issue 22): one line naming OPENAI_BASE_URL before any scenario runs, exit 2", async () => {
    const r = await runEval(["--models", "gpt-4o-mini", "--filter", "happy-own-number-de", "--out", mkdtempSync(join(tmpdir(), "eval-out-"))], { OPENAI_BASE_URL: "localhost:11434/v1" });
    expect(r.status, r.stderr + r.stdout).toBe(2);
    expect(r.stderr.trim().split("\n")).toEqual(['eval: OPENAI_BASE_URL: "localhost:11434/v1" has no http:// or https:// in front (for example http://localhost:11434/v1)']);
    expect(r.stdout).toBe("");
  }, 60_000);

  it("an endpoint that rejects the key (401) or does not know the model (404) is unreachable too; a 500 is the model's failure", async () => {
    fake = new FakeOpenAIServer();
    const baseURL = await fake.start();
    for (const status of [401, 404]) {
      fake.reset();
      fake.onRequest(() => reply.error(status));
      const r = await runEval(["--models", "gpt-4o-mini", "--filter", "happy-own-number-de", "--out", mkdtempSync(join(tmpdir(), "eval-out-"))], { OPENAI_BASE_URL: baseURL, OPENAI_API_KEY: "wrong" });
      expect(r.status, r.stderr + r.stdout).toBe(2);
      expect(r.stderr.trim().split("\n").at(-1)).toBe(`eval: model gpt-4o-mini at ${baseURL} is unreachable (${status} scripted HTTP ${status})`);
    }
    fake.reset();
    fake.onRequest(() => reply.error(500));
    const r = await runEval(["--models", "gpt-4o-mini", "--filter", "happy-own-number-de", "--out", mkdtempSync(join(tmpdir(), "eval-out-"))], { OPENAI_BASE_URL: baseURL, OPENAI_API_KEY: "k" });
    expect(r.status).toBe(1);
    expect(r.stderr).not.toMatch(/unreachable/);
    expect(r.stdout).toMatch(/eval FAILED/);
  }, 120_000);

  it("the watch calls a model unreachable only when nothing ever came back and every failure was a reachability one", async () => {
    const answering: ChatModel = { complete: async (req) => ({ text: "ok", toolCalls: [], usage: { promptTokens: 0, completionTokens: 0 }, model: req.model }) };
    const req = { model: "m", temperature: 0, maxTokens: 10, system: "", messages: [], tools: [] };

    const dead = new EndpointWatch();
    dead.onError("m", "model request to http://127.0.0.1:9/v1 failed: Connection error: ECONNREFUSED");
    dead.onError("m", "model request failed: 401 Incorrect API key provided");
    expect(dead.unreachable()).toBe("Connection error: ECONNREFUSED");

    const once = new EndpointWatch();
    once.onError("m", "model request failed: Connection error.");
    await once.wrap(answering).complete(req);
    expect(once.unreachable()).toBeUndefined();

    const slow = new EndpointWatch();
    slow.onError("m", "model request failed: Connection error.");
    slow.onError("m", "timed out after 10000 ms");
    expect(slow.unreachable()).toBeUndefined();

    expect(new EndpointWatch().unreachable()).toBeUndefined();
    expect(isUnreachableFailure("model stream failed: 404 status code (no body)")).toBe(true);
    expect(isUnreachableFailure("model request failed: 500 internal")).toBe(false);
    // Streaming is offered only when the wrapped model has it (the engine checks for the method).
    expect(new EndpointWatch().wrap(answering).stream).toBeUndefined();
  });
});

describe("npm run eval --matrix: strictTools per model", () => {
  it("an evalModels entry with strictTools: false sends tools without strict; the others keep llm.strictTools", async () => {
    fake = new FakeOpenAIServer();
    const baseURL = await fake.start();
    fake.onRequest(() => reply.text("Gern."));
    const dir = mkdtempSync(join(tmpdir(), "eval-strict-"));
    // The German config with a two-model matrix on the fake server; named agent.yaml so the
    // harness finds it as the de-DE config.
    const config = readFileSync("config/agent.yaml", "utf8").replace(/^evalModels:\n(?:[ \t]+(?:- |#).*\n)+/m, "");
    writeFileSync(
      join(dir, "agent.yaml"),
      `${config}\nevalModels:\n  - { name: local, model: local-model, baseURL: "${baseURL}", strictTools: false }\n  - { name: hosted, model: hosted-model, baseURL: "${baseURL}" }\n`,
    );
    const r = await runEval(["--matrix", "--config", join(dir, "agent.yaml"), "--filter", "happy-own-number-de", "--out", join(dir, "out")], { OPENAI_API_KEY: "k" });
    expect(r.stderr, r.stdout).not.toMatch(/unreachable|config/i);
    const byModel = (model: string) => fake!.requests.filter((b) => b.model === model && (b.tools?.length ?? 0) > 0);
    expect(byModel("local-model").length).toBeGreaterThan(0);
    expect(byModel("hosted-model").length).toBeGreaterThan(0);
    for (const b of byModel("local-model")) for (const t of b.tools!) expect(t.function.strict).toBeUndefined();
    for (const b of byModel("hosted-model")) for (const t of b.tools!) expect(t.function.strict).toBe(true);
  }, 120_000);
});
