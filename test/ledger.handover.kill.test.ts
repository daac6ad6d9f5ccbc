import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LedgerRecord } from "../src/ledger/ledger.js";
import { PostgresLedger } from "../src/ledger/postgresLedger.js";
import { readLedgerFile } from "../src/ledger/readLedger.js";
import { RedisCallStore } from "../src/store/redisCallStore.js";
import { FakeOpenAIServer, reply } from "./support/fakeOpenAI.js";
import { CALLER, ev } from "./support/events.js";
import { until } from "./support/deadline.js";
import { TEST_DATABASE_URL, dropTable, requirePostgres, uniqueTable } from "./support/postgres.js";
import { portAccepts, waitGone } from "./support/processes.js";
import { REDIS_URL, connectRedis, freePort, uniquePrefix } from "./support/redis.js";
import { MAIN, ROOT, baseEnv, buildDist, startProcess, stopAll, type RunningProcess } from "./support/serverProcess.js";

/**
 * Issue 18, point 2: the real server process (`node dist/src/main.js`, what `npm start` execs) is
 * killed between a send's approval and its handover, once with the file ledger and once with
 * PostgreSQL, and the ledger is read afterwards.
 *
 * The window: the turn that approves is slower than sipgate's second, so the caller hears the
 * holding line and the approved send waits in the call's outbox (Redis) until the call's next event
 * collects it. The instance is killed in between. Then the ledger holds the approval and no outcome
 * (nobody can know yet whether it will leave); a second instance takes the call's next event,
 * collects the send, and writes its handover, naming the approval.
 */

const fake = new FakeOpenAIServer();
const dir = mkdtempSync(join(tmpdir(), "handover-kill-"));
const HOLDING = "Einen Moment bitte.";
let redis: Redis;

interface Instance {
  proc: RunningProcess;
  pid: number;
  port: number;
  base: string;
}

/** The checked-in config with this test's ledger file and a short lease. */
function configFile(name: string, ledgerPath: string): string {
  const path = join(dir, `${name}.yaml`);
  const cfg = readFileSync(join(ROOT, "config/agent.yaml"), "utf8")
    .replace("path: data/consent-ledger.jsonl", `path: ${ledgerPath}`)
    // Two instances on one machine share this file; the do-not-text list (which needs a ledger every instance shares) is not what is tested.
    .replace("optOutList: true", "optOutList: false")
    .replace("maxBodyBytes: 65536", "maxBodyBytes: 65536\n  leaseMs: 1000");
  writeFileSync(path, cfg);
  return path;
}

async function startInstance(env: Record<string, string>): Promise<Instance> {
  const port = await freePort();
  const proc = startProcess(process.execPath, [MAIN], { env: baseEnv({ OPENAI_BASE_URL: fake.baseURL, PORT: String(port), HOST: "127.0.0.1", REDIS_URL, ...env }) });
  await proc.waitFor(/agent ready: POST \/webhook/);
  // The pid is the server itself, not a wrapper around it.
  expect(proc.serverPid()).toBe(proc.child.pid);
  return { proc, pid: proc.child.pid!, port, base: `http://127.0.0.1:${port}` };
}

type Action = { type: string; text?: string; phone_number?: string };

async function post(i: Instance, event: unknown): Promise<Action[]> {
  const r = await fetch(`${i.base}/webhook`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(event) });
  const text = await r.text();
  expect(r.status).toBeLessThan(300);
  return r.status === 200 ? ([] as Action[]).concat(JSON.parse(text)) : [];
}

/** SIGKILL, and proof the instance is gone: it exited by the signal, no such process, nothing on its port. */
async function kill(i: Instance): Promise<void> {
  i.proc.child.kill("SIGKILL");
  expect((await i.proc.exited).signal).toBe("SIGKILL");
  expect(await waitGone(i.pid)).toBe(true);
  expect(() => process.kill(i.pid, 0)).toThrow(expect.objectContaining({ code: "ESRCH" }));
  expect(await portAccepts(i.port)).toBe(false);
}

/**
 * One call to its approved send on instance A; A is killed while the send waits in the outbox;
 * returns what the ledger says then, and after instance B collected the send.
 */
