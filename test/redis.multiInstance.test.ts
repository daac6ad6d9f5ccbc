import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FakeOpenAIServer, reply } from "./support/fakeOpenAI.js";
import { ev } from "./support/events.js";
import { portAccepts, waitGone } from "./support/processes.js";
import { REDIS_URL, connectRedis, freePort, uniquePrefix } from "./support/redis.js";
import { MAIN, ROOT, baseEnv, buildDist, startProcess, stopAll, type RunningProcess } from "./support/serverProcess.js";

/**
 * Two real server processes sharing one Redis, as behind a load balancer. Each is the compiled
 * server itself (`node dist/src/main.js`, what `npm start` execs), so the pid the test kills is
 * the instance, not a wrapper around it.
 */

const fake = new FakeOpenAIServer();
const prefix = uniquePrefix();
const dir = mkdtempSync(join(tmpdir(), "multi-"));
const configPath = join(dir, "agent.yaml");

interface Instance {
  proc: RunningProcess;
  pid: number;
  port: number;
  base: string;
}

async function startInstance(): Promise<Instance> {
  const port = await freePort();
  const proc = startProcess(process.execPath, [MAIN], {
    env: baseEnv({ OPENAI_BASE_URL: fake.baseURL, PORT: String(port), HOST: "127.0.0.1", REDIS_URL, REDIS_PREFIX: prefix, CONFIG: configPath }),
  });
  await proc.waitFor(/agent ready: POST \/webhook/);
  expect(proc.serverPid()).toBe(proc.child.pid);
  return { proc, pid: proc.child.pid!, port, base: `http://127.0.0.1:${port}` };
}

async function post(i: Instance, event: unknown): Promise<{ status: number; actions: Array<{ type: string; [k: string]: unknown }> }> {
  const r = await fetch(`${i.base}/webhook`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(event) });
  const text = await r.text();
  return { status: r.status, actions: r.status === 200 ? [].concat(JSON.parse(text)) : [] };
}

let A: Instance;
let B: Instance;
beforeAll(async () => {
  (await connectRedis()).disconnect(); // fail early and clearly without Redis
  buildDist();
  await fake.start();
  const cfg = readFileSync(join(ROOT, "config/agent.yaml"), "utf8").replace("path: data/consent-ledger.jsonl", `path: ${join(dir, "ledger.jsonl")}`);
  writeFileSync(configPath, cfg);
  fake.onRequest((body) => {
    const last = body.messages.at(-1)?.content ?? "";
    const tools = (body.tools ?? []).map((t) => t.function.name);
    if (tools.includes("start_sms_flow") && /SMS/.test(String(last))) return reply.tool("start_sms_flow", { info: "address" });
    if (tools.includes("record_consent") && /^Ja/.test(String(last))) return reply.tool("record_consent", { consented: true });
    return reply.text("Wie kann ich helfen?");
  });
  [A, B] = await Promise.all([startInstance(), startInstance()]);
}, 60_000);

afterAll(async () => {
  try {
    // B (still alive) shuts down gracefully; anything left after that is killed and awaited.
    if (B) {
      B.proc.child.kill("SIGTERM");
      expect((await B.proc.exited).code).toBe(0);
    }
  } finally {
    await stopAll();
    await fake.close();
    const redis = await connectRedis();
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  }
});

const sms = (r: { actions: Array<{ type: string }> }) => r.actions.filter((a) => a.type === "send_sms");

describe("two instances on one Redis", () => {
  it("a call whose events alternate between the instances completes as one conversation", async () => {
    const id = "multi-alternate";
    expect((await post(A, ev.start(id))).actions[0]).toMatchObject({ type: "speak" });
    const q = await post(B, ev.speak(id, "Schicken Sie mir die Adresse per SMS."));
    expect(String(q.actions[0]!.text)).toMatch(/^Darf ich/);
    const yes = await post(A, ev.speak(id, "Ja, gerne."));
    expect(sms(yes)).toEqual([expect.objectContaining({ phone_number: "4915112345678" })]);
    expect((await post(B, ev.end(id))).status).toBe(204);
  });

  it("the same event delivered to both instances at once sends one SMS", async () => {
    const id = "multi-duplicate";
    await post(A, ev.start(id));
    await post(B, ev.speak(id, "Per SMS bitte."));
    const yes = ev.speak(id, "Ja.");
    const [ra, rb] = await Promise.all([post(A, yes), post(B, yes)]);
    expect([...sms(ra), ...sms(rb)]).toHaveLength(1);
  });

  it("kill -9 of one instance mid-call: the call completes on the other with nothing lost", async () => {
    const id = "multi-kill";
    await post(A, ev.start(id));
    const q = await post(A, ev.speak(id, "Die Adresse bitte per SMS."));
    expect(String(q.actions[0]!.text)).toMatch(/^Darf ich/);
    A.proc.child.kill("SIGKILL");
    expect((await A.proc.exited).signal).toBe("SIGKILL");
    // The instance itself is gone, not only a wrapper: no such process, nothing on its port.
    expect(await waitGone(A.pid)).toBe(true);
    expect(() => process.kill(A.pid, 0)).toThrow(expect.objectContaining({ code: "ESRCH" }));
    expect(await portAccepts(A.port)).toBe(false);
    const yes = await post(B, ev.speak(id, "Ja, bitte."));
    expect(sms(yes)).toHaveLength(1);
    const ledger = readFileSync(join(dir, "ledger.jsonl"), "utf8");
    expect(ledger).toMatch(/"kind":"sms_sent".*"callId":"multi-kill"/);
  });
});
