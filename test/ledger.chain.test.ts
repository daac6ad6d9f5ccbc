import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import pg from "pg";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { digestOf, GENESIS, prepareRecord, sealRecord, tombstone } from "../src/ledger/chain.js";
import { FileLedger } from "../src/ledger/fileLedger.js";
import { FileLockTimeout, lockPathOf } from "../src/ledger/fileLock.js";
import { LEDGER_KINDS, type ConsentLedger, type LedgerRecord, type LedgerRecordInput } from "../src/ledger/ledger.js";
import { MemoryLedger } from "../src/ledger/memoryLedger.js";
import { LEGACY_PREFIX, NumberHasher } from "../src/ledger/numberHash.js";
import { PostgresLedger, toRecord } from "../src/ledger/postgresLedger.js";
import { readLedgerFile } from "../src/ledger/readLedger.js";
import { verifyRecords, type VerifyReport } from "../src/ledger/verify.js";
import { isRunning, waitGone } from "./support/processes.js";
import { TEST_DATABASE_URL, dropTable, requirePostgres, sql, uniqueTable } from "./support/postgres.js";

/**
 * The hash chain of the consent ledger (issue 18 point 3), against the real file ledger, real
 * PostgreSQL and the memory ledger: records come back chained, an id is stored once however often
 * and from wherever it is appended, several writers keep one chain, a changed or removed record
 * is found by verify, legacy records before the chain still verify, and hashed numbers leave no
 * digits of the number behind. Digests are recomputed here independently of chain.ts.
 */

const CALLER = "4915112345678";
/** The national significant number: no record may hold it, with or without separators. */
const NSN = "15112345678";
const NOW = new Date("2026-11-24T00:00:00.000Z");
const OLD_KEY = { id: "2026-06", secret: "o".repeat(40) };
const NEW_KEY = { id: "2026-12", secret: "n".repeat(40) };

const PERSONAL = ["number", "keyId", "question", "reply", "message", "detail", "salt"] as const;

/**
 * The chain's digest, written anew: SHA-256 of the record's JSON with keys sorted, its personal
 * fields (and salt) replaced by `personal`, the SHA-256 of them alone; an anchor's is the digest it holds.
 */
function independentDigest(r: LedgerRecord): string {
  if (r.kind === "anchor" && r.erased?.digest) return r.erased.digest;
  const h = (v: unknown) => createHash("sha256").update(JSON.stringify(sorted(v))).digest("hex");
  const own: Record<string, unknown> = {};
  for (const f of PERSONAL) if (r[f] !== undefined) own[f] = r[f];
  const personal = r.erased ? r.erased.personal : Object.keys(own).length ? h(own) : undefined;
  const rest: Record<string, unknown> = { ...r, erased: undefined };
  for (const f of PERSONAL) rest[f] = undefined;
  return h({ ...rest, ...(personal ? { personal } : {}) });
}

function sorted(v: unknown): unknown {
  return Array.isArray(v)
    ? v.map(sorted)
    : v !== null && typeof v === "object"
      ? Object.fromEntries(
          Object.entries(v)
            .filter(([, x]) => x !== undefined)
            .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
            .map(([k, x]) => [k, sorted(x)]),
        )
      : v;
}

/** Each record after the first at the next position, linked to the digest of the one before. */
function expectLinked(records: LedgerRecord[]): void {
  for (let i = 1; i < records.length; i++) {
    expect(records[i]!.seq, `position after ${records[i - 1]!.seq}`).toBe(records[i - 1]!.seq + 1);
    expect(records[i]!.prev, `prev of position ${records[i]!.seq}`).toBe(independentDigest(records[i - 1]!));
  }
}

/** Positions 1..n without gaps, the first linked to the genesis, each other to the digest of the one before; no id twice. */
function expectOneChain(records: LedgerRecord[]): void {
  expect(records.map((r) => r.seq)).toEqual(records.map((_, i) => i + 1));
  expect(records[0]?.prev).toBe(GENESIS);
  expectLinked(records);
  const ids = records.map((r) => r.id);
  expect(new Set(ids).size).toBe(ids.length);
}

function expectVerified(records: LedgerRecord[]): VerifyReport {
  const report = verifyRecords(records, { now: NOW });
  expect(report.problems).toEqual([]);
  expect(report.ok).toBe(true);
  expect(report.outcomeUnknown).toEqual([]);
  return report;
}

