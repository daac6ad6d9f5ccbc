import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { FileLedger } from "../src/ledger/fileLedger.js";
import type { LedgerRecord, OptOutChange } from "../src/ledger/ledger.js";
import { MemoryLedger } from "../src/ledger/memoryLedger.js";
import { NumberHasher } from "../src/ledger/numberHash.js";
import { optOutPathOf } from "../src/ledger/optOutFile.js";
import { PostgresLedger } from "../src/ledger/postgresLedger.js";
import { readLedgerFile } from "../src/ledger/readLedger.js";
import { verifyRecords } from "../src/ledger/verify.js";
import { TEST_DATABASE_URL, dropTable, requirePostgres, sql, uniqueTable } from "./support/postgres.js";

/**
 * The do-not-text list as each ledger keeps it, against the real file and a real PostgreSQL:
 * every change is a chained record written together with the list, the lookup finds a number in
 * any stored form (also one hashed with a key since rotated), another process's change is seen at
 * the next lookup, and a list that cannot be read refuses instead of answering "not listed".
 */

const N = "4915112345678";
const OTHER = "4917012345678";
const KEY_A = { id: "2026-01", secret: "a".repeat(40) };
const KEY_B = { id: "2026-07", secret: "b".repeat(40) };

let seq = 0;
function change(add: boolean, number = N, by: "caller" | "operator" = add ? "caller" : "operator"): OptOutChange {
  const n = ++seq;
  return {
    id: `optout-test-${n}`,
    add,
    number,
    by,
    callId: by === "caller" ? `call-${n}` : "operator",
    at: new Date(Date.UTC(2026, 10, 23, 9, 0, n)).toISOString(),
    detail: by === "caller" ? `the caller in call call-${n}, for their own number` : "the operator via the CLI (npm run ledger -- optout)",
    ...(by === "caller" ? { reply: "Schicken Sie mir nie wieder eine SMS." } : {}),
  };
}

interface Store {
  open(hasher?: NumberHasher): FileLedger | PostgresLedger;
  records(): Promise<LedgerRecord[]>;
  /** The list as stored, as text: what a reader of the disk or the table sees. */
  listText(): Promise<string>;
}

const opened: Array<{ close(): Promise<void> }> = [];
const tables: string[] = [];
afterAll(async () => {
  for (const l of opened) await l.close().catch(() => undefined);
  for (const t of tables) await dropTable(t);
});

function fileStore(): Store & { path: string } {
  const path = join(mkdtempSync(join(tmpdir(), "optout-ledger-")), "data", "consent-ledger.jsonl");
  return {
    path,
    open(hasher = NumberHasher.full()) {
      const l = new FileLedger(path, { hasher, notice: () => undefined });
      opened.push(l);
      return l;
    },
    records: async () => (await readLedgerFile(path)).records,
    listText: async () => readFileSync(optOutPathOf(path), "utf8"),
  };
}

function postgresStore(): Store & { table: string } {
  const table = uniqueTable("optout");
  tables.push(table);
  let reader: PostgresLedger | undefined;
  return {
    table,
    open(hasher = NumberHasher.full()) {
      const l = new PostgresLedger({ connectionString: TEST_DATABASE_URL, table, hasher, connectionTimeoutMs: 3000 });
      opened.push(l);
      return l;
    },
    async records() {
      if (!reader) {
        reader = new PostgresLedger({ connectionString: TEST_DATABASE_URL, table });
        opened.push(reader);
      }
      return reader.query();
    },
    listText: async () => JSON.stringify(await sql(`SELECT * FROM "${table}_optout"`)),
  };
}

