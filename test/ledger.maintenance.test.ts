import { mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { stringify as stringifyYaml, parse as parseYaml } from "yaml";
import { FileLedger } from "../src/ledger/fileLedger.js";
import { eraseFromFile, purgeFile } from "../src/ledger/fileMaintenance.js";
import type { LedgerRecord, LedgerRecordInput } from "../src/ledger/ledger.js";
import { NumberHasher } from "../src/ledger/numberHash.js";
import { PostgresLedger } from "../src/ledger/postgresLedger.js";
import { parseLedgerText, readLedgerFile } from "../src/ledger/readLedger.js";
import { verifyRecords } from "../src/ledger/verify.js";
import { TEST_DATABASE_URL, dropTable, sql, uniqueTable } from "./support/postgres.js";
import { ledgerCli } from "./support/ledgerCli.js";

/**
 * Verify, purge and erase (issue 18 points 3 and 4) on the real file ledger and real PostgreSQL:
 * a chain that verifies, a record altered or removed found by `verify` naming it, a purge that
 * leaves an anchor so the rest still verifies, an erasure that keeps each record's digest.
 */

const KEY = "test-1:0123456789abcdef0123456789abcdef0123";
const ALICE = "4915112345678";
const BOB = "4915798765432";



const cli = ledgerCli;

function configIn(dir: string, ledger: Record<string, unknown> = {}): { configPath: string; ledgerPath: string } {
  const raw = parseYaml(readFileSync("config/agent.yaml", "utf8")) as Record<string, unknown>;
  const ledgerPath = join(dir, "consent-ledger.jsonl");
  raw.ledger = { ...(raw.ledger as object), path: ledgerPath, ...ledger };
  const configPath = join(dir, "agent.yaml");
  writeFileSync(configPath, stringifyYaml(raw));
  return { configPath, ledgerPath };
}

/** One call's evidence, as the SMS task writes it: asked, given, approved, handed over. */
function callRecords(callId: string, number: string, at: Date): LedgerRecordInput[] {
  const t = (s: number) => new Date(at.getTime() + s * 1000).toISOString();
  const spoken = number.replace(/^49/, "0").split("").join(" ");
  return [
    { id: `${callId}:e2:consent_asked:0`, kind: "consent_asked", callId, at: t(0), number, question: `Darf ich Ihnen die Adresse per SMS an ${spoken} schicken?` },
    { id: `${callId}:e3:consent_given:0`, kind: "consent_given", callId, at: t(3), number, reply: "Ja, gerne.", ref: `${callId}:e2:consent_asked:0` },
    { id: `${callId}:e3:sms_approved:0`, kind: "sms_approved", callId, at: t(4), number, message: "Unsere Adresse: Hauptstr. 1", ref: `${callId}:e3:consent_given:0` },
    { id: `${callId}:e3:sms_handed_over:0`, kind: "sms_handed_over", callId, at: t(4), number, ref: `${callId}:e3:sms_approved:0` },
  ];
}

const lines = (path: string) => readFileSync(path, "utf8").split("\n").filter(Boolean);
const records = (path: string) => parseLedgerText(readFileSync(path, "utf8")).records;

async function fileWith(inputs: LedgerRecordInput[], hasher = NumberHasher.full()): Promise<{ dir: string; configPath: string; ledgerPath: string }> {
  const dir = mkdtempSync(join(tmpdir(), "ledger-maint-"));
  const { configPath, ledgerPath } = configIn(dir, hasher.mode === "hashed" ? { numbers: "hashed" } : {});
  const ledger = new FileLedger(ledgerPath, { hasher, notice: () => undefined });
  for (const r of inputs) await ledger.append(r);
  await ledger.close();
  return { dir, configPath, ledgerPath };
}

describe("verify (file ledger)", () => {
  it("an untouched ledger verifies: exit 0, the chain intact", async () => {
    const { configPath } = await fileWith([...callRecords("c1", ALICE, new Date("2026-12-01T09:00:00Z")), ...callRecords("c2", BOB, new Date("2026-12-01T10:00:00Z"))]);
    const r = await cli(["verify", "--config", configPath]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/8 record\(s\) in file .*: the chain is intact/);
  });

  it("one record altered: exit 1 naming that record and what is wrong", async () => {
    const { configPath, ledgerPath } = await fileWith([...callRecords("c1", ALICE, new Date("2026-12-01T09:00:00Z")), ...callRecords("c2", BOB, new Date("2026-12-01T10:00:00Z"))]);
    // Someone makes a "no" look like a "yes" after the fact.
    const text = readFileSync(ledgerPath, "utf8").replace('"reply":"Ja, gerne."', '"reply":"Ja, sehr gerne."');
    writeFileSync(ledgerPath, text);
    const r = await cli(["verify", "--config", configPath]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^ledger: verify failed: record 2 \(id c1:e3:consent_given:0, call c1\): its content does not match the digest the next record \(position 3\) holds/);
  });

  it("one record removed: exit 1 naming the gap", async () => {
    const { configPath, ledgerPath } = await fileWith([...callRecords("c1", ALICE, new Date("2026-12-01T09:00:00Z")), ...callRecords("c2", BOB, new Date("2026-12-01T10:00:00Z"))]);
    const kept = lines(ledgerPath).filter((l) => !l.includes('"id":"c2:e3:sms_approved:0"'));
    writeFileSync(ledgerPath, kept.join("\n") + "\n");
    const r = await cli(["verify", "--config", configPath]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^ledger: verify failed: record 8 \(id c2:e3:sms_handed_over:0, call c2\): position 8 follows 6: 1 record\(s\) missing/);
  });

  it("an approval without a consent for that number, and an approval without outcome, are reported", () => {
    const base = callRecords("c1", ALICE, new Date("2026-01-01T09:00:00Z"));
    const mem: LedgerRecord[] = [];
    const chained = (inputs: LedgerRecordInput[]) => inputs.map((r, i) => ({ ...r, seq: i + 1 }) as LedgerRecord);
    mem.push(...chained([base[0]!, { ...base[2]!, number: BOB, ref: undefined }]));
    const report = verifyRecords(mem);
    expect(report.problems.map((p) => p.problem)).toContainEqual(expect.stringMatching(/sms_approved in call c1 without a consent_given for that number before it/));
    const noOutcome = verifyRecords(chained(base.slice(0, 3)), { now: new Date("2026-01-02T00:00:00Z") });
    expect(noOutcome.outcomeUnknown).toEqual([expect.objectContaining({ seq: 3, id: "c1:e3:sms_approved:0", problem: expect.stringMatching(/^outcome_unknown/) })]);
  });

  it("an approval without outcome fails only with --strict", async () => {
    const { configPath } = await fileWith(callRecords("c1", ALICE, new Date("2026-01-01T09:00:00Z")).slice(0, 3));
    const r = await cli(["verify", "--config", configPath]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/outcome_unknown: record 3 \(id c1:e3:sms_approved:0, call c1\)/);
    expect((await cli(["verify", "--strict", "--config", configPath])).code).toBe(1);
  });
});

describe("purge keeps the rest verifiable (file ledger)", () => {
  it("removes the old prefix, leaves an anchor and a purge record; a second purge goes on from the anchor", async () => {
    const old = [...callRecords("old1", ALICE, new Date("2019-01-01T09:00:00Z")), ...callRecords("old2", BOB, new Date("2019-06-01T09:00:00Z"))];
    const recent = callRecords("new1", ALICE, new Date("2026-12-01T09:00:00Z"));
    const { configPath, ledgerPath } = await fileWith([...old, ...recent]);
    const r = await cli(["purge", "--config", configPath]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^8 record\(s\) deleted .*an anchor stands for position 8/);
    const after = records(ledgerPath);
    expect(after.map((x) => x.kind)).toEqual(["anchor", "consent_asked", "consent_given", "sms_approved", "sms_handed_over", "purge"]);
    expect(after[0]).toMatchObject({ seq: 8, kind: "anchor" });
    expect(after.at(-1)).toMatchObject({ seq: 13, kind: "purge", maintenance: { through: 8, count: 8 } });
    expect(readFileSync(ledgerPath, "utf8")).not.toMatch(/old1|old2/);
    expect((await cli(["verify", "--config", configPath])).code).toBe(0);
    expect(statSync(ledgerPath).mode & 0o777).toBe(0o600);
    // Nothing more is old enough: the file stays as it is.
    expect(await purgeFile(ledgerPath, new Date("2020-01-01T00:00:00Z"))).toMatchObject({ deleted: 0, rewritten: false });
    // Years later everything goes: the new anchor stands for the last purge record.
    const later = await purgeFile(ledgerPath, new Date("2032-01-01T00:00:00Z"), new Date("2032-01-01T00:00:00Z"));
    expect(later).toMatchObject({ deleted: 6, through: 13, rewritten: true });
    expect(verifyRecords(records(ledgerPath)).ok).toBe(true);
  });

  it("an anchor nobody's purge wrote is found", async () => {
    const { ledgerPath } = await fileWith([...callRecords("old", ALICE, new Date("2019-01-01T09:00:00Z")), ...callRecords("new", BOB, new Date("2026-12-01T09:00:00Z"))]);
    await purgeFile(ledgerPath, new Date("2020-01-01T00:00:00Z"));
    // Drop the purge record that confirms the anchor (and pretend the records were never there).
    writeFileSync(ledgerPath, lines(ledgerPath).slice(0, -1).join("\n") + "\n");
    const report = verifyRecords(records(ledgerPath));
    expect(report.firstProblem).toMatchObject({ seq: 4, problem: expect.stringMatching(/confirmed by no purge record/) });
  });
});

describe("erasure keeps the chain (file ledger)", () => {
  it("replaces one number's personal fields with tombstones keeping digests; the erasure is a record", async () => {
    const { configPath, ledgerPath } = await fileWith([...callRecords("c1", ALICE, new Date("2026-12-01T09:00:00Z")), ...callRecords("c2", BOB, new Date("2026-12-01T10:00:00Z"))]);
    const r = await cli(["erase", "--number", "+49 151 12345678", "--config", configPath]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^4 record\(s\) about that number erased/);
    const text = readFileSync(ledgerPath, "utf8");
    expect(text).not.toContain("12345678");
    expect(text).not.toContain("1 2 3 4 5 6 7 8");
    expect(text).toContain(BOB);
    const after = records(ledgerPath);
    const erasure = after.at(-1)!;
    expect(erasure).toMatchObject({ kind: "erasure", maintenance: { count: 4, ids: callRecords("c1", ALICE, new Date()).map((x) => x.id) } });
    for (const t of after.filter((x) => x.callId === "c1")) expect(t).toMatchObject({ erased: { by: erasure.id } });
    expect((await cli(["verify", "--config", configPath])).code).toBe(0);
    expect((await cli(["erase", "--number", "0151 12345678", "--config", configPath])).stdout).toMatch(/nothing erased/);
  });

  it("with hashed numbers the keyed hash finds the records, also under an older key", async () => {
    const old = NumberHasher.keyed({ id: "k0", secret: "x".repeat(40) });
    const { configPath, ledgerPath } = await fileWith(callRecords("c1", ALICE, new Date("2026-12-01T09:00:00Z")), old);
    expect(readFileSync(ledgerPath, "utf8")).not.toContain("12345678");
    const env = { LEDGER_HASH_KEY: KEY, LEDGER_HASH_KEYS_OLD: `k0:${"x".repeat(40)}` };
    const r = await cli(["erase", "--number", "015112345678", "--config", configPath], env);
    expect(r.stdout).toMatch(/^4 record\(s\)/);
    expect((await cli(["verify", "--config", configPath], env)).code).toBe(0);
    expect(records(ledgerPath).filter((x) => x.number)).toEqual([]);
  });

  it("erase without LEDGER_HASH_KEY on a hashed ledger: one line, exit 1 or 2, nothing changed", async () => {
    const { configPath, ledgerPath } = await fileWith(callRecords("c1", ALICE, new Date("2026-12-01T09:00:00Z")), NumberHasher.keyed({ id: "k0", secret: "x".repeat(40) }));
    const before = readFileSync(ledgerPath, "utf8");
    const r = await cli(["erase", "--number", "015112345678", "--config", configPath]);
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim().split("\n")).toEqual([expect.stringMatching(/LEDGER_HASH_KEY is not set/)]);
    expect(readFileSync(ledgerPath, "utf8")).toBe(before);
  });
});

