import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LOGGED_REPORT_MESSAGE } from "../src/agents/callback/loggedReports.js";
import { describeDestination, reportDestination } from "../src/agents/callback/reportDestination.js";
import { CALLBACK_ENDPOINT_ENV } from "../src/agents/callback/env.js";
import { applyEnv, loadConfigFile } from "../src/appConfig.js";
import { signBody } from "../src/outbox/signing.js";
import { ev } from "./support/events.js";
import { freePort, isRunning, waitGone } from "./support/processes.js";
import { MAIN, ROOT, baseEnv, buildDist, startProcess, stopAll, type RunningProcess } from "./support/serverProcess.js";

/**
 * Issue 22, point 4 ("must work" 3): the callback agent's offline demo posts its report to a
 * receiver named in CALLBACK_URL and otherwise says where the report went (ready line, --help, the
 * log); every agents.callback.endpoint setting comes from the environment too; the README's receiver
 * example runs as written in plain Node, and takes a real signed post from the running demo.
 */

const outside = mkdtempSync(join(tmpdir(), "aiflow-cb-demo-"));
const CALLBACK_CONFIG = join(ROOT, "config/callback.yaml");
const TSX = join(ROOT, "node_modules", ".bin", "tsx");
const SECRET = "demo-secret";

/** The receiver block the README links to (docs/operations.md, "Callback reports"), exactly as written: the ```js block that starts with `// receiver.mjs`. */
function readmeReceiver(): string {
  const readme = readFileSync(join(ROOT, "docs/operations.md"), "utf8");
  const m = /```js\n(\/\/ receiver\.mjs[^\n]*\n[\s\S]*?)```/.exec(readme);
  if (!m) throw new Error("docs/operations.md has no ```js block starting with // receiver.mjs");
  return m[1]!;
}

/** The README receiver in plain node (no tsx, no loader), from a folder outside the package; resolves with its URL. */
async function startReadmeReceiver(secret = SECRET): Promise<{ p: RunningProcess; url: string }> {
  const file = join(outside, "receiver.mjs");
  writeFileSync(file, readmeReceiver());
  const p = startProcess(process.execPath, [file], { env: baseEnv({ CALLBACK_SIGNING_SECRET: secret, PORT: "0" }), cwd: outside });
  const line = await p.waitFor(/receiver listening on (\S+)/);
  return { p, url: line.replace("receiver listening on ", "") };
}

/** The compiled server as `npm start -- --offline --config config/callback.yaml` runs it. */
const demo = (env: Record<string, string>) => startProcess(process.execPath, [MAIN, "--offline", "--config", CALLBACK_CONFIG], { env: baseEnv(env), cwd: outside });

/** Stops a process this file started with SIGTERM and checks it is gone; how it ended ("0": exit 0, else the signal). */
async function stop(p: RunningProcess): Promise<string> {
  p.child.kill("SIGTERM");
  const { code, signal } = await p.exited;
  expect(await waitGone(p.child.pid!)).toBe(true);
  expect(isRunning(p.child.pid!)).toBe(false);
  return signal ?? String(code);
}

const json = { "content-type": "application/json" };

/** A whole callback request through the demo's webhook, with the scripted model, then the call's end. */
async function callThrough(port: number, id: string): Promise<void> {
  const post = async (event: unknown) => {
    const r = await fetch(`http://127.0.0.1:${port}/webhook`, { method: "POST", headers: json, body: JSON.stringify(event) });
    expect(r.status).toBeLessThan(300);
    type Action = { type: string; text?: string };
    return r.status === 204 ? [] : ([] as Action[]).concat((await r.json()) as Action | Action[]);
  };
  await post(ev.start(id));
  for (const said of ["Anna Schmidt", "Ja", "Es geht um eine Frage zur Rechnung", "Ja", "Morgen früh", "Ja"]) {
    await post(ev.speechEnded(id));
    await post(ev.speak(id, said));
  }
  await post(ev.speechEnded(id));
  const offer = await post(ev.speak(id, "Nein, keine SMS."));
  expect(offer.map((a) => a.text).join(" ")).toMatch(/keine SMS/);
  await post(ev.end(id));
}

