import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FakeOpenAIServer, reply } from "./support/fakeOpenAI.js";
import { ev } from "./support/events.js";
import { REDIS_URL, connectRedis, freePort, uniquePrefix } from "./support/redis.js";

/** Two real server processes (npm start) sharing one Redis, as behind a load balancer. */

const fake = new FakeOpenAIServer();
const prefix = uniquePrefix();
const dir = mkdtempSync(join(tmpdir(), "multi-"));
const configPath = join(dir, "agent.yaml");

interface Instance {
  proc: ChildProcess;
  base: string;
  exited: Promise<number | null>;
}

async function startInstance(name: string): Promise<Instance> {
  const port = await freePort();
  const proc = spawn(join("node_modules", ".bin", "tsx"), ["src/main.ts"], {
    env: { PATH: process.env.PATH!, HOME: process.env.HOME ?? "/tmp", OPENAI_BASE_URL: fake.baseURL, PORT: String(port), HOST: "127.0.0.1", REDIS_URL, REDIS_PREFIX: prefix, CONFIG: configPath },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  proc.stdout!.on("data", (c) => (out += c));
  proc.stderr!.on("data", (c) => (out += c));
  const exited = new Promise<number | null>((r) => proc.on("exit", (code) => r(code)));
  for (let i = 0; i < 200 && !out.includes("POST /webhook"); i++) {
    if (proc.exitCode !== null) throw new Error(`instance ${name} exited: ${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  if (!out.includes("POST /webhook")) throw new Error(`instance ${name} did not start: ${out}`);
  return { proc, base: `http://127.0.0.1:${port}`, exited };
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
  await fake.start();
  const cfg = readFileSync("config/agent.yaml", "utf8").replace("path: data/consent-ledger.jsonl", `path: ${join(dir, "ledger.jsonl")}`);
  writeFileSync(configPath, cfg);
  fake.onRequest((body) => {
    const last = body.messages.at(-1)?.content ?? "";
    const tools = (body.tools ?? []).map((t) => t.function.name);
    if (tools.includes("start_sms_flow") && /SMS/.test(String(last))) return reply.tool("start_sms_flow", { info: "address" });
    if (tools.includes("record_consent") && /^Ja/.test(String(last))) return reply.tool("record_consent", { consented: true });
    return reply.text("Wie kann ich helfen?");
  });
  [A, B] = await Promise.all([startInstance("A"), startInstance("B")]);
}, 60_000);

afterAll(async () => {
  for (const i of [A, B]) if (i && i.proc.exitCode === null) i.proc.kill("SIGTERM");
  await Promise.all([A?.exited, B?.exited]);
  await fake.close();
  const redis = await connectRedis();
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length) await redis.del(...keys);
  redis.disconnect();
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
    A.proc.kill("SIGKILL");
    await A.exited;
    const yes = await post(B, ev.speak(id, "Ja, bitte."));
    expect(sms(yes)).toHaveLength(1);
    const ledger = readFileSync(join(dir, "ledger.jsonl"), "utf8");
    expect(ledger).toMatch(/"kind":"sms_sent".*"callId":"multi-kill"/);
  });
});