describe("a purge while another process appends loses nothing (file ledger)", () => {
  it("appends from a second FileLedger during purges all survive and the chain verifies", async () => {
    const { ledgerPath } = await fileWith(callRecords("old", ALICE, new Date("2019-01-01T09:00:00Z")));
    const writer = new FileLedger(ledgerPath, { notice: () => undefined });
    const appended: string[] = [];
    const writing = (async () => {
      for (let i = 0; i < 40; i++) {
        for (const r of callRecords(`live${i}`, BOB, new Date(Date.UTC(2026, 11, 1, 9, 0, i)))) {
          await writer.append(r);
          appended.push(r.id);
          // A service's appends come with pauses between them: the rewrites get the lock in those.
          await new Promise((res) => setTimeout(res, 1));
        }
      }
    })();
    let purged = 0;
    let rewrites = 0;
    let done = false;
    void writing.finally(() => (done = true));
    while (!done) {
      purged += (await purgeFile(ledgerPath, new Date("2020-01-01T00:00:00Z"))).deleted;
      // Each erasure rewrites the whole file while the writer goes on.
      if ((await eraseFromFile(ledgerPath, BOB, NumberHasher.full())).erased) rewrites++;
    }
    await writing;
    await writer.close();
    expect(rewrites).toBeGreaterThanOrEqual(3);
    const after = await readLedgerFile(ledgerPath);
    expect(after.problems).toEqual([]);
    expect(purged).toBeGreaterThanOrEqual(4);
    const ids = new Set(after.records.map((r) => r.id));
    for (const id of appended) expect(ids.has(id), id).toBe(true);
    expect(verifyRecords(after.records).ok).toBe(true);
  });
});