beforeAll(() => buildDist(), 120_000);
afterAll(() => stopAll());

describe("every agents.callback.endpoint setting from the environment", () => {
  const file = loadConfigFile(CALLBACK_CONFIG);

  it("each variable overrides its setting, and wins over the file", () => {
    const e = applyEnv(file, {
      CALLBACK_URL: "https://receiver.example/hook",
      CALLBACK_SECRET_ENV: "MY_SECRET",
      CALLBACK_TIMEOUT_MS: "2500",
      CALLBACK_MAX_ATTEMPTS: "4",
      CALLBACK_BACKOFF_INITIAL_MS: "100",
      CALLBACK_BACKOFF_MAX_MS: "9000",
      CALLBACK_BACKOFF_FACTOR: "1.5",
      CALLBACK_POLL_MS: "50",
    }).agents.callback!.endpoint;
    expect(e).toEqual({ url: "https://receiver.example/hook", secretEnv: "MY_SECRET", timeoutMs: 2500, maxAttempts: 4, backoff: { initialMs: 100, maxMs: 9000, factor: 1.5 }, pollMs: 50 });
    // Unset or empty: the file's values stay.
    expect(applyEnv(file, { CALLBACK_URL: "" }).agents.callback!.endpoint).toEqual(file.agents.callback!.endpoint);
  });

  it("a bad value stops start-up with one line naming the variable and the setting it overrides", () => {
    const problem = (env: Record<string, string>) => {
      try {
        applyEnv(file, env);
      } catch (e) {
        return (e as Error).message;
      }
      return "accepted";
    };
    expect(problem({ CALLBACK_TIMEOUT_MS: "soon" })).toBe('invalid environment: CALLBACK_TIMEOUT_MS (agents.callback.endpoint.timeoutMs): must be a number, got "soon"');
    expect(problem({ CALLBACK_POLL_MS: "5" })).toMatch(/^invalid environment: CALLBACK_POLL_MS \(agents\.callback\.endpoint\.pollMs\): Number must be greater than or equal to 10$/);
    expect(problem({ CALLBACK_URL: "http://crm.example.com/hook" })).toMatch(/^invalid environment: CALLBACK_URL \(agents\.callback\.endpoint\.url\): must be an https:\/\/ URL/);
    expect(problem({ CALLBACK_SECRET_ENV: "lower-case" })).toMatch(/^invalid environment: CALLBACK_SECRET_ENV \(agents\.callback\.endpoint\.secretEnv\): an environment variable name/);
    // Two at once: one line each.
    expect(problem({ CALLBACK_MAX_ATTEMPTS: "0", CALLBACK_BACKOFF_FACTOR: "20" }).split("\n")).toEqual([
      "invalid environment:",
      expect.stringMatching(/^ {2}CALLBACK_MAX_ATTEMPTS \(agents\.callback\.endpoint\.maxAttempts\): /),
      expect.stringMatching(/^ {2}CALLBACK_BACKOFF_FACTOR \(agents\.callback\.endpoint\.backoff\.factor\): /),
    ]);
  });

  it("the reception agent's config (no callback section) ignores them", () => {
    const reception = loadConfigFile(join(ROOT, "config/agent.yaml"));
    expect(applyEnv(reception, { CALLBACK_URL: "not a url", CALLBACK_TIMEOUT_MS: "x" }).agents.callback).toBeUndefined();
  });

  it("the README's variable list and npm start -- --help name every one of them", () => {
    const readme = readFileSync(join(ROOT, "README.md"), "utf8");
    const help = spawnSync(process.execPath, [MAIN, "--help"], { encoding: "utf8", env: baseEnv() });
    expect(help.status).toBe(0);
    for (const { name } of CALLBACK_ENDPOINT_ENV) {
      expect(readme, name).toMatch(new RegExp(`^\\|[^\\n]*\`${name}\``, "m"));
      expect(help.stdout, name).toContain(name);
    }
    expect(help.stdout).toMatch(/callback agent's demo logs each call's report/);
  });
});

