import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { FileLedger } from "../src/ledger/fileLedger.js";
import type { LedgerRecord, LedgerRecordInput } from "../src/ledger/ledger.js";
import { PostgresLedger } from "../src/ledger/postgresLedger.js";
import { readLedgerFile } from "../src/ledger/readLedger.js";
import { verifyRecords } from "../src/ledger/verify.js";
import { TEST_DATABASE_URL, dropTable, requirePostgres, sql, uniqueTable } from "./support/postgres.js";

/**
 * Who decided a consent answer (a listed rule or the model) is part of the chained record: written
 * and read back the same by the file ledger and PostgreSQL, covered by the hash chain (a record
 * whose rule is changed afterwards fails verify).
 */

const NUMBER = "4915112345678";
const QUESTION = "Darf ich Ihnen die Informationen per SMS an die Nummer 0 1 5 1 1, 2 3 4, 5 6, 7 8 schicken?";
const records: LedgerRecordInput[] = [
  { id: "c1:e2:consent_asked:0", kind: "consent_asked", callId: "c1", at: "2026-11-23T09:00:03.000Z", number: NUMBER, question: QUESTION },
  { id: "c1:e3:consent_given:0", kind: "consent_given", callId: "c1", at: "2026-11-23T09:00:05.000Z", number: NUMBER, question: QUESTION, reply: "Ja, gerne.", outcome: "given", decidedBy: "rule", rule: "yes:ja gerne", ref: "c1:e2:consent_asked:0" },
  { id: "c2:e3:consent_declined:0", kind: "consent_declined", callId: "c2", at: "2026-11-23T09:01:05.000Z", number: NUMBER, question: QUESTION, reply: "Nein, das brauche ich wirklich nicht.", outcome: "declined", decidedBy: "model", model: "gpt-4o-mini" },
];

/** The written fields of each record (their chain fields and salt aside). */
const written = (read: LedgerRecord[]) => read.map(({ seq: _s, prev: _p, salt: _salt, ...rest }) => rest);

describe("file ledger", () => {
  it("keeps decidedBy and rule, and the chain covers them", async () => {
    const path = join(mkdtempSync(join(tmpdir(), "rule-ledger-")), "ledger.jsonl");
    const l = new FileLedger(path);
    for (const r of records) await l.append(r);
    await l.close();
    const read = (await readLedgerFile(path)).records;
    expect(written(read)).toEqual(records);
    expect(verifyRecords(read).ok).toBe(true);
    // Someone changes which rule decided: the next record's link no longer matches.
    writeFileSync(path, readFileSync(path, "utf8").replace('"rule":"yes:ja gerne"', '"rule":"yes:ja"'));
    const tampered = verifyRecords((await readLedgerFile(path)).records);
    expect(tampered.ok).toBe(false);
    expect(tampered.firstProblem).toMatchObject({ seq: 2, id: "c1:e3:consent_given:0", problem: expect.stringMatching(/does not match the digest the next record/) });
  });
});

describe("PostgreSQL ledger", () => {
  const tables: string[] = [];
  const open: PostgresLedger[] = [];
  afterAll(async () => {
    await Promise.all(open.map((l) => l.close().catch(() => undefined)));
    for (const t of tables) await dropTable(t);
  });
  const ledger = (table: string) => {
    tables.push(table);
    const l = new PostgresLedger({ connectionString: TEST_DATABASE_URL, table, connectionTimeoutMs: 3000 });
    open.push(l);
    return l;
  };

  it("keeps decidedBy and rule in their columns, and the chain covers them", async () => {
    await requirePostgres();
    const l = ledger(uniqueTable("rule"));
    for (const r of records) await l.append(r);
    const read = await l.query();
    expect(written(read)).toEqual(records);
    expect(verifyRecords(read).ok).toBe(true);
    expect(await sql(`SELECT decided_by, rule FROM "${l.table}" ORDER BY pos`)).toEqual([
      { decided_by: null, rule: null },
      { decided_by: "rule", rule: "yes:ja gerne" },
      { decided_by: "model", rule: null },
    ]);
    await sql(`UPDATE "${l.table}" SET rule = 'yes:ja' WHERE rule IS NOT NULL`);
    const tampered = verifyRecords(await l.query());
    expect(tampered.ok).toBe(false);
    expect(tampered.firstProblem).toMatchObject({ seq: 2, id: "c1:e3:consent_given:0", problem: expect.stringMatching(/does not match the digest the next record/) });
  });

  it("a table from before the columns gets them; its records still verify", async () => {
    await requirePostgres();
    const table = uniqueTable("rule_old");
    const old = ledger(table);
    await old.append(records[0]!);
    await old.close();
    await sql(`ALTER TABLE "${table}" DROP COLUMN decided_by, DROP COLUMN rule`);
    const l = ledger(table);
    await l.append(records[1]!);
    const read = await l.query();
    expect(written(read)).toEqual(records.slice(0, 2));
    expect(verifyRecords(read).ok).toBe(true);
  });
});