describe("PostgreSQL: verify, purge and erase", () => {
  const tables: string[] = [];
  const open: PostgresLedger[] = [];
  afterAll(async () => {
    await Promise.all(open.map((l) => l.close()));
    for (const t of tables) {
      await dropTable(t);
      await dropTable(`${t}_head`);
    }
  });
  function ledger(table: string, hasher = NumberHasher.full()): PostgresLedger {
    if (!tables.includes(table)) tables.push(table);
    const l = new PostgresLedger({ connectionString: TEST_DATABASE_URL, table, hasher });
    open.push(l);
    return l;
  }
  async function all(l: PostgresLedger): Promise<LedgerRecord[]> {
    const out: LedgerRecord[] = [];
    await l.scan((r) => out.push(r), 3);
    return out;
  }
  const dbEnv = (table: string) => ({ DATABASE_URL: TEST_DATABASE_URL, LEDGER_TABLE: table });

  it("verify names an altered and a removed row", async () => {
    const table = uniqueTable("vfy");
    const l = ledger(table);
    for (const r of [...callRecords("c1", ALICE, new Date("2026-12-01T09:00:00Z")), ...callRecords("c2", BOB, new Date("2026-12-01T10:00:00Z"))]) await l.append(r);
    const { configPath } = configIn(mkdtempSync(join(tmpdir(), "ledger-maint-")));
    expect((await cli(["verify", "--config", configPath], dbEnv(table))).code).toBe(0);
    await sql(`UPDATE "${table}" SET reply = 'Ja, sehr gerne.' WHERE id = 'c1:e3:consent_given:0'`);
    const altered = await cli(["verify", "--config", configPath], dbEnv(table));
    expect(altered.code).toBe(1);
    expect(altered.stderr).toMatch(/verify failed: record 2 \(id c1:e3:consent_given:0, call c1\): its content does not match/);
    await sql(`UPDATE "${table}" SET reply = 'Ja, gerne.' WHERE id = 'c1:e3:consent_given:0'`);
    await sql(`DELETE FROM "${table}" WHERE id = 'c2:e3:sms_approved:0'`);
    const removed = await cli(["verify", "--config", configPath], dbEnv(table));
    expect(removed.code).toBe(1);
    expect(removed.stderr).toMatch(/verify failed: record 8 .*position 8 follows 6: 1 record\(s\) missing/);
  });

  it("purge leaves an anchor; erase leaves tombstones; the chain verifies after each", async () => {
    const table = uniqueTable("prg");
    const l = ledger(table);
    for (const r of [...callRecords("old", ALICE, new Date("2019-01-01T09:00:00Z")), ...callRecords("c1", ALICE, new Date("2026-12-01T09:00:00Z")), ...callRecords("c2", BOB, new Date("2026-12-01T10:00:00Z"))]) await l.append(r);
    expect(await l.purge(new Date("2020-01-01T00:00:00Z"), new Date("2026-12-07T00:00:00Z"))).toEqual({ deleted: 4, through: 4 });
    let recs = await all(l);
    expect(recs[0]).toMatchObject({ kind: "anchor", seq: 4 });
    expect(recs.at(-1)).toMatchObject({ kind: "purge", seq: 13 });
    expect(verifyRecords(recs).ok).toBe(true);
    const erased = await l.erase(ALICE, new Date("2026-12-07T00:00:01Z"));
    expect(erased.erased).toBe(4);
    recs = await all(l);
    expect(recs.filter((r) => r.callId === "c1").every((r) => r.erased && r.number === undefined && r.question === undefined)).toBe(true);
    expect(recs.at(-1)).toMatchObject({ kind: "erasure", seq: 14 });
    const raw = await sql(`SELECT * FROM "${table}"`);
    expect(JSON.stringify(raw)).not.toContain("12345678");
    expect(verifyRecords(recs).ok).toBe(true);
    // Appends go on after the maintenance records.
    await l.append(callRecords("c3", BOB, new Date("2026-12-07T01:00:00Z"))[0]!);
    expect(verifyRecords(await all(l)).ok).toBe(true);
  });

  it("a purge while four instances append loses nothing and keeps one chain", async () => {
    const table = uniqueTable("live");
    const seed = ledger(table);
    for (const r of callRecords("old", ALICE, new Date("2019-01-01T09:00:00Z"))) await seed.append(r);
    const writers = [0, 1, 2, 3].map(() => ledger(table));
    const appended: string[] = [];
    const writing = writers.map(async (w, k) => {
      for (let i = 0; i < 15; i++) {
        for (const r of callRecords(`live${k}-${i}`, BOB, new Date(Date.UTC(2026, 11, 1, 9, k, i)))) {
          await w.append(r);
          appended.push(r.id);
        }
      }
    });
    let purged = 0;
    for (let i = 0; i < 5; i++) purged += (await seed.purge(new Date("2020-01-01T00:00:00Z"))).deleted;
    for (let i = 0; i < 5; i++) await seed.erase(BOB);
    await Promise.all(writing);
    const recs = await all(seed);
    expect(purged).toBeGreaterThanOrEqual(4);
    const ids = new Set(recs.map((r) => r.id));
    for (const id of appended) expect(ids.has(id), id).toBe(true);
    const report = verifyRecords(recs);
    expect(report.problems).toEqual([]);
  });
});