const at = (second: number) => new Date(Date.parse("2026-11-23T09:00:00.000Z") + second * 1000).toISOString();

/** One call's evidence as the SMS task writes it: question, yes, approval, handover, each answering the one before. */
function callRecords(callId: string, opts: { number?: string; question?: string; reply?: string; from?: number } = {}): LedgerRecordInput[] {
  const number = opts.number ?? CALLER;
  const t = opts.from ?? 0;
  const question = opts.question ?? "Darf ich Ihnen die Öffnungszeiten per SMS schicken?";
  const reply = opts.reply ?? "Ja, gerne.";
  const asked: LedgerRecordInput = { id: `${callId}:t2:consent_asked:0`, kind: "consent_asked", callId, at: at(t + 2), number, question };
  const given: LedgerRecordInput = { id: `${callId}:t3:consent_given:0`, kind: "consent_given", callId, at: at(t + 5), number, reply, ref: asked.id };
  const approved: LedgerRecordInput = {
    id: `${callId}:t3:sms_approved:0`,
    kind: "sms_approved",
    callId,
    at: at(t + 6),
    number,
    question,
    reply,
    consentAskedAt: at(t + 2),
    consentAnsweredAt: at(t + 5),
    message: "Praxis Dr. Muster: Mo-Fr 8-12 Uhr.",
    model: "scripted-careful",
    ref: given.id,
  };
  const handed: LedgerRecordInput = { id: `${callId}:t3:sms_handed_over:0`, kind: "sms_handed_over", callId, at: at(t + 6), number, outcome: "handed_over", ref: approved.id };
  return [asked, given, approved, handed];
}

async function appendAll(ledger: ConsentLedger, records: LedgerRecordInput[]): Promise<void> {
  for (const r of records) await ledger.append(r);
}

/** Every string anywhere in a value (rows, records, nested objects). */
function stringsIn(value: unknown): string[] {
  if (typeof value === "string") return [value];
  if (value instanceof Date) return [];
  if (Array.isArray(value)) return value.flatMap(stringsIn);
  if (value !== null && typeof value === "object") return [...Object.keys(value), ...Object.values(value).flatMap(stringsIn)];
  return [];
}

/** A ledger under test, and what an auditor (or an attacker) can do with its storage. */
interface Opened {
  ledger: ConsentLedger;
  /** Every record as stored, in chain order. */
  read(): Promise<LedgerRecord[]>;
  /** Everything stored, every column or line, for scanning. */
  raw(): Promise<unknown>;
  /** Change one field of the record at a position, behind the ledger's back. */
  alter(seq: number, field: "reply", value: string): Promise<void>;
  /** Remove the record at a position, behind the ledger's back. */
  remove(seq: number): Promise<void>;
  /** Another instance on the same storage (a restart, a second instance); absent for memory. */
  another?(hasher?: NumberHasher): ConsentLedger;
}

interface Subject {
  name: string;
  open(hasher?: NumberHasher): Promise<Opened>;
}

const toClose: ConsentLedger[] = [];
const tables: string[] = [];
function track<L extends ConsentLedger>(l: L): L {
  toClose.push(l);
  return l;
}
afterEach(async () => {
  await Promise.all(toClose.splice(0).map((l) => l.close().catch(() => undefined)));
});
afterAll(async () => {
  for (const t of tables) await dropTable(t);
});

function tempPath(): string {
  return join(mkdtempSync(join(tmpdir(), "ledger-chain-")), "ledger.jsonl");
}

async function readFileRecords(path: string): Promise<LedgerRecord[]> {
  const contents = await readLedgerFile(path);
  expect(contents.problems).toEqual([]);
  expect(contents.tornTail).toBeUndefined();
  return contents.records;
}

/** Rewrites the ledger file line by line, as someone with a text editor would. */
function editLines(path: string, edit: (lines: string[]) => string[]): void {
  const lines = readFileSync(path, "utf8").split("\n").filter(Boolean);
  writeFileSync(path, edit(lines).join("\n") + "\n");
}