describe.each([
  ["file ledger", fileStore],
  ["PostgreSQL ledger", postgresStore],
] as const)("the do-not-text list in the %s", (name, makeStore) => {
  const needs = async () => {
    if (name === "PostgreSQL ledger") await requirePostgres();
  };

  it("add, look up, take off: each change is one chained record naming who and where; a removal of an unlisted number writes nothing", async () => {
    await needs();
    const store = makeStore();
    const l = store.open();
    await l.ready();
    expect(await l.optedOut(N)).toBe(false);

    const added = change(true);
    expect(await l.setOptOut(added)).toEqual({ written: true, wasListed: false });
    expect(await l.optedOut(N)).toBe(true);
    expect(await l.optedOut(OTHER)).toBe(false);
    // A retried write (same id) is stored once.
    expect(await l.setOptOut(added)).toEqual({ written: false, wasListed: true });

    expect(await l.setOptOut(change(false))).toEqual({ written: true, wasListed: true });
    expect(await l.optedOut(N)).toBe(false);
    expect(await l.setOptOut(change(false))).toEqual({ written: false, wasListed: false });

    const records = await store.records();
    expect(records.map((r) => [r.kind, r.number, r.outcome])).toEqual([
      ["opt_out_added", N, "caller"],
      ["opt_out_removed", N, "operator"],
    ]);
    expect(records[0]).toMatchObject({ callId: added.callId, detail: added.detail, reply: "Schicken Sie mir nie wieder eine SMS." });
    expect(records[1]).toMatchObject({ callId: "operator", detail: expect.stringMatching(/operator via the CLI/) });
    const report = verifyRecords(records);
    expect(report.problems).toEqual([]);
    expect(report.ok).toBe(true);
    expect(await l.optOutEntries()).toEqual([]);
  });

  it("with hashed numbers neither the records nor the list hold the number, and a number listed before a key rotation is still found and taken off", async () => {
    await needs();
    const store = makeStore();
    const before = store.open(NumberHasher.keyed(KEY_A));
    await before.ready();
    await before.setOptOut(change(true));
    await before.close();
    expect(await store.listText()).not.toContain(N);
    expect((await store.records())[0]!.number).toMatch(/^hmac-sha256:[0-9a-f]{64}$/);

    // Rotated: B is the current key, A is listed as an old one.
    const after = store.open(NumberHasher.keyed(KEY_B, [KEY_A]));
    await after.ready();
    expect(await after.optedOut(N)).toBe(true);
    expect((await after.optOutEntries()).map((e) => e.keyId)).toEqual([KEY_A.id]);
    expect(await after.setOptOut(change(false))).toEqual({ written: true, wasListed: true });
    expect(await after.optedOut(N)).toBe(false);
    // Added again, it is stored with the current key; the list holds one entry.
    await after.setOptOut(change(true));
    expect((await after.optOutEntries()).map((e) => e.keyId)).toEqual([KEY_B.id]);
    expect(await store.listText()).not.toContain(N);
    const records = await store.records();
    expect(records.map((r) => r.keyId)).toEqual([KEY_A.id, KEY_B.id, KEY_B.id]);
    expect(verifyRecords(records).ok).toBe(true);
  });

  it("a change written by another process (the CLI) is seen at the next lookup, and the list survives reopening", async () => {
    await needs();
    const store = makeStore();
    const service = store.open();
    const cli = store.open();
    await service.ready();
    await cli.ready();
    expect(await service.optedOut(N)).toBe(false);
    await cli.setOptOut(change(true, N, "operator"));
    expect(await service.optedOut(N)).toBe(true);
    await cli.setOptOut(change(false));
    expect(await service.optedOut(N)).toBe(false);
    await cli.setOptOut(change(true, OTHER, "operator"));
    await service.close();
    await cli.close();

    const restarted = store.open();
    await restarted.ready();
    expect(await restarted.optedOut(OTHER)).toBe(true);
    expect(await restarted.optedOut(N)).toBe(false);
    expect((await restarted.optOutEntries()).map((e) => [e.number, e.by])).toEqual([[OTHER, "operator"]]);
  });

  it("several writers at once: every change is in the one chain, and the list holds every number", async () => {
    await needs();
    const store = makeStore();
    const [a, b] = [store.open(), store.open()];
    await Promise.all([a.ready(), b.ready()]);
    const numbers = Array.from({ length: 12 }, (_, i) => `4915112345${String(600 + i)}`);
    await Promise.all(numbers.map((n, i) => (i % 2 ? a : b).setOptOut(change(true, n))));
    for (const n of numbers) expect(await a.optedOut(n)).toBe(true);
    const records = await store.records();
    expect(records).toHaveLength(numbers.length);
    expect(verifyRecords(records).ok).toBe(true);
  });
});