describe("where the reports go", () => {
  const file = loadConfigFile(CALLBACK_CONFIG);
  const env = { CALLBACK_URL: "https://user:pw@receiver.example/hook?token=abc", CALLBACK_SIGNING_SECRET: "s" };

  it("the service posts to the configured receiver; test calls only to one named in CALLBACK_URL", () => {
    expect(reportDestination(file.agents.callback!, { CALLBACK_SIGNING_SECRET: "s" }, { testCalls: false })).toMatchObject({ kind: "post", url: file.agents.callback!.endpoint.url });
    expect(reportDestination(file.agents.callback!, { CALLBACK_SIGNING_SECRET: "s" }, { testCalls: true })).toEqual({ kind: "shown" });
    expect(reportDestination(applyEnv(file, env).agents.callback!, env, { testCalls: true })).toMatchObject({ kind: "post", url: env.CALLBACK_URL, secret: "s" });
    for (const testCalls of [false, true]) expect(() => reportDestination(applyEnv(file, env).agents.callback!, { CALLBACK_URL: env.CALLBACK_URL }, { testCalls })).toThrow(/^agents\.callback\.endpoint\.secretEnv: set CALLBACK_SIGNING_SECRET /);
  });

  it("is described without the URL's credentials or query (they may carry a token)", () => {
    const d = reportDestination(applyEnv(file, env).agents.callback!, env, { testCalls: true });
    expect(describeDestination(d, "logged")).toBe("posted to https://receiver.example/hook?…, signed with CALLBACK_SIGNING_SECRET");
  });
});

describe("the README's receiver example, in plain node", () => {
  it("takes a post signed as the agent signs it, once per Idempotency-Key; refuses a wrong signature and a stale timestamp", async () => {
    const { p, url } = await startReadmeReceiver();
    const body = JSON.stringify({ type: "callback_request", request: { name: "Probe" } });
    const send = (headers: Record<string, string>, raw = body) => fetch(url, { method: "POST", headers: { ...json, ...headers }, body: raw });
    const now = Math.floor(Date.now() / 1000);
    const signed = (ts: number, secret = SECRET, raw = body) => ({ "x-signature-timestamp": String(ts), "x-signature": signBody(secret, ts, raw), "idempotency-key": "k-1" });
    expect((await send(signed(now))).status).toBe(204);
    expect((await send(signed(now))).status).toBe(204); // a retry: answered, not handled twice
    expect((await send(signed(now, "wrong-secret"))).status).toBe(401);
    expect((await send(signed(now - 600))).status).toBe(401);
    expect((await send(signed(now), body.replace("Probe", "Other"))).status).toBe(401); // body changed after signing
    expect((await send({})).status).toBe(401);
    expect(p.out().match(/callback request k-1: /g)).toHaveLength(1);
    expect(await stop(p)).toBe("SIGTERM"); // the example has no handler: the signal ends it
  }, 30_000);
});