const fileSubject: Subject = {
  name: "file",
  async open(hasher) {
    const path = tempPath();
    const make = (h?: NumberHasher) => track(new FileLedger(path, { hasher: h ?? hasher, notice: () => undefined }));
    return {
      ledger: make(),
      read: () => readFileRecords(path),
      raw: async () => readFileSync(path, "utf8"),
      alter: async (seq, field, value) =>
        editLines(path, (lines) =>
          lines.map((l) => {
            const r = JSON.parse(l) as LedgerRecord;
            return r.seq === seq ? JSON.stringify({ ...r, [field]: value }) : l;
          }),
        ),
      remove: async (seq) => editLines(path, (lines) => lines.filter((l) => (JSON.parse(l) as LedgerRecord).seq !== seq)),
      another: make,
    };
  },
};

function pgLedger(table: string, hasher?: NumberHasher): PostgresLedger {
  if (!tables.includes(table)) tables.push(table);
  return track(new PostgresLedger({ connectionString: TEST_DATABASE_URL, table, hasher, connectionTimeoutMs: 5000 }));
}

const postgresSubject: Subject = {
  name: "postgres",
  async open(hasher) {
    await requirePostgres();
    const table = uniqueTable("chain");
    const make = (h?: NumberHasher) => pgLedger(table, h ?? hasher);
    const reader = make();
    return {
      ledger: make(),
      read: () => reader.query(),
      // Every column of every row, as PostgreSQL prints it, and the chain head.
      raw: async () => [await sql(`SELECT t::text AS row, t.* FROM "${table}" t`), await sql(`SELECT * FROM "${table}_head"`)],
      alter: async (seq, field, value) => void (await sql(`UPDATE "${table}" SET ${field} = $1 WHERE pos = $2`, [value, seq])),
      remove: async (seq) => void (await sql(`DELETE FROM "${table}" WHERE pos = $1`, [seq])),
      another: make,
    };
  },
};

const memorySubject: Subject = {
  name: "memory",
  async open(hasher) {
    const ledger = new MemoryLedger(hasher);
    const index = (seq: number) => ledger.records.findIndex((r) => r.seq === seq);
    return {
      ledger,
      read: async () => ledger.records.map((r) => ({ ...r })),
      raw: async () => JSON.stringify(ledger.records),
      alter: async (seq, field, value) => void ledger.records.splice(index(seq), 1, { ...ledger.records[index(seq)]!, [field]: value }),
      remove: async (seq) => void ledger.records.splice(index(seq), 1),
    };
  },
};

