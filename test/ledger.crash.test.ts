import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { FileLedger } from "../src/ledger/fileLedger.js";
import type { LedgerRecord } from "../src/ledger/ledger.js";
import { PostgresLedger } from "../src/ledger/postgresLedger.js";
import { parseLedgerText, readLedgerFile } from "../src/ledger/readLedger.js";
import { GENESIS } from "../src/ledger/chain.js";
import { HMAC_PREFIX, MIN_SECRET_LENGTH, NumberHasher } from "../src/ledger/numberHash.js";
import { verifyRecords } from "../src/ledger/verify.js";
import { createHmac } from "node:crypto";
import { TEST_DATABASE_URL, dropTable, requirePostgres, uniqueTable } from "./support/postgres.js";

const CALLER = "4915112345678";
const QUESTION = "Darf ich Ihnen die Informationen per SMS an die Nummer 0 1 5 1 1, 2 3 4, 5 6, 7 8 schicken?";
const MESSAGE = "Praxis Dr. Muster: Öffnungszeiten: Mo-Fr 8-12 Uhr, Di und Do auch 15-18 Uhr. Antworten auf diese SMS werden nicht gelesen.";

/**
 * Runs test/support/ledgerCrashChild.ts (the real service taking one call to the send) and kills it
 * with SIGKILL the moment it reports that the answer carrying send_sms has arrived.
 */