describe("the file ledger's list file", () => {
  it("is 0600 beside the ledger, replaced whole (no temp file left), and created empty by ready()", async () => {
    const store = fileStore();
    const l = store.open();
    await l.ready();
    const listPath = optOutPathOf(store.path);
    expect(JSON.parse(readFileSync(listPath, "utf8"))).toEqual({ version: 1, throughSeq: 0, entries: {} });
    await l.setOptOut(change(true));
    expect(statSync(listPath).mode & 0o777).toBe(0o600);
    expect(readdirSync(dirname(listPath)).sort()).toEqual(["consent-ledger.jsonl", "consent-ledger.jsonl.optout.json"]);
    expect(JSON.parse(readFileSync(listPath, "utf8"))).toMatchObject({ throughSeq: 1, entries: { [N]: { by: "caller", record: expect.stringMatching(/^optout-test-/) } } });
  });

  it("a crash between the record and the list: the next start applies the record; a missing list is rebuilt from the ledger", async () => {
    const store = fileStore();
    const l = store.open();
    await l.ready();
    await l.setOptOut(change(true, OTHER));
    const listPath = optOutPathOf(store.path);
    const beforeChange = readFileSync(listPath, "utf8");
    await l.setOptOut(change(true));
    await l.close();
    // The list as it was before the last change: its record is in the ledger, the list misses it.
    writeFileSync(listPath, beforeChange);
    const next = store.open();
    await next.ready();
    expect(await next.optedOut(N)).toBe(true);
    expect(JSON.parse(readFileSync(listPath, "utf8")).throughSeq).toBe(2);
    await next.setOptOut(change(false, OTHER));
    await next.close();

    unlinkSync(listPath);
    const rebuilt = store.open();
    await rebuilt.ready();
    expect(await rebuilt.optedOut(N)).toBe(true);
    expect(await rebuilt.optedOut(OTHER)).toBe(false);
    expect(JSON.parse(readFileSync(listPath, "utf8")).throughSeq).toBe(3);
  });

  it("a list that cannot be read refuses (the gate then refuses the send), and start-up says which file and what to do", async () => {
    const store = fileStore();
    const l = store.open();
    await l.ready();
    await l.setOptOut(change(true));
    const listPath = optOutPathOf(store.path);
    writeFileSync(listPath, '{"version":1,"entries":');
    await expect(l.optedOut(OTHER)).rejects.toThrow(/do-not-text list .*optout\.json is not JSON .*move it away; the next start rebuilds it from the ledger/);
    await expect(store.open().ready()).rejects.toThrow(/do-not-text list .*optout\.json is not JSON/);

    // Gone while the service runs: not "nobody opted out".
    unlinkSync(listPath);
    await expect(l.optedOut(OTHER)).rejects.toThrow(/do-not-text list .*optout\.json is gone: sends are refused until the service starts again/);
    const restarted = store.open();
    await restarted.ready();
    expect(existsSync(listPath)).toBe(true);
    expect(await restarted.optedOut(N)).toBe(true);
  });
});

describe("the PostgreSQL ledger's list table", () => {
  it("is <table>_optout, keyed by the stored number, changed in the transaction of its record", async () => {
    await requirePostgres();
    const store = postgresStore();
    const l = store.open();
    await l.ready();
    const cols = await sql<{ column_name: string }>("SELECT column_name FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position", [`${store.table}_optout`]);
    expect(cols.map((c) => c.column_name)).toEqual(["number", "key_id", "since", "added_by", "record_id"]);
    const added = change(true);
    await l.setOptOut(added);
    const rows = await sql<{ number: string; record_id: string; added_by: string }>(`SELECT number, record_id, added_by FROM "${store.table}_optout"`);
    expect(rows).toEqual([{ number: N, record_id: added.id, added_by: "caller" }]);
    // The record's position and the chain head moved together with the row.
    const head = await sql<{ pos: string }>(`SELECT pos FROM "${store.table}_head"`);
    expect(Number(head[0]!.pos)).toBe((await store.records()).at(-1)!.seq);
  });

  it("a lookup that cannot reach the database rejects: never 'not listed'", async () => {
    const l = new PostgresLedger({ connectionString: "postgres://postgres@127.0.0.1:1/test", table: uniqueTable("optout"), connectionTimeoutMs: 1000 });
    opened.push(l);
    await expect(l.optedOut(N)).rejects.toThrow(/not available/);
  });
});

describe("the memory ledger's list", () => {
  it("keeps the same records and answers the same way", async () => {
    const l = new MemoryLedger();
    await l.setOptOut(change(true));
    expect(await l.optedOut(N)).toBe(true);
    expect(await l.setOptOut(change(false))).toEqual({ written: true, wasListed: true });
    expect(await l.optedOut(N)).toBe(false);
    expect(l.records.map((r) => r.kind)).toEqual(["opt_out_added", "opt_out_removed"]);
    expect(verifyRecords(l.records).ok).toBe(true);
  });
});