describe.each([fileSubject, postgresSubject, memorySubject])("the chain: $name ledger", (subject) => {
  it("records come back chained: positions 1..n, each prev the digest of the record before, verify ok", async () => {
    const s = await subject.open();
    // Two calls at once, each in its own order.
    await Promise.all([appendAll(s.ledger, callRecords("call-a")), appendAll(s.ledger, callRecords("call-b", { number: "4917612345678", from: 1 }))]);
    const records = await s.read();
    expect(records).toHaveLength(8);
    expectOneChain(records);
    expect(records[0]!.prev).toBe(GENESIS);
    const report = expectVerified(records);
    expect(report).toMatchObject({ records: 8, pending: [], erased: 0, legacy: { records: 0, sha256Numbers: 0 } });
    for (const callId of ["call-a", "call-b"]) {
      expect(records.filter((r) => r.callId === callId).map((r) => r.kind)).toEqual(["consent_asked", "consent_given", "sms_approved", "sms_handed_over"]);
    }
  });

  it("the same id appended twice, in turn or at once, is stored once (the first write kept)", async () => {
    const s = await subject.open();
    const [asked, given] = callRecords("dup");
    await s.ledger.append(asked!);
    // A retried write a moment later: same id, other content. Not written again.
    await s.ledger.append({ ...asked!, at: at(30), question: "changed on retry" });
    await Promise.all([...Array.from({ length: 8 }, () => s.ledger.append(given!)), s.ledger.append({ id: "other:t1:consent_asked:0", kind: "consent_asked", callId: "other", at: at(1) })]);
    const records = await s.read();
    expect(records.map((r) => r.id).sort()).toEqual([asked!.id, given!.id, "other:t1:consent_asked:0"].sort());
    expect(records.find((r) => r.id === asked!.id)).toMatchObject({ at: asked!.at, question: asked!.question });
    expectOneChain(records);
    expectVerified(records);
  });

  it("a record changed afterwards is found by verify, naming it and what is wrong", async () => {
    const s = await subject.open();
    const [aAsked, aGiven, aApproved, aHanded] = callRecords("call-a");
    const [bAsked] = callRecords("call-b", { number: "4917612345678" });
    await appendAll(s.ledger, [aAsked!, bAsked!, aGiven!, aApproved!, aHanded!]);
    expectVerified(await s.read());
    // The caller's "Ja, gerne." becomes something else.
    await s.alter(3, "reply", "Ja, und auch an meine Frau.");
    const report = verifyRecords(await s.read(), { now: NOW });
    expect(report.ok).toBe(false);
    expect(report.firstProblem).toEqual({ seq: 3, id: aGiven!.id, callId: "call-a", problem: "its content does not match the digest the next record (position 4) holds: this record (or that link) was changed" });
    expect(report.problems).toHaveLength(1);
  });

  it("a record removed afterwards is found by verify, at the first record after the gap", async () => {
    const s = await subject.open();
    const [aAsked, aGiven, aApproved, aHanded] = callRecords("call-a");
    const [bAsked] = callRecords("call-b", { number: "4917612345678" });
    await appendAll(s.ledger, [aAsked!, bAsked!, aGiven!, aApproved!, aHanded!]);
    await s.remove(2);
    const report = verifyRecords(await s.read(), { now: NOW });
    expect(report.ok).toBe(false);
    expect(report.firstProblem).toEqual({ seq: 3, id: aGiven!.id, callId: "call-a", problem: "position 3 follows 1: 1 record(s) missing" });
    expect(report.problems).toHaveLength(1);
  });

  it("one record removed and a later one changed: verify names the gap first, then the change", async () => {
    const s = await subject.open();
    const [aAsked, aGiven, aApproved, aHanded] = callRecords("call-a");
    const [bAsked] = callRecords("call-b", { number: "4917612345678" });
    await appendAll(s.ledger, [aAsked!, bAsked!, aGiven!, aApproved!, aHanded!]);
    await s.remove(2);
    await s.alter(4, "reply", "Nein.");
    const report = verifyRecords(await s.read(), { now: NOW });
    expect(report.problems.map((p) => [p.seq, p.problem])).toEqual([
      [3, "position 3 follows 1: 1 record(s) missing"],
      [4, "its content does not match the digest the next record (position 5) holds: this record (or that link) was changed"],
    ]);
    expect(report.firstProblem?.seq).toBe(3);
  });

  it("with hashed numbers no record holds the number in digits, each holds its key's id, and matches finds it after a key rotation", async () => {
    const before = NumberHasher.keyed(OLD_KEY);
    const s = await subject.open(before);
    await appendAll(
      s.ledger,
      callRecords("call-h", {
        question: `Darf ich Ihnen die Öffnungszeiten per SMS an +${CALLER} schicken?`,
        reply: "Ja, an die 015112345678 bitte.",
      }),
    );
    let records = await s.read();
    // The key is rotated (a restart with the new key; the old one listed as older).
    const after = NumberHasher.keyed(NEW_KEY, [OLD_KEY]);
    if (s.another) {
      await appendAll(s.another(after), callRecords("call-h2", { from: 60, question: `Darf ich an ${CALLER} schicken?`, reply: `Ja, an ${CALLER}.` }));
      records = await s.read();
    }
    const withNumber = records.filter((r) => r.number !== undefined);
    expect(withNumber.length).toBeGreaterThanOrEqual(4);
    for (const r of withNumber) {
      expect(r.number).toMatch(/^hmac-sha256:[0-9a-f]{64}$/);
      expect(r.keyId).toBe(r.callId === "call-h" ? OLD_KEY.id : NEW_KEY.id);
      expect(after.matches(r.number, CALLER, r.keyId)).toBe(true);
      expect(after.matches(r.number, "4917612345678", r.keyId)).toBe(false);
      expect(after.formsOf(CALLER)).toContain(r.number);
    }
    // Without the old key listed, the records from before the rotation cannot be found.
    const oldRecord = withNumber.find((r) => r.keyId === OLD_KEY.id)!;
    expect(NumberHasher.keyed(NEW_KEY).matches(oldRecord.number, CALLER, oldRecord.keyId)).toBe(false);
    // Text naming the number keeps the placeholder instead.
    expect(records.find((r) => r.id === "call-h:t3:consent_given:0")!.reply).toBe("Ja, an die {number} bitte.");
    // Nowhere in what is stored: not in any field, nor with separators stripped.
    const stored = await s.raw();
    expect(JSON.stringify(stored)).not.toContain(NSN);
    for (const text of stringsIn(stored)) expect(text.replace(/\D/g, ""), text).not.toContain(NSN);
    expectOneChain(records);
    expectVerified(records);
  });
});

