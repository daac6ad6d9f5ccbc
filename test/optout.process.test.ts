import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readLedgerFile } from "../src/ledger/readLedger.js";
import { verifyRecords } from "../src/ledger/verify.js";
import { ev } from "./support/events.js";
import { FakeOpenAIServer, reply, type ChatBody } from "./support/fakeOpenAI.js";
import { freePort, isRunning, waitGone } from "./support/processes.js";
import { TEST_DATABASE_URL, dropTable, requirePostgres, uniqueTable } from "./support/postgres.js";
import { REDIS_URL } from "./support/redis.js";
import { MAIN, ROOT, baseEnv, buildDist, startProcess, stopAll, type RunningProcess } from "./support/serverProcess.js";

/**
 * The do-not-text list with the service as an operator runs it (`node dist/src/main.js`, what
 * `npm start` execs): start-up is refused when instances may share calls but each would keep its
 * own list; the operator's CLI changes the list of a running server; the list outlives the server
 * process being killed.
 */

const dir = mkdtempSync(join(tmpdir(), "optout-process-"));
const fake = new FakeOpenAIServer();
const TSX = join(ROOT, "node_modules", ".bin", "tsx");
const tables: string[] = [];

/** config/agent.yaml with its ledger in the temp folder; `edit` changes the YAML text. */
function configFile(name: string, edit: (yaml: string) => string = (y) => y): { config: string; ledger: string } {
  const ledger = join(dir, `${name}.ledger.jsonl`);
  const config = join(dir, `${name}.yaml`);
  writeFileSync(config, edit(readFileSync(join(ROOT, "config/agent.yaml"), "utf8").replace("path: data/consent-ledger.jsonl", `path: ${ledger}`)));
  return { config, ledger };
}

const server = (env: Record<string, string>): RunningProcess => startProcess(process.execPath, [MAIN], { env: baseEnv({ OPENAI_BASE_URL: fake.baseURL, HOST: "127.0.0.1", ...env }) });

async function post(port: number, event: unknown): Promise<Array<{ type: string; text?: string; phone_number?: string }>> {
  const r = await fetch(`http://127.0.0.1:${port}/webhook`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(event) });
  const text = await r.text();
  return r.status === 200 ? [].concat(JSON.parse(text)) : [];
}

/** One call asking for the SMS and saying yes: the send_sms actions it got, and what it heard last. */
async function askAndSayYes(port: number, id: string): Promise<{ sends: number; said: string[] }> {
  await post(port, ev.start(id));
  await post(port, ev.speak(id, "Können Sie mir die Adresse per SMS schicken?"));
  const yes = await post(port, ev.speak(id, "Ja, gerne."));
  await post(port, ev.end(id));
  return { sends: yes.filter((a) => a.type === "send_sms").length, said: yes.filter((a) => a.type === "speak").map((a) => a.text ?? "") };
}

beforeAll(async () => {
  buildDist();
  await fake.start();
  fake.onRequest((body: ChatBody) => {
    const tools = (body.tools ?? []).map((t) => t.function.name);
    const said = String([...body.messages].reverse().find((m) => m.role === "user")?.content ?? "");
    if (tools.includes("start_sms_flow") && /SMS/.test(said)) return reply.tool("start_sms_flow", { info: "address" });
    if (tools.includes("record_consent") && /^Ja/.test(said)) return reply.tool("record_consent", { consented: true });
    return reply.text("Wie kann ich helfen?");
  });
}, 60_000);

afterAll(async () => {
  await stopAll();
  await fake.close();
  for (const t of tables) await dropTable(t);
});

describe("start-up with several instances", () => {
  it("REDIS_URL and a per-instance file ledger while the list is on: refused in one line, exit 1, before anything is written", async () => {
    const { config, ledger } = configFile("refused");
    const p = server({ PORT: String(await freePort()), REDIS_URL, CONFIG: config });
    expect((await p.exited).code).toBe(1);
    expect(p.out()).toBe("");
    expect(p.err().trim().split("\n")).toEqual([
      `aiflow-sms-agent: ledger.optOutList: REDIS_URL is set, so several instances may share calls, but the consent ledger is the file ${ledger} of each instance; the do-not-text list needs a ledger every instance shares: set DATABASE_URL, or set ledger.optOutList: false`,
    ]);
    expect(existsSync(ledger)).toBe(false);
  }, 30_000);

  it("with ledger.optOutList: false, or with DATABASE_URL (PostgreSQL), the same instance starts", async () => {
    const off = configFile("list-off", (y) => y.replace("optOutList: true", "optOutList: false"));
    const a = server({ PORT: String(await freePort()), REDIS_URL, CONFIG: off.config });
    await a.waitFor(/agent ready: POST \/webhook/);
    a.child.kill("SIGTERM");
    expect((await a.exited).code).toBe(0);

    await requirePostgres();
    const table = uniqueTable("optstart");
    tables.push(table);
    const shared = configFile("shared");
    const b = server({ PORT: String(await freePort()), REDIS_URL, CONFIG: shared.config, DATABASE_URL: TEST_DATABASE_URL, LEDGER_TABLE: table });
    await b.waitFor(/agent ready: POST \/webhook/);
    expect(b.out()).toContain(`"ledger":"PostgreSQL table ${table}"`);
    b.child.kill("SIGTERM");
    expect((await b.exited).code).toBe(0);
  }, 60_000);
});

describe("the real server process and the operator's CLI", () => {
  it("`optout add` while the server runs refuses its next send; killed with SIGKILL and started again, the list is still there", async () => {
    const { config, ledger } = configFile("running");
    const port = await freePort();
    const first = server({ PORT: String(port), CONFIG: config });
    await first.waitFor(/agent ready: POST \/webhook/);
    expect((await askAndSayYes(port, "proc-before")).sends).toBe(1);

    const add = spawnSync(TSX, ["src/cli/ledger.ts", "optout", "add", "+49 151 12345678"], { cwd: ROOT, encoding: "utf8", env: baseEnv({ CONFIG: config }) });
    expect([add.status, add.stdout, add.stderr]).toEqual([0, "+49 1511 2345678 is on the do-not-text list\n", ""]);
    const refused = await askAndSayYes(port, "proc-after-add");
    expect(refused.sends).toBe(0);
    expect(refused.said).toEqual([expect.stringMatching(/^An diese Nummer schicken wir keine SMS: Sie wurde auf Wunsch für unsere SMS gesperrt\./)]);

    // The instance dies without a goodbye; the list is on disk, not in its memory.
    const pid = first.child.pid!;
    first.child.kill("SIGKILL");
    await first.exited;
    expect(await waitGone(pid)).toBe(true);
    expect(isRunning(pid)).toBe(false);

    const second = server({ PORT: String(port), CONFIG: config });
    await second.waitFor(/agent ready: POST \/webhook/);
    expect((await askAndSayYes(port, "proc-after-restart")).sends).toBe(0);
    second.child.kill("SIGTERM");
    expect((await second.exited).code).toBe(0);

    const { records, problems } = await readLedgerFile(ledger);
    expect(problems).toEqual([]);
    expect(records.filter((r) => r.kind === "opt_out_added")).toEqual([expect.objectContaining({ number: "4915112345678", outcome: "operator", callId: "operator" })]);
    expect(verifyRecords(records).problems).toEqual([]);
  }, 90_000);
});