async function killBetweenApprovalAndHandover(id: string, env: Record<string, string>, ledger: () => Promise<LedgerRecord[]>) {
  const prefix = env.REDIS_PREFIX!;
  const store = new RedisCallStore(redis, { prefix });
  const ofCall = async () => (await ledger()).filter((r) => r.callId === id);
  const A = await startInstance(env);
  await post(A, ev.start(id)); // 1
  const question = await post(A, ev.speak(id, "Schicken Sie mir die Adresse per SMS.")); // 2
  expect(question.at(-1)?.text).toMatch(/^Darf ich Ihnen die Informationen per SMS/);
  // The yes's model request is held: A answers within the second with the holding line.
  const gate = fake.block();
  // Not a listed clear answer (prompts/de-DE/sms/consent_answers.md), so the model decides it, and its request can be held.
  const yes = post(A, ev.speak(id, "Ja, das passt mir gut.")); // 3
  await gate.arrived;
  expect((await yes).map((a) => a.text)).toEqual([HOLDING]);
  gate.release();
  // The turn finishes on A: the approval is durable, the send committed to the outbox, waiting.
  await until(async () => (await ofCall()).some((r) => r.kind === "sms_approved"), "the approval in the ledger", { tries: 1000, everyMs: 10 });
  await until(async () => {
    const p = await store.progress(id);
    return p.processed >= 3 && p.ready.http > 0;
  }, "the approved send waiting in the outbox", { tries: 1000, everyMs: 10 });
  await kill(A);
  const afterKill = await ofCall();

  // sipgate goes on with the call on B: the holding line's follow-up collects the waiting send.
  const B = await startInstance(env);
  const next = await post(B, ev.speechEnded(id));
  expect(next.filter((a) => a.type === "send_sms")).toEqual([expect.objectContaining({ phone_number: CALLER })]);
  expect(next.filter((a) => a.type === "speak").map((a) => a.text).join(" ")).toMatch(/abgeschickt/);
  await until(async () => (await ofCall()).some((r) => r.kind === "sms_handed_over"), "the handover in the ledger", { tries: 1000, everyMs: 10 });
  await post(B, ev.end(id));
  B.proc.child.kill("SIGTERM");
  expect((await B.proc.exited).code).toBe(0);
  return { afterKill, afterHandover: await ofCall() };
}

beforeAll(async () => {
  redis = await connectRedis(); // fails early and clearly without Redis
  buildDist();
  await fake.start();
  fake.onRequest((body) => {
    const last = String(body.messages.at(-1)?.content ?? "");
    const tools = (body.tools ?? []).map((t) => t.function.name);
    if (tools.includes("start_sms_flow") && /SMS/.test(last)) return reply.tool("start_sms_flow", { info: "address" });
    if (tools.includes("record_consent") && /^Ja/.test(last)) return reply.tool("record_consent", { consented: true });
    return reply.text("Wie kann ich helfen?");
  });
}, 120_000);

afterAll(async () => {
  await stopAll();
  await fake.close();
  redis?.disconnect();
});

describe("the server killed between a send's approval and its handover", () => {
  it("file ledger: the approval without an outcome, then the handover the second instance wrote, naming it", async () => {
    const ledgerPath = join(dir, "file", "ledger.jsonl");
    const env = { CONFIG: configFile("file", ledgerPath), REDIS_PREFIX: uniquePrefix() };
    const read = async () => (await readLedgerFile(ledgerPath)).records;
    const id = "kill-handover-file";
    const { afterKill, afterHandover } = await killBetweenApprovalAndHandover(id, env, read);

    // Killed with the send still waiting: approved, and nothing more (an outcome nobody knows yet).
    expect(afterKill.map((r) => r.kind)).toEqual(["consent_asked", "consent_given", "sms_approved"]);
    const approval = afterKill[2]!;
    expect(approval).toMatchObject({ id: `${id}:e3:sms_approved:0`, ref: `${id}:e3:consent_given:0`, number: CALLER, reply: "Ja, das passt mir gut." });
    // B collected it: its handover names the approval A wrote.
    expect(afterHandover.map((r) => r.kind)).toEqual(["consent_asked", "consent_given", "sms_approved", "sms_handed_over"]);
    expect(afterHandover[3]).toMatchObject({ id: `${approval.id}:sms_handed_over`, ref: approval.id, number: CALLER, outcome: "handed_over" });
    const contents = await readLedgerFile(ledgerPath);
    expect(contents.problems).toEqual([]);
    expect(contents.tornTail).toBeUndefined();
  }, 120_000);

  describe("PostgreSQL ledger (DATABASE_URL)", () => {
    const table = uniqueTable("handover_kill");
    afterAll(async () => dropTable(table));

    it("the committed approval row without an outcome, then the handover row the second instance wrote", async () => {
      await requirePostgres();
      // ledger.path names a folder that is never created: with DATABASE_URL the file is not used.
      const env = { CONFIG: configFile("pg", join(dir, "unused", "l.jsonl")), REDIS_PREFIX: uniquePrefix(), DATABASE_URL: TEST_DATABASE_URL, LEDGER_TABLE: table };
      const read = async () => {
        const l = new PostgresLedger({ connectionString: TEST_DATABASE_URL, table });
        try {
          return await l.query();
        } finally {
          await l.close();
        }
      };
      const { afterKill, afterHandover } = await killBetweenApprovalAndHandover("kill-handover-pg", env, read);
      expect(afterKill.map((r) => r.kind)).toEqual(["consent_asked", "consent_given", "sms_approved"]);
      expect(afterKill[2]).toMatchObject({ number: CALLER, reply: "Ja, das passt mir gut.", message: expect.stringMatching(/^Praxis Dr\. Muster: Adresse/) });
      expect(afterHandover.map((r) => r.kind)).toEqual(["consent_asked", "consent_given", "sms_approved", "sms_handed_over"]);
      expect(afterHandover[3]).toMatchObject({ number: CALLER, outcome: "handed_over" });
      // The table keeps what it has columns for; where it keeps ids, the handover names the approval.
      if (afterHandover[2]!.id !== undefined) expect(afterHandover[3]!.ref).toBe(afterHandover[2]!.id);
    }, 120_000);
  });
});