describe("the chain: file ledger, several writers", () => {
  it("the same id appended after a restart (a new FileLedger on the same file) is stored once", async () => {
    const path = tempPath();
    const [asked, given] = callRecords("restart");
    const first = new FileLedger(path);
    await first.append(asked!);
    await first.close();
    const second = track(new FileLedger(path));
    await second.append(asked!);
    await second.append(given!);
    const records = await readFileRecords(path);
    expect(records.map((r) => r.id)).toEqual([asked!.id, given!.id]);
    expectOneChain(records);
  });

  it("a second FileLedger on the same file (as the CLI would be) appending between the first's appends keeps one chain", async () => {
    const path = tempPath();
    const a = track(new FileLedger(path));
    const b = track(new FileLedger(path));
    const rec = (id: string): LedgerRecordInput => ({ id, kind: "consent_asked", callId: id, at: at(1) });
    // In turn: each must see what the other wrote.
    for (let i = 0; i < 5; i++) {
      await a.append(rec(`a${i}`));
      await b.append(rec(`b${i}`));
    }
    // At once.
    await Promise.all([...Array.from({ length: 20 }, (_, i) => a.append(rec(`a-at-once-${i}`))), ...Array.from({ length: 20 }, (_, i) => b.append(rec(`b-at-once-${i}`)))]);
    // An id the other instance wrote is not written again.
    await a.append(rec("b0"));
    const records = await readFileRecords(path);
    expect(records).toHaveLength(50);
    expectOneChain(records);
    expectVerified(records);
  });

  it("a writer in another process appending at the same time keeps one chain", async () => {
    const path = tempPath();
    const mine = track(new FileLedger(path));
    await mine.ready();
    const child = spawn(process.execPath, ["--import", "tsx", "test/support/ledgerAppendChild.ts", path, "child", "60"], { stdio: ["pipe", "pipe", "pipe"] });
    try {
      let out = "";
      let err = "";
      const waiting: Array<() => void> = [];
      child.stderr!.setEncoding("utf8").on("data", (d: string) => (err += d));
      child.stdout!.setEncoding("utf8").on("data", (d: string) => {
        out += d;
        for (const w of waiting.splice(0)) w();
      });
      const saw = (word: string) =>
        new Promise<void>((resolve, reject) => {
          const check = () => (out.includes(word) ? resolve() : void waiting.push(check));
          child.once("exit", (code) => setImmediate(() => (out.includes(word) ? resolve() : reject(new Error(`child exited ${code} before "${word}": ${err}`)))));
          check();
        });
      await saw("ready");
      child.stdin!.write("go\n");
      // The child has begun (its first record is written): from here on both write at once.
      await saw("first");
      // Both write at once from here: the child is not done yet when this process begins.
      expect(out).not.toContain("done");
      for (let i = 0; i < 60; i++) await mine.append({ id: `parent-${i}`, kind: "consent_asked", callId: "parent-call", at: new Date().toISOString() });
      await saw("done");
      expect(err).toBe("");
    } finally {
      await stop(child);
    }
    const records = await readFileRecords(path);
    expect(records).toHaveLength(120);
    expectOneChain(records);
    expectVerified(records);
    // Each writer's records in its own order. (Whether they alternate is up to the lock, which
    // is not fair: a writer that takes it again at once may keep it while the other waits.)
    for (const prefix of ["child", "parent"]) expect(records.filter((r) => r.id!.startsWith(prefix)).map((r) => r.id)).toEqual(Array.from({ length: 60 }, (_, i) => `${prefix}-${i}`));
  }, 30_000);

  it("a stale lock file (its holder's pid is gone) is removed and does not block; a live holder's lock does", async () => {
    const path = tempPath();
    const ledger = track(new FileLedger(path, { lockWaitMs: 300 }));
    await ledger.ready();
    const lock = lockPathOf(path);

    // A lock a process left when it was killed mid-append.
    const dead = spawnSync(process.execPath, ["-e", ""]).pid!;
    await waitGone(dead, 2000);
    writeFileSync(lock, String(dead));
    // Resolves: a lock taken as live would have made it fail after lockWaitMs (as below).
    await ledger.append({ id: "after-stale", kind: "consent_asked", callId: "c", at: at(1) });
    expect(() => readFileSync(lock)).toThrow(/ENOENT/);

    // A lock held by a process that is alive: the append waits, then fails (the gate refuses the send).
    const holder = spawn("sleep", ["30"], { stdio: "ignore" });
    try {
      writeFileSync(lock, String(holder.pid));
      await expect(ledger.append({ id: "while-held", kind: "consent_asked", callId: "c", at: at(2) })).rejects.toThrow(FileLockTimeout);
      await expect(ledger.append({ id: "while-held", kind: "consent_asked", callId: "c", at: at(2) })).rejects.toThrow(new RegExp(`held for over 300 ms \\(by pid ${holder.pid}\\)`));
    } finally {
      await stop(holder);
    }
    // Its holder gone, the same lock is stale: the append goes through.
    await ledger.append({ id: "holder-gone", kind: "consent_asked", callId: "c", at: at(3) });
    const records = await readFileRecords(path);
    expect(records.map((r) => r.id)).toEqual(["after-stale", "holder-gone"]);
    expectOneChain(records);
  });

  it("several writers finding the same stale lock at once: only one removes it, the chain does not fork", async () => {
    const dead = spawnSync(process.execPath, ["-e", ""]).pid!;
    await waitGone(dead, 2000);
    // Each round: a stale lock, six writers arriving at once. Before the breaker file, about one
    // round in fifteen forked the chain (two records at one position).
    for (let round = 0; round < 40; round++) {
      const path = tempPath();
      const writers = Array.from({ length: 6 }, () => track(new FileLedger(path)));
      await Promise.all(writers.map((w) => w.ready()));
      writeFileSync(lockPathOf(path), String(dead));
      await Promise.all(writers.map((w, i) => w.append({ id: `r${round}-w${i}`, kind: "consent_asked", callId: "c", at: at(i) })));
      const records = await readFileRecords(path);
      expect(records.map((r) => r.seq), `round ${round}`).toEqual([1, 2, 3, 4, 5, 6]);
      expectOneChain(records);
      await Promise.all(writers.map((w) => w.close()));
    }
  }, 30_000);

  it("a legacy file (records without id or prev, sha256: numbers) followed by new appends verifies, the legacy counted", async () => {
    const path = tempPath();
    const legacyNumber = LEGACY_PREFIX + createHash("sha256").update(CALLER).digest("hex");
    const legacy = [
      { seq: 1, kind: "consent_asked", callId: "old", at: at(1), number: legacyNumber, question: "Darf ich?" },
      { seq: 2, kind: "consent_given", callId: "old", at: at(3), number: legacyNumber, reply: "Ja" },
      { seq: 3, kind: "sms_sent", callId: "old", at: at(4), number: legacyNumber, question: "Darf ich?", reply: "Ja", outcome: "sent" },
      { seq: 4, kind: "consent_declined", callId: "old2", at: at(5), reply: "Nein" },
    ];
    writeFileSync(path, legacy.map((r) => JSON.stringify(r)).join("\n") + "\n", { mode: 0o600 });
    const ledger = track(new FileLedger(path, { hasher: NumberHasher.keyed(NEW_KEY) }));
    await appendAll(ledger, callRecords("new", { from: 10 }));
    const records = await readFileRecords(path);
    expect(records.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    // The chain starts after the last legacy record, linked to its digest.
    expectLinked(records.slice(3));
    const report = expectVerified(records);
    expect(report.legacy).toEqual({ records: 4, sha256Numbers: 3 });
    // Legacy numbers stay findable.
    expect(NumberHasher.keyed(NEW_KEY).matches(records[0]!.number, CALLER)).toBe(true);
  });
});

describe("the chain: PostgreSQL, several instances", () => {
  beforeEach(async () => {
    await requirePostgres();
  });

  it("the same id from two PostgresLedger instances at once is stored once", async () => {
    const table = uniqueTable("twice");
    const [a, b] = [pgLedger(table), pgLedger(table)];
    await Promise.all([a.ready(), b.ready()]);
    const [asked, given] = callRecords("two");
    await Promise.all([a.append(asked!), b.append(asked!), a.append(asked!), b.append(asked!)]);
    await Promise.all([a.append(given!), b.append(given!)]);
    const records = await a.query();
    expect(records.map((r) => r.id)).toEqual([asked!.id, given!.id]);
    expectOneChain(records);
    expectVerified(records);
  });

  it("four instances (separate pools) appending at once keep one chain: positions 1..N, no duplicates, verify ok", async () => {
    const table = uniqueTable("four");
    const four = Array.from({ length: 4 }, () => pgLedger(table));
    await Promise.all(four.map((l) => l.ready()));
    const rec = (id: string): LedgerRecordInput => ({ id, kind: "consent_asked", callId: id, at: new Date().toISOString(), number: CALLER });
    // Each instance its own 40 records, and all four the same 5 (a turn run again on another instance).
    await Promise.all(four.map((l, i) => Promise.all([...Array.from({ length: 40 }, (_, j) => l.append(rec(`i${i}-${j}`))), ...Array.from({ length: 5 }, (_, k) => l.append(rec(`shared-${k}`)))])));
    const records = await four[0]!.query();
    expect(records).toHaveLength(165);
    expectOneChain(records);
    expectVerified(records);
    const ids = new Set(records.map((r) => r.id));
    for (let i = 0; i < 4; i++) for (let j = 0; j < 40; j++) expect(ids.has(`i${i}-${j}`)).toBe(true);
    // The head row is the last record.
    expect(await sql(`SELECT pos, digest FROM "${table}_head"`)).toEqual([{ pos: "165", digest: independentDigest(records.at(-1)!) }]);
  });

  it("a legacy table (rows without id or prev, sha256: numbers) followed by new appends verifies, the legacy counted", async () => {
    const table = uniqueTable("legacy");
    tables.push(table);
    // The table as the ledger created it before the chain.
    await sql(`CREATE TABLE "${table}" (seq bigserial PRIMARY KEY, kind text NOT NULL, call_id text NOT NULL, at timestamptz NOT NULL, number text, question text, reply text, outcome text, model text, message text, consent_asked_at timestamptz, consent_answered_at timestamptz, detail text)`);
    const legacyNumber = LEGACY_PREFIX + createHash("sha256").update(CALLER).digest("hex");
    for (const [kind, callId, second, number, reply] of [
      ["consent_asked", "old", 1, legacyNumber, null],
      ["consent_given", "old", 3, legacyNumber, "Ja"],
      ["sms_sent", "old", 4, legacyNumber, "Ja"],
      ["consent_declined", "old2", 5, null, "Nein"],
    ] as const) {
      await sql(`INSERT INTO "${table}" (kind, call_id, at, number, reply) VALUES ($1, $2, $3, $4, $5)`, [kind, callId, at(second), number, reply]);
    }
    const ledger = pgLedger(table, NumberHasher.keyed(NEW_KEY));
    await appendAll(ledger, callRecords("new", { from: 10 }));
    const records = await ledger.query();
    expect(records.map((r) => [r.seq, r.kind])).toEqual([
      [1, "consent_asked"],
      [2, "consent_given"],
      [3, "sms_sent"],
      [4, "consent_declined"],
      [5, "consent_asked"],
      [6, "consent_given"],
      [7, "sms_approved"],
      [8, "sms_handed_over"],
    ]);
    expectLinked(records.slice(3));
    const report = expectVerified(records);
    expect(report.legacy).toEqual({ records: 4, sha256Numbers: 3 });
    expect(NumberHasher.keyed(NEW_KEY).matches(records[0]!.number, CALLER)).toBe(true);
  });

  it("every field of a record round-trips through PostgreSQL (and the file) with the same digest (property)", async () => {
    const table = uniqueTable("fields");
    const pgWriter = pgLedger(table);
    // inChain (used below for erased records, as the CLI uses it) does not create the table.
    await pgWriter.ready();
    const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await client.connect();
    const path = tempPath();
    const fileWriter = track(new FileLedger(path));
    const hasher = NumberHasher.full();
    // Any text a caller, the model or the config may put in a record: unicode, quotes, newlines,
    // control characters. Not NUL: PostgreSQL text cannot hold it (such an append is refused, see below).
    const text = fc.oneof(fc.string({ unit: "grapheme", maxLength: 30 }), fc.string({ unit: "binary-ascii", maxLength: 30 })).map((s) => s.replaceAll("\u0000", ""));
    const time = fc
      .tuple(fc.date({ min: new Date("1971-01-01T00:00:00Z"), max: new Date("2099-12-31T00:00:00Z"), noInvalidDate: true }), fc.boolean())
      .map(([d, offset]) => (offset ? new Date(d.getTime() + 2 * 3_600_000).toISOString().replace("Z", "+02:00") : d.toISOString()));
    const maintenance = fc.record({ through: fc.integer(), digest: text, count: fc.nat(), before: time, ids: fc.array(text, { maxLength: 4 }) }, { requiredKeys: [] });
    const record = fc.record(
      {
        // Not an anchor: only a purge writes one, as the chain's first record (its own tests); an
        // anchor appended here would be reported by verify as one without the purged digest.
        kind: fc.constantFrom(...LEDGER_KINDS.filter((k) => k !== "anchor")),
        callId: text,
        at: time,
        number: text,
        question: text,
        reply: text,
        outcome: text,
        model: text,
        message: text,
        consentAskedAt: time,
        consentAnsweredAt: time,
        detail: text,
        ref: text,
        reason: text,
        maintenance,
      },
      { requiredKeys: ["kind", "callId", "at"] },
    );
    let n = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(record, fc.boolean()), { minLength: 1, maxLength: 4 }), async (batch) => {
        const inputs: Array<{ input: LedgerRecordInput; erase: boolean }> = batch.map(([r, erase]) => ({ input: { id: `prop-${++n}`, ...r }, erase }));
        for (const { input, erase } of inputs) {
          if (!erase) {
            await pgWriter.append(input);
            await fileWriter.append(input);
            continue;
          }
          // An erased record as an erasure writes it: personal fields gone, the digest kept (PostgreSQL only: the file is rewritten by the CLI).
          await pgWriter.inChain(async (client, head) => {
            const t = tombstone(sealRecord(prepareRecord(input, hasher), head.pos + 1, head.digest), "erasure-1");
            await pgWriter.insert(client, t);
            await pgWriter.moveHead(client, t);
          });
        }
        const ids = inputs.map((i) => i.input.id);
        const rows = (await client.query<Parameters<typeof toRecord>[0]>(`SELECT * FROM "${table}" WHERE id = ANY($1) ORDER BY pos`, [ids])).rows.map(toRecord);
        const lines = (await readFileRecords(path)).filter((r) => ids.includes(r.id!));
        expect(rows.map((r) => r.id)).toEqual(ids);
        for (const [i, { input, erase }] of inputs.entries()) {
          const got = rows[i]!;
          // Prepared anew, the record gets a salt of its own: the stored one is taken over (an erased record keeps only the hash it salted).
          const sealed = { ...sealRecord(prepareRecord(input, hasher), got.seq, got.prev!), ...(got.salt ? { salt: got.salt } : {}) };
          const expected = erase ? { ...tombstone(sealed, "erasure-1"), erased: { ...got.erased!, by: "erasure-1" } } : sealed;
          expect(got).toEqual(expected);
          expect(digestOf(got)).toBe(digestOf(expected));
          expect(independentDigest(got)).toBe(digestOf(got));
          if (!erase) {
            const line = lines.find((l) => l.id === input.id)!;
            expect(line).toEqual({ ...sealRecord(prepareRecord(input, hasher), line.seq, line.prev!), ...(line.salt ? { salt: line.salt } : {}) });
            expect(independentDigest(line)).toBe(digestOf(line));
          }
        }
      }),
      { numRuns: 30 },
    ).finally(() => client.end());
    // The whole table is still one chain (erased records keep their digest).
    const all = await pgWriter.query();
    expectOneChain(all);
    expectOneChain(await readFileRecords(path));
    expect(verifyRecords(all).problems.filter((p) => /position|digest|stored twice/.test(p.problem))).toEqual([]);
  }, 120_000);

  it("a record holding NUL (which PostgreSQL text cannot store) is refused, not stored altered", async () => {
    const ledger = pgLedger(uniqueTable("nul"));
    await expect(ledger.append({ id: "nul", kind: "consent_given", callId: "c", at: at(1), reply: "Ja\u0000" })).rejects.toThrow(/record not written/);
    expect(await ledger.query()).toEqual([]);
  });
});

/** Kills a child and waits for its exit (reaped: a zombie would still answer kill(pid, 0)). */
async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGKILL");
  await exited;
  expect(child.pid && isRunning(child.pid)).toBe(false);
}
