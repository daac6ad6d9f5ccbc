import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FileLedger } from "../src/ledger/fileLedger.js";
import type { LedgerRecord, LedgerRecordInput } from "../src/ledger/ledger.js";
import { PostgresLedger } from "../src/ledger/postgresLedger.js";
import { readLedgerFile } from "../src/ledger/readLedger.js";
import { verifyRecords } from "../src/ledger/verify.js";
import { FakeOpenAIServer, reply } from "./support/fakeOpenAI.js";
import { ev } from "./support/events.js";
import { TEST_DATABASE_URL, dropTable, uniqueTable } from "./support/postgres.js";
import { freePort } from "./support/processes.js";
import { MAIN, ROOT, baseEnv, buildDist, startProcess, stopAll } from "./support/serverProcess.js";

/**
 * Issue 18 point 4: a purge while the service writes loses nothing. A real server process
 * (`node dist/src/main.js`, what `npm start` runs) takes SMS calls through its webhook while the
 * `npm run ledger -- purge` CLI removes the ledger's old records, several times over. Afterwards
 * every call has its evidence, the old records are gone and the chain verifies.
 */

const TSX = resolve("node_modules", ".bin", "tsx");
const fake = new FakeOpenAIServer();
const CALLS = 16;

beforeAll(async () => {
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
});

/** A caller of its own per call: the SMS limits per number and number range are not what is tested here. */
const callerOf = (i: number) => `49151${String(10_000_000 + i * 1000)}`;

function oldRecords(): LedgerRecordInput[] {
  return [0, 1, 2].flatMap((i) => [
    { id: `old${i}:e2:consent_asked:0`, kind: "consent_asked" as const, callId: `old${i}`, at: `2019-0${i + 1}-01T09:00:00.000Z`, number: callerOf(900 + i), question: "Darf ich?" },
    { id: `old${i}:e3:consent_declined:0`, kind: "consent_declined" as const, callId: `old${i}`, at: `2019-0${i + 1}-01T09:00:05.000Z`, number: callerOf(900 + i), reply: "Nein." },
  ]);
}

function cli(args: string[], env: Record<string, string>): Promise<{ code: number | null; out: string }> {
  return new Promise((done, reject) => {
    const child = spawn(TSX, ["src/cli/ledger.ts", ...args], { env: baseEnv(env), cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    child.on("error", reject);
    child.on("close", (code) => done({ code, out }));
  });
}

async function runCalls(base: string): Promise<void> {
  const post = async (event: unknown) => {
    const r = await fetch(`${base}/webhook`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(event) });
    const text = await r.text();
    return r.status === 200 ? ([] as Array<{ type: string; text?: string }>).concat(JSON.parse(text)) : [];
  };
  // A loaded machine answers with a holding line first; the caller answers what it heard, not before.
  const until = async (id: string, first: unknown, heard: (a: { type: string; text?: string }) => boolean) => {
    if ((await post(first)).some(heard)) return true;
    for (let k = 0; k < 20; k++) if ((await post(ev.speechEnded(id))).some(heard)) return true;
    return false;
  };
  await Promise.all(
    Array.from({ length: CALLS }, async (_, i) => {
      const id = `live-${i}`;
      const o = { from: callerOf(i) };
      await post(ev.start(id, o));
      expect(await until(id, ev.speak(id, "Schicken Sie mir die Adresse per SMS.", false, o), (a) => /^Darf ich/.test(a.text ?? "")), id).toBe(true);
      expect(await until(id, ev.speak(id, "Ja, gerne.", false, o), (a) => a.type === "send_sms"), id).toBe(true);
      await post(ev.end(id));
    }),
  );
}

/** What every call must have left, derived from the calls driven (not from the ledger's own view). */
function checkEvidence(records: LedgerRecord[]): void {
  expect(records.some((r) => r.callId.startsWith("old"))).toBe(false);
  expect(records[0]!.kind).toBe("anchor");
  for (let i = 0; i < CALLS; i++) {
    const kinds = records.filter((r) => r.callId === `live-${i}`).map((r) => r.kind);
    expect(kinds, `live-${i}`).toEqual(expect.arrayContaining(["consent_asked", "consent_given"]));
    expect(kinds.some((k) => k === "sms_approved" || k === "sms_sent"), `live-${i}: ${kinds.join(",")}`).toBe(true);
  }
  const report = verifyRecords(records);
  expect(report.problems).toEqual([]);
}

async function purgeDuring(calls: Promise<void>, env: Record<string, string>): Promise<number> {
  let runs = 0;
  let done = false;
  void calls.finally(() => (done = true)).catch(() => undefined);
  while (!done || runs < 2) {
    const r = await cli(["purge"], env);
    expect(r.code, r.out).toBe(0);
    runs++;
  }
  await calls;
  return runs;
}

describe("a purge while the service writes loses nothing", () => {
  it("file ledger", async () => {
    const dir = mkdtempSync(join(tmpdir(), "live-purge-"));
    const ledgerPath = join(dir, "ledger.jsonl");
    const seed = new FileLedger(ledgerPath, { notice: () => undefined });
    for (const r of oldRecords()) await seed.append(r);
    await seed.close();
    const configPath = join(dir, "agent.yaml");
    writeFileSync(configPath, readFileSync(join(ROOT, "config/agent.yaml"), "utf8").replace("path: data/consent-ledger.jsonl", `path: ${ledgerPath}`));
    const port = await freePort();
    const server = startProcess(process.execPath, [MAIN], { env: baseEnv({ OPENAI_BASE_URL: fake.baseURL, PORT: String(port), HOST: "127.0.0.1", CONFIG: configPath }) });
    await server.waitFor(/agent ready: POST \/webhook/);
    const runs = await purgeDuring(runCalls(`http://127.0.0.1:${port}`), { CONFIG: configPath });
    expect(runs).toBeGreaterThanOrEqual(2);
    server.child.kill("SIGTERM");
    expect((await server.exited).code).toBe(0);
    const contents = await readLedgerFile(ledgerPath);
    expect(contents.problems).toEqual([]);
    checkEvidence(contents.records);
  }, 180_000);

  it("PostgreSQL", async () => {
    const table = uniqueTable("livepurge");
    const seed = new PostgresLedger({ connectionString: TEST_DATABASE_URL, table });
    try {
      for (const r of oldRecords()) await seed.append(r);
      const dir = mkdtempSync(join(tmpdir(), "live-purge-pg-"));
      const configPath = join(dir, "agent.yaml");
      writeFileSync(configPath, readFileSync(join(ROOT, "config/agent.yaml"), "utf8"));
      const db = { DATABASE_URL: TEST_DATABASE_URL, LEDGER_TABLE: table, CONFIG: configPath };
      const port = await freePort();
      const server = startProcess(process.execPath, [MAIN], { env: baseEnv({ OPENAI_BASE_URL: fake.baseURL, PORT: String(port), HOST: "127.0.0.1", ...db }) });
      await server.waitFor(/agent ready: POST \/webhook/);
      await purgeDuring(runCalls(`http://127.0.0.1:${port}`), db);
      server.child.kill("SIGTERM");
      expect((await server.exited).code).toBe(0);
      const records: LedgerRecord[] = [];
      await seed.scan((r) => records.push(r));
      checkEvidence(records);
    } finally {
      await seed.close();
      await dropTable(table);
      await dropTable(`${table}_head`);
    }
  }, 180_000);
});
