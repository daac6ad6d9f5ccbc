import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pino } from "pino";
import type { TurnRecord } from "../src/core/turnRecord.js";
import { ManualClock } from "../src/engine/clock.js";
import { FileLedger } from "../src/ledger/fileLedger.js";
import { MemoryLedger } from "../src/ledger/memoryLedger.js";
import { ScriptedModel } from "../src/llm/scriptedModel.js";
import { createService } from "../src/service.js";
import type { LedgerRecord } from "../src/ledger/ledger.js";
import { optOutPathOf } from "../src/ledger/optOutFile.js";
import { PostgresLedger } from "../src/ledger/postgresLedger.js";
import { readLedgerFile } from "../src/ledger/readLedger.js";
import { verifyRecords } from "../src/ledger/verify.js";
import { reply, type ChatBody, type FakeOpenAIServer } from "./support/fakeOpenAI.js";
import { CALLER, ev } from "./support/events.js";
import { callbackTestConfig, smsActions, spoken, startTestService, testConfig, type TestService } from "./support/harness.js";
import { atConsentQuestion, ledgerKinds, postPending, slowTurn } from "./support/deadline.js";
import { TEST_DATABASE_URL, dropTable, requirePostgres, uniqueTable } from "./support/postgres.js";

/**
 * The do-not-text list end to end: a caller's "Schicken Sie mir nie wieder eine SMS" reaches
 * opt_out_sms through the webhook and a model over real HTTP (the local fake OpenAI server),
 * the number goes on the list with its chained record, and in later calls the gate refuses a send
 * to it even after a clear yes; the operator's CLI (a process of its own) takes it off and puts it
 * back while the service runs; the list outlives a restart. Against the real file ledger and a
 * real PostgreSQL.
 */

const TSX = "node_modules/.bin/tsx";
const OPTED_OUT_LINE = /^Verstanden: An die Nummer 0 1 5 1 1, 2 3 4, 5 6, 7 8 schicken wir keine SMS mehr/;
const REFUSED_LINE = /^An diese Nummer schicken wir keine SMS: Sie wurde auf Wunsch für unsere SMS gesperrt\./;

function lastUserText(body: ChatBody): string {
  return String([...body.messages].reverse().find((m) => m.role === "user")?.content ?? "");
}