describe("npm start -- --offline with the callback agent", () => {
  it("without CALLBACK_URL: the ready line and the log say where each report went; nothing is posted", async () => {
    const port = await freePort();
    const p = demo({ PORT: String(port) });
    const ready = JSON.parse(await p.waitFor(/^.*DEMO MODE.*$/m)) as Record<string, unknown>;
    expect(ready).toMatchObject({ agent: "callback", reports: expect.stringMatching(/^logged as "callback report" lines when each call ends \(demo\), not posted; set CALLBACK_URL and CALLBACK_SIGNING_SECRET/) });
    await callThrough(port, "cb-demo-logged");
    const line = JSON.parse(await p.waitFor(/^.*callback report \(demo: logged.*$/m)) as { msg: string; report: Record<string, unknown> };
    expect(line.msg).toBe(LOGGED_REPORT_MESSAGE);
    expect(line.report).toMatchObject({ callId: "cb-demo-logged", request: { name: "Anna Schmidt", reason: "eine Frage zur Rechnung", complete: true }, sms: { status: "declined" }, call: { ended: "session_end" } });
    expect(await stop(p)).toBe("0");
  }, 60_000);

  it("with CALLBACK_URL but no signing secret: exit 1, one line naming agents.callback.endpoint.secretEnv", async () => {
    const p = demo({ PORT: String(await freePort()), CALLBACK_URL: "http://127.0.0.1:9/callback-requests" });
    expect((await p.exited).code).toBe(1);
    expect(p.out()).toBe("");
    expect(p.err().trim().split("\n")).toEqual(["aiflow-sms-agent: agents.callback.endpoint.secretEnv: set CALLBACK_SIGNING_SECRET to the signing secret the receiver checks the X-Signature header with"]);
  }, 30_000);

  it("with CALLBACK_URL and the secret: the README receiver gets the call's report, signed; the ready line names it", async () => {
    const rx = await startReadmeReceiver();
    const port = await freePort();
    const p = demo({ PORT: String(port), CALLBACK_URL: rx.url, CALLBACK_SIGNING_SECRET: SECRET, CALLBACK_POLL_MS: "50" });
    const ready = JSON.parse(await p.waitFor(/^.*DEMO MODE.*$/m)) as Record<string, unknown>;
    expect(ready.reports).toBe(`posted to ${rx.url}, signed with CALLBACK_SIGNING_SECRET`);
    await callThrough(port, "cb-demo-posted");
    const got = await rx.p.waitFor(/^callback request cb-demo-posted: .*$/m);
    expect(JSON.parse(got.replace("callback request cb-demo-posted: ", ""))).toMatchObject({ name: "Anna Schmidt", reason: "eine Frage zur Rechnung", timeWindow: "Morgen früh", complete: true });
    await p.waitFor(/"msg":"outbox: delivered"/);
    expect(p.out()).not.toContain("callback report (demo: logged");
    expect(await stop(p)).toBe("0");
    expect(await stop(rx.p)).toBe("SIGTERM"); // the example has no handler: the signal ends it
  }, 60_000);
});

describe("npm run chat -- --offline with the callback agent", () => {
  const input = ["Anna Schmidt", "Ja", "Es geht um eine Frage zur Rechnung", "Ja", "Morgen früh", "Ja", "Nein, keine SMS.", "/hangup"].join("\n") + "\n";
  const chat = (env: Record<string, string>) => spawnSync(TSX, [join(ROOT, "src/cli/chat.ts"), "--offline", "--config", CALLBACK_CONFIG], { input, encoding: "utf8", env: baseEnv(env), cwd: outside, timeout: 60_000 });

  it("--help says where the report goes", () => {
    const r = spawnSync(TSX, [join(ROOT, "src/cli/chat.ts"), "--help"], { encoding: "utf8", env: baseEnv(), cwd: outside });
    expect(r.stdout).toMatch(/With CALLBACK_URL \(and CALLBACK_SIGNING_SECRET\) set it also posts it there/);
  });

  it("without CALLBACK_URL it prints the report and says it was not posted", () => {
    const r = chat({});
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/⇪ report \(Idempotency-Key chat-\d+\) shown here, not posted; set CALLBACK_URL and CALLBACK_SIGNING_SECRET/);
    expect(r.stdout).toMatch(/"status": "declined"/);
  }, 60_000);

  it("with CALLBACK_URL it posts the report once to the README receiver and says so; a wrong secret is shown as not delivered", async () => {
    const rx = await startReadmeReceiver();
    const ok = chat({ CALLBACK_URL: rx.url, CALLBACK_SIGNING_SECRET: SECRET });
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stdout).toContain(`posted to ${rx.url}, signed with CALLBACK_SIGNING_SECRET`);
    const key = /Idempotency-Key (chat-\d+)/.exec(ok.stdout)![1]!;
    await rx.p.waitFor(new RegExp(`callback request ${key}: .*"name":"Anna Schmidt"`));

    const wrong = chat({ CALLBACK_URL: rx.url, CALLBACK_SIGNING_SECRET: "not-the-receivers" });
    expect(wrong.status, wrong.stderr).toBe(0);
    expect(wrong.stdout).toContain(`NOT delivered to ${rx.url} (http 401; a running service would retry it)`);

    const missing = chat({ CALLBACK_URL: rx.url });
    expect(missing.status).toBe(1);
    expect(missing.stderr.trim()).toBe("chat: agents.callback.endpoint.secretEnv: set CALLBACK_SIGNING_SECRET to the signing secret the receiver checks the X-Signature header with");
    expect(await stop(rx.p)).toBe("SIGTERM"); // the example has no handler: the signal ends it
  }, 90_000);
});