function runAndKillAtSend(ledgerPath: string, sessionId: string, env: Record<string, string> = {}): Promise<{ signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  const base = { ...process.env };
  delete base.DATABASE_URL;
  delete base.LEDGER_TABLE;
  return new Promise((resolve, reject) => {
    // One process (node with tsx's loader), so the SIGKILL hits the service itself.
    const child = spawn(process.execPath, ["--import", "tsx", "test/support/ledgerCrashChild.ts", ledgerPath, sessionId], {
      env: { ...base, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    let killed = false;
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      stdout += d;
      if (!killed && stdout.includes("SENT")) {
        killed = true;
        child.kill("SIGKILL");
      }
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    // Never leave a child behind when the send does not come.
    const guard = setTimeout(() => child.kill("SIGKILL"), 20_000);
    child.on("error", reject);
    child.on("close", (_code, signal) => {
      clearTimeout(guard);
      resolve({ signal, stdout, stderr });
    });
  });
}

function expectEvidence(records: LedgerRecord[], callId: string, number: string): void {
  // The whole ledger is one intact chain: the kill left no torn or missing record behind.
  expect(verifyRecords(records).problems).toEqual([]);
  const call = records.filter((r) => r.callId === callId);
  // The approval was durable before the answer carrying the send left; its handover may or may not
  // have been written before the kill (it follows the answer's write).
  expect(call.slice(0, 3).map((r) => r.kind)).toEqual(["consent_asked", "consent_given", "sms_approved"]);
  expect(call.slice(3).map((r) => r.kind)).toEqual(call.length > 3 ? ["sms_handed_over"] : []);
  const sent = call[2]!;
  // "Ja, gerne." right after the heard question is a listed clear yes (prompts/de-DE/sms/consent_answers.md):
  // the approval names that rule, and no model, since none was asked.
  expect(sent).toMatchObject({ kind: "sms_approved", number, question: QUESTION, reply: "Ja, gerne.", message: MESSAGE, outcome: "approved", decidedBy: "rule", rule: "yes:ja gerne" });
  expect(sent.model).toBeUndefined();
  // Self-contained evidence: when the question was asked and answered, in order.
  expect(Date.parse(sent.consentAskedAt!)).toBeLessThanOrEqual(Date.parse(sent.consentAnsweredAt!));
  expect(Date.parse(sent.consentAnsweredAt!)).toBeLessThanOrEqual(Date.parse(sent.at));
}

describe("crash durability: the evidence is on disk before send_sms leaves", () => {
  it("FileLedger: SIGKILL right after the send_sms answer, the sms_approved record with question and reply is in the file", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ledger-crash-"));
    const path = join(dir, "data", "consent-ledger.jsonl");
    const run = await runAndKillAtSend(path, "crash-file");
    expect(run.stderr).toBe("");
    expect(run.stdout).toBe("SENT\n");
    expect(run.signal).toBe("SIGKILL");

    const contents = await readLedgerFile(path);
    expect(contents.problems).toEqual([]);
    expect(contents.tornTail).toBeUndefined();
    expectEvidence(contents.records, "crash-file", CALLER);
  });

  describe("PostgresLedger (DATABASE_URL)", () => {
    const table = uniqueTable("crash");
    afterAll(async () => {
      await dropTable(table);
    });

    it("SIGKILL right after the send_sms answer: the committed sms_approved row is there", async () => {
      await requirePostgres();
      // ledger.path points at a folder that is never created: with DATABASE_URL the file is not used.
      const unused = join(mkdtempSync(join(tmpdir(), "ledger-crash-pg-")), "unused", "l.jsonl");
      const run = await runAndKillAtSend(unused, "crash-pg", { DATABASE_URL: TEST_DATABASE_URL, LEDGER_TABLE: table });
      expect(run.stderr).toBe("");
      expect(run.stdout).toBe("SENT\n");
      expect(run.signal).toBe("SIGKILL");

      const ledger = new PostgresLedger({ connectionString: TEST_DATABASE_URL, table });
      try {
        expectEvidence(await ledger.query(), "crash-pg", CALLER);
      } finally {
        await ledger.close();
      }
    });
  });
});

describe("reading a ledger file a crash left behind", () => {
  const rec = (seq: number, kind: LedgerRecord["kind"], at: string): LedgerRecord => ({ seq, kind, callId: "c", at });
  const a = rec(1, "consent_asked", "2026-11-23T09:00:03.000Z");
  const b = rec(2, "consent_given", "2026-11-23T09:00:07.000Z");

  it("a torn last line is skipped and reported as tornTail, not as a problem", () => {
    const text = `${JSON.stringify(a)}\n${JSON.stringify(b)}\n{"seq":3,"kind":"sms_sent","callId":"c","at":"2026-11-23T09:0`;
    const c = parseLedgerText(text);
    expect(c.records).toEqual([a, b]);
    expect(c.problems).toEqual([]);
    expect(c.tornTail).toEqual({ line: 3, bytes: Buffer.byteLength(text.split("\n")[2]!) });
  });

  it("a complete record whose newline was lost is a record, not a torn line", () => {
    const c = parseLedgerText(`${JSON.stringify(a)}\n${JSON.stringify(b)}`);
    expect(c.records).toEqual([a, b]);
    expect(c.tornTail).toBeUndefined();
  });

  it("malformed lines elsewhere are reported with their line numbers; the rest is read", () => {
    const lines = [JSON.stringify(a), "", "{oops", JSON.stringify({ ...b, kind: "sms_teleported" }), "\u0000\u0000\u0000", JSON.stringify(b), '{"seq":4,"kind":"sms_sent","callId":"c"}'];
    const c = parseLedgerText(lines.join("\n") + "\n");
    expect(c.records).toEqual([a, b]);
    expect(c.tornTail).toBeUndefined();
    expect(c.problems.map((p) => p.line)).toEqual([3, 4, 5, 7]);
    expect(c.problems[0]!.message).toMatch(/^not JSON/);
    expect(c.problems[1]!.message).toMatch(/^not a ledger record: kind:/);
    expect(c.problems[3]!.message).toMatch(/^not a ledger record: at: Required/);
  });

  it("a record appended after a torn write lands on the fragment's line: the record is recovered and the line reported", () => {
    const sent: LedgerRecord = { ...rec(1, "sms_sent", "2026-11-23T10:00:00.000Z"), number: CALLER, question: QUESTION, reply: "Ja" };
    const c = parseLedgerText(`${JSON.stringify(a)}\n{"seq":2,"kind":"consent_giv${JSON.stringify(sent)}\n`);
    expect(c.records).toEqual([a, sent]);
    expect(c.problems).toEqual([{ line: 2, message: expect.stringMatching(/torn record fragment .* record kept/) }]);
  });

  it("readLedgerFile filters by from <= at < to and says clearly when the file is missing", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ledger-read-"));
    const path = join(dir, "l.jsonl");
    writeFileSync(path, `${JSON.stringify(a)}\n${JSON.stringify(b)}\n`);
    expect((await readLedgerFile(path, { from: new Date(b.at) })).records).toEqual([b]);
    expect((await readLedgerFile(path, { to: new Date(b.at) })).records).toEqual([a]);
    await expect(readLedgerFile(join(dir, "nope.jsonl"))).rejects.toThrow(/ledger file .*nope\.jsonl does not exist/);
  });

  it("reads what FileLedger writes, hashed numbers included", async () => {
    const path = join(mkdtempSync(join(tmpdir(), "ledger-read-")), "l.jsonl");
    const key = { id: "k1", secret: "s".repeat(MIN_SECRET_LENGTH) };
    const l = new FileLedger(path, { hasher: NumberHasher.keyed(key) });
    // A question without the number in it: how text naming the number is redacted is tested in ledger.chain.test.ts.
    const question = "Darf ich Ihnen die Informationen per SMS schicken?";
    await l.append({ id: "c:t2:sms_approved:0", kind: "sms_approved", callId: "c", at: "2026-11-23T09:00:07.000Z", number: CALLER, question, reply: "Ja, gerne.", ref: "c:t2:consent_given:0" });
    await l.close();
    const c = await readLedgerFile(path);
    expect(c.problems).toEqual([]);
    expect(c.records).toEqual([
      {
        seq: 1,
        id: "c:t2:sms_approved:0",
        kind: "sms_approved",
        callId: "c",
        at: "2026-11-23T09:00:07.000Z",
        number: HMAC_PREFIX + createHmac("sha256", key.secret).update(CALLER).digest("hex"),
        keyId: "k1",
        question,
        reply: "Ja, gerne.",
        ref: "c:t2:consent_given:0",
        prev: GENESIS,
        // Salts the hash of the personal fields an erasure would keep.
        salt: expect.stringMatching(/^[0-9a-f]{32}$/),
      },
    ]);
  });
});