/** A model that follows the step prompts for the words these tests say. */
function followPrompts(fake: FakeOpenAIServer): void {
  fake.onRequest((body) => {
    const tools = (body.tools ?? []).map((t) => t.function.name);
    const said = lastUserText(body);
    if (body.messages.at(-1)?.role === "tool") return reply.text("Kann ich sonst noch etwas für Sie tun?");
    if (tools.includes("opt_out_sms") && /nie wieder/i.test(said)) return reply.tool("opt_out_sms", {});
    if (tools.includes("start_sms_flow") && /SMS/.test(said)) return reply.tool("start_sms_flow", { info: "address" });
    if (tools.includes("record_consent") && /^Ja/.test(said)) return reply.tool("record_consent", { consented: true });
    return reply.text("Wie kann ich helfen?");
  });
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `npm run ledger -- …` as its own process, with only the environment given. */
function cli(args: string[], env: Record<string, string>): Promise<Run> {
  const base = { ...process.env };
  delete base.DATABASE_URL;
  delete base.LEDGER_TABLE;
  delete base.CONFIG;
  return new Promise((resolve, reject) => {
    const child = spawn(TSX, ["src/cli/ledger.ts", ...args], { env: { ...base, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** One call that asks for the SMS and says yes: what the caller got. */
async function askAndSayYes(svc: TestService, id: string): Promise<{ sends: ReturnType<typeof smsActions>; said: string[] }> {
  await svc.post(ev.start(id));
  const q = await svc.post(ev.speak(id, "Können Sie mir die Adresse per SMS schicken?"));
  expect(spoken(q.actions).at(-1)).toMatch(/^Darf ich Ihnen die Informationen per SMS an die Nummer 0 1 5 1 1, 2 3 4, 5 6, 7 8 schicken\?$/);
  const yes = await svc.post(ev.speak(id, "Ja, gerne."));
  await svc.post(ev.end(id));
  return { sends: smsActions(yes.actions), said: spoken(yes.actions) };
}

interface Backend {
  name: string;
  prepare(): Promise<{ openLedger: () => Promise<FileLedger | PostgresLedger>; cliEnv: Record<string, string>; records: () => Promise<LedgerRecord[]>; ledgerPath: string; cleanup: () => Promise<void> }>;
}

/** A copy of config/agent.yaml whose ledger file is `ledgerPath`; the CLI reads it with --config. */
function configFile(dir: string, ledgerPath: string): string {
  const raw = parseYaml(readFileSync("config/agent.yaml", "utf8")) as Record<string, unknown>;
  raw.ledger = { ...(raw.ledger as object), path: ledgerPath };
  const path = join(dir, "agent.yaml");
  writeFileSync(path, stringifyYaml(raw));
  return path;
}

const BACKENDS: Backend[] = [
  {
    name: "file ledger",
    async prepare() {
      const dir = mkdtempSync(join(tmpdir(), "optout-call-"));
      const ledgerPath = join(dir, "data", "consent-ledger.jsonl");
      const config = configFile(dir, ledgerPath);
      return {
        ledgerPath,
        openLedger: async () => {
          const l = new FileLedger(ledgerPath, { notice: () => undefined });
          await l.ready();
          return l;
        },
        cliEnv: { CONFIG: config },
        records: async () => (await readLedgerFile(ledgerPath)).records,
        cleanup: async () => undefined,
      };
    },
  },
  {
    name: "PostgreSQL ledger",
    async prepare() {
      await requirePostgres();
      const dir = mkdtempSync(join(tmpdir(), "optout-call-pg-"));
      // With DATABASE_URL the file is never used: a folder that is never created.
      const ledgerPath = join(dir, "unused", "consent-ledger.jsonl");
      const table = uniqueTable("optcall");
      const reader = new PostgresLedger({ connectionString: TEST_DATABASE_URL, table });
      return {
        ledgerPath,
        openLedger: async () => {
          const l = new PostgresLedger({ connectionString: TEST_DATABASE_URL, table });
          await l.ready();
          return l;
        },
        cliEnv: { CONFIG: configFile(dir, ledgerPath), DATABASE_URL: TEST_DATABASE_URL, LEDGER_TABLE: table },
        records: () => reader.query(),
        cleanup: async () => {
          await reader.close();
          await dropTable(table);
        },
      };
    },
  },
];

describe.each(BACKENDS)("the do-not-text list through the webhook ($name)", (backend) => {
  let env: Awaited<ReturnType<Backend["prepare"]>>;
  let svc: TestService;
  const turns: TurnRecord[] = [];

  async function start(): Promise<TestService> {
    const s = await startTestService({ config: testConfig({ ledger: { path: env.ledgerPath } }), ledger: await env.openLedger(), onTurn: (t) => turns.push(t) });
    followPrompts(s.fake);
    return s;
  }

  beforeAll(async () => {
    env = await backend.prepare();
    svc = await start();
  }, 30_000);
  afterAll(async () => {
    await svc?.close();
    await env?.cleanup();
  });

  it("'Schicken Sie mir nie wieder eine SMS': opt_out_sms puts the caller's number on the list, with its record; the caller hears it, number read back", async () => {
    const id = `${backend.name}-never-again`;
    await svc.post(ev.start(id));
    svc.fake.requests.length = 0;
    const r = await svc.post(ev.speak(id, "Schicken Sie mir nie wieder eine SMS."));
    expect(svc.fake.toolsOffered(0)).toContain("opt_out_sms");
    expect(spoken(r.actions)).toEqual([expect.stringMatching(OPTED_OUT_LINE)]);
    expect(smsActions(r.actions)).toEqual([]);
    const mine = (await env.records()).filter((x) => x.callId === id);
    expect(mine).toEqual([
      expect.objectContaining({ kind: "opt_out_added", number: CALLER, outcome: "caller", detail: `the caller in call ${id}, for their own number`, reply: "Schicken Sie mir nie wieder eine SMS." }),
    ]);
    await svc.post(ev.end(id));
  });

  it("in a later call the gate refuses the send to that number, even after a clear yes to the question naming it", async () => {
    const id = `${backend.name}-later-call`;
    const { sends, said } = await askAndSayYes(svc, id);
    expect(sends).toEqual([]);
    expect(said).toEqual([expect.stringMatching(REFUSED_LINE)]);
    expect(turns.flatMap((t) => t.guardDecisions).filter((d) => d.subject === "send_sms")).toContainEqual(expect.objectContaining({ allowed: false, reason: "recipient_opted_out" }));
    // The consent was recorded; nothing says an SMS was approved.
    const kinds = (await env.records()).filter((x) => x.callId === id).map((x) => x.kind);
    expect(kinds).toContain("consent_given");
    expect(kinds.filter((k) => k.startsWith("sms_"))).toEqual([]);
  });

  it("`optout remove` from the CLI while the service runs: the next send goes out; `optout add` (AI Flow format): the next one is refused again", async () => {
    const removed = await cli(["optout", "remove", "0151 12345678"], env.cliEnv);
    expect(removed.stderr).toBe("");
    expect(removed.stdout).toBe("+49 1511 2345678 is off the do-not-text list\n");
    expect(removed.code).toBe(0);
    const allowed = await askAndSayYes(svc, `${backend.name}-after-remove`);
    expect(allowed.sends).toEqual([expect.objectContaining({ phone_number: CALLER })]);

    const added = await cli(["optout", "add", CALLER], env.cliEnv);
    expect([added.code, added.stdout, added.stderr]).toEqual([0, "+49 1511 2345678 is on the do-not-text list\n", ""]);
    const refused = await askAndSayYes(svc, `${backend.name}-after-add`);
    expect(refused.sends).toEqual([]);
    expect(refused.said).toEqual([expect.stringMatching(REFUSED_LINE)]);

    const list = await cli(["optout", "list"], env.cliEnv);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(new RegExp(`operator\\s+${CALLER}\\s+record operator:`));
    expect(list.stdout).toMatch(/^1 number\(s\) on the do-not-text list$/m);
  });

  it("the list survives a restart, and every change is a record of the one verified chain", async () => {
    await svc.close();
    svc = await start();
    const after = await askAndSayYes(svc, `${backend.name}-after-restart`);
    expect(after.sends).toEqual([]);
    expect(after.said).toEqual([expect.stringMatching(REFUSED_LINE)]);

    const records = await env.records();
    expect(records.filter((r) => r.kind.startsWith("opt_out_")).map((r) => [r.kind, r.outcome])).toEqual([
      ["opt_out_added", "caller"],
      ["opt_out_removed", "operator"],
      ["opt_out_added", "operator"],
    ]);
    const report = verifyRecords(records);
    expect(report.problems).toEqual([]);
    expect(report.ok).toBe(true);
  });

  it("the CLI says what is wrong, with the exit codes of the other subcommands", async () => {
    const bad = await cli(["optout", "add", "12"], env.cliEnv);
    expect([bad.code, bad.stderr]).toEqual([2, 'ledger: "12" is not a phone number: give it as +49 151 …, 0151 … or in AI Flow format 49151…\n']);
    const none = await cli(["optout", "remove"], env.cliEnv);
    expect([none.code, none.stderr]).toEqual([2, "ledger: optout remove needs a phone number\n"]);
    const what = await cli(["optout", "erase", CALLER], env.cliEnv);
    expect([what.code, what.stderr]).toEqual([2, 'ledger: unknown optout action "erase": use add, remove or list\n']);
    const notListed = await cli(["optout", "remove", "+49 170 1234567"], env.cliEnv);
    expect([notListed.code, notListed.stdout]).toEqual([0, "+49 170 1234567 was not on the do-not-text list: nothing changed\n"]);
  });
});

describe("opt_out_sms in the call (memory ledger)", () => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await startTestService({ config: testConfig({ server: { leaseMs: 300 } }) });
  });
  afterAll(async () => svc.close());

  it("words that overtook a yes's send: the pending send is withdrawn and never leaves, the number goes on the list", async () => {
    const id = "optout-overtakes-send";
    await atConsentQuestion(svc, id);
    svc.fake.reset();
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }), reply.tool("opt_out_sms", {}));
    const gate = await slowTurn(svc, ev.speak(id, "Ja, gerne."));
    const { answer } = await postPending(svc, ev.speak(id, "Nein, warten Sie, schicken Sie mir nie wieder eine SMS."));
    // The overtaking words are judged in the consent step, which offers opt_out_sms too.
    gate.release();
    const r = await answer;
    const rest = await svc.post(ev.speechEnded(id));
    const all = [...r.actions, ...rest.actions];
    expect(smsActions(all)).toEqual([]);
    expect(spoken(all)).toContainEqual(expect.stringMatching(OPTED_OUT_LINE));
    expect(svc.fake.toolsOffered(1)).toContain("opt_out_sms");
    const state = (await svc.store.get(id))!;
    expect(state.sms.sent).toEqual([]);
    expect(state.sms.declined).toBe(true);
    expect(state.sms.result?.value).toEqual({ status: "declined", number: CALLER });
    // Out of the SMS task, back where the call was.
    expect(state.step).toBe("main");
    expect(ledgerKinds(svc, id)).toEqual(expect.arrayContaining(["sms_not_sent", "opt_out_added"]));
    expect(await svc.memoryLedger.optedOut(CALLER)).toBe(true);
  });

  it("an anonymous caller: the tool says it needs a number and the model asks; the number the caller names goes on the list", async () => {
    const id = "optout-anonymous";
    const anon = { from: "anonymous" };
    svc.fake.reset();
    await svc.post(ev.start(id, anon));
    svc.fake.enqueue(reply.tool("opt_out_sms", {}), reply.text("Für welche Nummer möchten Sie keine SMS mehr bekommen?"));
    const ask = await svc.post(ev.speak(id, "Ich will nie wieder eine SMS von Ihnen.", false, anon));
    expect(spoken(ask.actions)).toEqual(["Für welche Nummer möchten Sie keine SMS mehr bekommen?"]);
    const toolResult = svc.fake.requests[1]!.messages.at(-1)!;
    expect(toolResult).toMatchObject({ role: "tool", content: expect.stringMatching(/^The caller's own number is unknown \(anonymous call\)/) });
    // The offer ends at once, also before the number is known.
    expect((await svc.store.get(id))!.sms.declined).toBe(true);

    svc.fake.enqueue(reply.tool("opt_out_sms", { number: "null eins sieben null, eins zwei drei, vier fünf sechs sieben" }));
    const named = await svc.post(ev.speak(id, "Null eins sieben null, eins zwei drei, vier fünf sechs sieben.", false, anon));
    expect(spoken(named.actions)).toEqual([expect.stringMatching(/^Verstanden: An die Nummer 0 1 7 0, 1 2 3, 4 5, 6 7 schicken wir keine SMS mehr/)]);
    expect(svc.memoryLedger.records.filter((r) => r.callId === id)).toEqual([
      expect.objectContaining({ kind: "opt_out_added", number: "491701234567", detail: `the caller in call ${id}, for a number they named` }),
    ]);
  });

  it("a number the parser cannot read: the model is told to ask again, nothing is listed", async () => {
    const id = "optout-unclear";
    svc.fake.reset();
    await svc.post(ev.start(id));
    svc.fake.enqueue(reply.tool("opt_out_sms", { number: "die von meiner Frau" }), reply.text("Wie lautet die Nummer, Ziffer für Ziffer?"));
    const r = await svc.post(ev.speak(id, "Und an die Nummer meiner Frau auch nie wieder.", false));
    expect(spoken(r.actions)).toEqual(["Wie lautet die Nummer, Ziffer für Ziffer?"]);
    expect(svc.fake.requests[1]!.messages.at(-1)!.content).toMatch(/^"die von meiner Frau" is not a phone number/);
    expect(svc.memoryLedger.records.filter((x) => x.callId === id)).toEqual([]);
  });

  it("the offline demo's scripted model calls it too: 'Schicken Sie mir nie wieder eine SMS'", async () => {
    const ledger = new MemoryLedger();
    const demo = createService({ config: testConfig(), model: new ScriptedModel(), ledger, logger: pino({ level: "silent" }), clock: new ManualClock() });
    try {
      const post = async (event: unknown) => {
        const res = await demo.app.inject({ method: "POST", url: "/webhook", headers: { "content-type": "application/json" }, payload: JSON.stringify(event) });
        return res.body ? ([] as Array<{ type: string; text?: string }>).concat(JSON.parse(res.body)) : [];
      };
      await post(ev.start("optout-demo"));
      const r = await post(ev.speak("optout-demo", "Schicken Sie mir nie wieder eine SMS."));
      expect(r.filter((a) => a.type === "speak").map((a) => a.text)).toEqual([expect.stringMatching(OPTED_OUT_LINE)]);
      expect(await ledger.optedOut(CALLER)).toBe(true);
    } finally {
      await demo.close();
    }
  });

  it("the callback agent offers it in its own steps too: the SMS offer after the details never comes", async () => {
    const cb = await startTestService({ config: callbackTestConfig("http://127.0.0.1:9/unused") });
    try {
      const id = "optout-callback";
      await cb.post(ev.start(id));
      cb.fake.enqueue(reply.tool("opt_out_sms", {}));
      const r = await cb.post(ev.speak(id, "Vorab: Schreiben Sie mir nie wieder eine SMS."));
      expect(cb.fake.toolsOffered(0)).toEqual(["note_callback_detail", "confirm_callback_detail", "end_call", "opt_out_sms"]);
      expect(spoken(r.actions)).toEqual([expect.stringMatching(OPTED_OUT_LINE)]);
      const state = (await cb.store.get(id))!;
      expect(state.step).toBe("collect_details");
      expect(state.sms.declined).toBe(true);
      expect(await cb.memoryLedger.optedOut(CALLER)).toBe(true);
    } finally {
      await cb.close();
    }
  });
});

describe("when the list cannot be kept", () => {
  it("ledger.optOutList: false: the call sends no SMS any more and the caller is told it is not kept for later calls; no record claims a list", async () => {
    const svc = await startTestService({ config: testConfig({ ledger: { optOutList: false } }) });
    try {
      const id = "optout-list-off";
      await svc.post(ev.start(id));
      svc.fake.enqueue(reply.tool("opt_out_sms", {}));
      const r = await svc.post(ev.speak(id, "Schicken Sie mir nie wieder eine SMS."));
      expect(spoken(r.actions)).toEqual([expect.stringMatching(/^Verstanden, in diesem Gespräch verschicke ich keine SMS mehr\. Für spätere Anrufe konnte ich das leider gerade nicht vormerken\./)]);
      expect(svc.memoryLedger.records).toEqual([]);
      expect((await svc.store.get(id))!.sms.declined).toBe(true);
    } finally {
      await svc.close();
    }
  });

  it("a list file that cannot be read: the gate refuses the send (fail closed) and the caller hears it was not sent", async () => {
    const dir = mkdtempSync(join(tmpdir(), "optout-unreadable-"));
    const ledgerPath = join(dir, "consent-ledger.jsonl");
    const ledger = new FileLedger(ledgerPath, { notice: () => undefined });
    await ledger.ready();
    const turns: TurnRecord[] = [];
    const svc = await startTestService({ config: testConfig({ ledger: { path: ledgerPath } }), ledger, onTurn: (t) => turns.push(t) });
    try {
      followPrompts(svc.fake);
      writeFileSync(optOutPathOf(ledgerPath), "not json");
      const { sends, said } = await askAndSayYes(svc, "optout-unreadable");
      expect(sends).toEqual([]);
      expect(said).toEqual(["Die SMS habe ich nicht verschickt. Ich kann Ihnen die Informationen aber gern direkt am Telefon geben."]);
      expect(turns.flatMap((t) => t.guardDecisions)).toContainEqual(expect.objectContaining({ subject: "send_sms", allowed: false, reason: "opt_out_list_unavailable", detail: expect.stringMatching(/is not JSON/) }));
    } finally {
      await svc.close();
    }
  });
});
