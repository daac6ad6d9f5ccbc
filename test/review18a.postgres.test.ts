import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeEach, describe, expect, it, vi } from "vitest";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { runLedgerCli } from "../src/cli/ledger.js";
import { FileLedger } from "../src/ledger/fileLedger.js";
import { eraseFromFile } from "../src/ledger/fileMaintenance.js";
import type { LedgerRecord, LedgerRecordInput } from "../src/ledger/ledger.js";
import { NumberHasher } from "../src/ledger/numberHash.js";
import { PostgresLedger } from "../src/ledger/postgresLedger.js";
import { parseLedgerText } from "../src/ledger/readLedger.js";
import { verifyRecords } from "../src/ledger/verify.js";
import { TEST_DATABASE_URL, dropTable, requirePostgres, sql, uniqueTable } from "./support/postgres.js";

const KEY = "test-1:0123456789abcdef0123456789abcdef0123";
const tables: string[] = [];
afterAll(async () => {
  for (const t of tables) {
    await dropTable(t);
    await sql(`DROP TABLE IF EXISTS "${t}_optout"`).catch(() => undefined);
  }
});
beforeEach(() => requirePostgres());

function call(callId: string, number: string, at: Date, question: string, message = "Adresse: Hauptstr. 1"): LedgerRecordInput[] {
  const t = (s: number) => new Date(at.getTime() + s * 1000).toISOString();
  return [
    { id: `${callId}:e2:consent_asked:0`, kind: "consent_asked", callId, at: t(0), number, question },
    { id: `${callId}:e3:consent_given:0`, kind: "consent_given", callId, at: t(3), number, reply: "Ja.", ref: `${callId}:e2:consent_asked:0` },
    { id: `${callId}:e3:sms_approved:0`, kind: "sms_approved", callId, at: t(4), number, question, message, ref: `${callId}:e3:consent_given:0` },
    { id: `${callId}:e3:sms_handed_over:0`, kind: "sms_handed_over", callId, at: t(4), number, ref: `${callId}:e3:sms_approved:0` },
  ];
}

async function pgWith(inputs: LedgerRecordInput[], hasher = NumberHasher.full()): Promise<{ table: string; ledger: PostgresLedger }> {
  const table = uniqueTable("r18a");
  tables.push(table);
  const ledger = new PostgresLedger({ connectionString: TEST_DATABASE_URL, table, hasher });
  await ledger.ready();
  for (const r of inputs) await ledger.append(r);
  return { table, ledger };
}

async function scanned(ledger: PostgresLedger): Promise<LedgerRecord[]> {
  const out: LedgerRecord[] = [];
  await ledger.scan((r) => out.push(r));
  return out;
}

describe("review18a: canonical bytes across the PostgreSQL round trip", () => {
  it("a text with a lone surrogate (half an emoji) verifies in PostgreSQL as it does in the file", async () => {
    const now = new Date("2026-03-01T10:00:00Z");
    // e.g. an SMS text or a transcript cut by UTF-16 length in the middle of "😀"
    const recs = call("c1", "4915112345678", new Date("2026-02-01T10:00:00Z"), "Darf ich Ihnen eine SMS schicken?", "Bis morgen \ud83d");
    const { ledger } = await pgWith(recs);
    const report = verifyRecords(await scanned(ledger), { now, heads: [{ ...(await ledger.head()), source: "head row" }] });
    await ledger.close();
    expect(report.problems).toEqual([]);
    expect(report.ok).toBe(true);
  });
});

describe("review18a: erase --number takes other people's records", () => {
  const N = "49301234567"; // +49 30 1234567
  const M = "493012345678"; // +49 30 12345678: another person whose number starts with N's digits
  const inputs = () => [
    ...call("cN", N, new Date("2026-02-01T10:00:00Z"), "Darf ich Ihnen eine SMS an 030 1234567 schicken?"),
    ...call("cM", M, new Date("2026-02-02T10:00:00Z"), "Darf ich Ihnen eine SMS an 030 12345678 schicken?"),
  ];

  it("file ledger: erasing N leaves M's records alone", async () => {
    const dir = mkdtempSync(join(tmpdir(), "review18a-erase-"));
    const path = join(dir, "ledger.jsonl");
    const l = new FileLedger(path, { notice: () => undefined });
    for (const r of inputs()) await l.append(r);
    await l.close();
    await eraseFromFile(path, N, NumberHasher.full(), new Date("2026-03-01T10:00:00Z"));
    const erasedCalls = parseLedgerText(readFileSync(path, "utf8")).records.filter((r) => r.erased).map((r) => `${r.callId}:${r.kind}`);
    expect(erasedCalls.filter((c) => c.startsWith("cM:")), "M's consent evidence was destroyed by N's erasure").toEqual([]);
  });

  it("PostgreSQL: erasing N leaves M's records alone", async () => {
    const { ledger } = await pgWith(inputs());
    await ledger.erase(N, new Date("2026-03-01T10:00:00Z"));
    const erasedCalls = (await scanned(ledger)).filter((r) => r.erased).map((r) => `${r.callId}:${r.kind}`);
    await ledger.close();
    expect(erasedCalls.filter((c) => c.startsWith("cM:")), "M's consent evidence was destroyed by N's erasure").toEqual([]);
  });
});

describe("review18a: verify against PostgreSQL needs the HMAC secret", () => {
  it("an auditor without LEDGER_HASH_KEY can verify a hashed PostgreSQL ledger", async () => {
    const hasher = NumberHasher.fromConfig("hashed", { LEDGER_HASH_KEY: KEY });
    const { table, ledger } = await pgWith(call("c1", "4915112345678", new Date("2026-02-01T10:00:00Z"), "SMS?"), hasher);
    await ledger.close();
    const dir = mkdtempSync(join(tmpdir(), "review18a-cfg-"));
    const raw = parseYaml(readFileSync("config/agent.yaml", "utf8")) as Record<string, unknown>;
    raw.ledger = { ...(raw.ledger as object), path: join(dir, "unused.jsonl"), numbers: "hashed" };
    writeFileSync(join(dir, "agent.yaml"), stringifyYaml(raw));
    const err = vi.spyOn(console, "error").mockImplementation(() => undefined);
    const log = vi.spyOn(console, "log").mockImplementation(() => undefined);
    const code = await runLedgerCli(["verify", "--config", join(dir, "agent.yaml")], { DATABASE_URL: TEST_DATABASE_URL, LEDGER_TABLE: table }, new Date("2026-03-01T10:00:00Z"));
    const stderr = err.mock.calls.map((c) => c.join(" ")).join("\n");
    err.mockRestore();
    log.mockRestore();
    expect(stderr).toBe("");
    expect(code).toBe(0);
  });
});
