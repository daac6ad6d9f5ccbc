import { createHmac } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { loadConfigFile } from "../src/appConfig.js";
import { createLedger, describeLedger } from "../src/ledger/createLedger.js";
import { digestOf, GENESIS } from "../src/ledger/chain.js";
import { FileLedger } from "../src/ledger/fileLedger.js";
import type { LedgerRecordInput } from "../src/ledger/ledger.js";
import { HMAC_PREFIX, HashKeyError, MIN_SECRET_LENGTH, NumberHasher } from "../src/ledger/numberHash.js";
import { verifyRecords } from "../src/ledger/verify.js";
import { PostgresLedger } from "../src/ledger/postgresLedger.js";
import { ScriptedModel } from "../src/llm/scriptedModel.js";
import { createService } from "../src/service.js";
import { ev } from "./support/events.js";
import { TEST_DATABASE_URL, dropTable, requirePostgres, sql, uniqueTable } from "./support/postgres.js";
import { ManualClock } from "../src/engine/clock.js";

const NUMBER = "4915112345678";
const UNREACHABLE = "postgres://postgres@127.0.0.1:1/test";
const tables: string[] = [];
const open: PostgresLedger[] = [];

const KEY = { id: "2026-12", secret: "k".repeat(MIN_SECRET_LENGTH) };
/** The stored form of a number under KEY, computed here independently of numberHash.ts. */
const hmacOf = (number: string) => HMAC_PREFIX + createHmac("sha256", KEY.secret).update(number).digest("hex");
/** The approval kind the gate writes: `sms_sent` before the approval/handover records, `sms_approved` after. */
function ledger(opts: { table?: string; hasher?: NumberHasher; url?: string } = {}): PostgresLedger {
  const table = opts.table ?? uniqueTable("pg");
  if (!tables.includes(table)) tables.push(table);
  const l = new PostgresLedger({ connectionString: opts.url ?? TEST_DATABASE_URL, table, hasher: opts.hasher, connectionTimeoutMs: 3000 });
  open.push(l);
  return l;
}

const sent: LedgerRecordInput = {
  id: "call-1:t3:sms_approved:0",
  kind: "sms_approved",
  callId: "call-1",
  at: "2026-11-23T09:00:07.000Z",
  number: NUMBER,
  question: "Darf ich Ihnen die Informationen per SMS an die Nummer 0 1 5 1 1, 2 3 4, 5 6, 7 8 schicken?",
  reply: "Ja, gerne.",
  consentAskedAt: "2026-11-23T09:00:03.000Z",
  consentAnsweredAt: "2026-11-23T09:00:07.000Z",
  message: "Praxis Dr. Muster: Öffnungszeiten: Mo-Fr 8-12 Uhr, Di und Do auch 15-18 Uhr. Antworten auf diese SMS werden nicht gelesen.",
  outcome: "approved",
  model: "gpt-4o-mini",
  ref: "call-1:t3:consent_given:0",
};

beforeEach(async () => {
  await requirePostgres();
});

afterAll(async () => {
  await Promise.all(open.map((l) => l.close().catch(() => undefined)));
  for (const t of tables) await dropTable(t);
});

describe("PostgresLedger", () => {
  it("ready() creates the append-only table with its indexes, idempotently and safely in parallel", async () => {
    const table = uniqueTable("ready");
    const [a, b, c] = [ledger({ table }), ledger({ table }), ledger({ table })];
    // Three instances starting at once against a fresh database must not race on CREATE TABLE.
    await Promise.all([a.ready(), b.ready(), c.ready()]);
    await a.ready();
    await ledger({ table }).ready();

    const cols = await sql<{ column_name: string; data_type: string }>(
      "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position",
      [table],
    );
    expect(cols.map((c) => [c.column_name, c.data_type])).toEqual([
      ["seq", "bigint"],
      ["kind", "text"],
      ["call_id", "text"],
      ["at", "timestamp with time zone"],
      ["number", "text"],
      ["question", "text"],
      ["reply", "text"],
      ["outcome", "text"],
      ["model", "text"],
      ["message", "text"],
      ["consent_asked_at", "timestamp with time zone"],
      ["consent_answered_at", "timestamp with time zone"],
      ["detail", "text"],
      // The chain's columns, added to a table from before the chain too.
      ["pos", "bigint"],
      ["id", "text"],
      ["prev", "text"],
      ["key_id", "text"],
      ["ref", "text"],
      ["reason", "text"],
      ["erased", "jsonb"],
      ["maintenance", "jsonb"],
      ["salt", "text"],
      // Who judged a consent answer: a listed rule or the model (issue 21, point 4).
      ["decided_by", "text"],
      ["rule", "text"],
    ]);
    const idx = await sql<{ indexdef: string }>("SELECT indexdef FROM pg_indexes WHERE tablename = $1", [table]);
    expect(idx.some((i) => /\(at\)/.test(i.indexdef))).toBe(true);
    expect(idx.some((i) => /\(call_id\)/.test(i.indexdef))).toBe(true);
    // One record per chain position and per id, enforced by the database as well.
    expect(idx.some((i) => /CREATE UNIQUE INDEX .*\(pos\)/.test(i.indexdef))).toBe(true);
    expect(idx.some((i) => /CREATE UNIQUE INDEX .*\(id\)/.test(i.indexdef))).toBe(true);
    // The chain head: one row, at the start of the chain.
    expect(await sql(`SELECT pos, digest FROM "${table}_head"`)).toEqual([{ pos: "0", digest: GENESIS }]);

    // ready() on an existing table keeps its rows.
    await a.append(sent);
    await ledger({ table }).ready();
    expect(await a.query()).toHaveLength(1);
    expect(await sql(`SELECT pos, digest FROM "${table}_head"`)).toEqual([{ pos: "1", digest: digestOf((await a.query())[0]!) }]);
  });

  it("append resolves once the row is committed: another connection sees it at once", async () => {
    const l = ledger();
    await l.ready();
    await l.append(sent);
    const rows = await sql(`SELECT * FROM "${l.table}"`);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ pos: "1", id: sent.id, kind: "sms_approved", call_id: "call-1", number: NUMBER, reply: "Ja, gerne.", ref: sent.ref, prev: GENESIS });
  });

  it("query returns the records as written (absent fields left out), in order, filtered by from <= at < to", async () => {
    const l = ledger();
    // append without ready(): the table is created on first use.
    const asked: LedgerRecordInput = { id: "call-1:t2:consent_asked:0", kind: "consent_asked", callId: "call-1", at: "2026-11-23T09:00:03.000Z", number: NUMBER, question: sent.question };
    const failed: LedgerRecordInput = { id: "call-2:t4:sms_failed:0", kind: "sms_failed", callId: "call-2", at: "2027-01-01T00:00:00.000Z", number: NUMBER, outcome: "unknown", detail: 'quote " comma , newline \n' };
    await l.append(asked);
    await l.append(sent);
    await l.append(failed);

    const all = await l.query();
    // Each record as written, with its place in the chain and the digest of the record before it.
    // Each with a random salt of its own (the hash an erasure keeps of its personal fields is salted).
    const salt = expect.stringMatching(/^[0-9a-f]{32}$/) as unknown as string;
    expect(all).toEqual([
      { seq: 1, ...asked, prev: GENESIS, salt },
      { seq: 2, ...sent, prev: digestOf(all[0]!), salt },
      { seq: 3, ...failed, prev: digestOf(all[1]!), salt },
    ]);
    expect(await l.query(new Date("2026-11-23T09:00:07.000Z"))).toEqual([all[1], all[2]]);
    expect(await l.query(new Date("2026-01-01T00:00:00Z"), new Date("2027-01-01T00:00:00.000Z"))).toEqual([all[0], all[1]]);
    expect(await l.query(undefined, new Date("2026-11-23T09:00:03.001Z"))).toEqual([all[0]]);
    expect(await l.query(new Date("2030-01-01T00:00:00Z"))).toEqual([]);
  });

  it("takes concurrent appends from many calls: every record lands once, at positions 1..40 of one chain", async () => {
    const l = ledger();
    await l.ready();
    await Promise.all(Array.from({ length: 40 }, (_, i) => l.append({ id: `c${i}:t1:consent_asked:0`, kind: "consent_asked", callId: `c${i}`, at: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString() })));
    const rows = await l.query();
    expect(rows).toHaveLength(40);
    expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    expect(new Set(rows.map((r) => r.callId)).size).toBe(40);
    expect(verifyRecords(rows).problems).toEqual([]);
  });

  it("stores a keyed hash (HMAC-SHA-256) and the key's id instead of the number when ledger.numbers is hashed; text naming the number holds {number}", async () => {
    const l = ledger({ hasher: NumberHasher.keyed(KEY) });
    await l.append({ ...sent, question: "Darf ich Ihnen die Informationen per SMS an die 015112345678 schicken?", reply: "Ja, an +4915112345678." });
    await l.append({ id: "c2:t1:consent_declined:0", kind: "consent_declined", callId: "c2", at: "2026-11-23T10:00:00.000Z" });
    const dump = JSON.stringify(await sql(`SELECT * FROM "${l.table}"`));
    expect(dump).not.toContain("15112345678");
    const [first, second] = await l.query();
    expect(first!.number).toBe(hmacOf(NUMBER));
    expect(first!.keyId).toBe(KEY.id);
    expect(first!.question).toBe("Darf ich Ihnen die Informationen per SMS an die {number} schicken?");
    expect(first!.reply).toBe("Ja, an {number}.");
    expect(second!.number).toBeUndefined();
    expect(second!.keyId).toBeUndefined();
  });

  it("purge removes the chain's prefix with at < before, leaving an anchor and a purge record", async () => {
    const l = ledger();
    for (const at of ["2020-01-01T00:00:00.000Z", "2021-06-30T23:59:59.999Z", "2021-07-01T00:00:00.000Z", "2026-11-23T09:00:07.000Z"]) {
      await l.append({ ...sent, id: `purge-${at}`, at });
    }
    expect(await l.purge(new Date("2021-07-01T00:00:00.000Z"), new Date("2026-12-01T00:00:00.000Z"))).toEqual({ deleted: 2, through: 2 });
    const after = await l.query();
    expect(after.map((r) => [r.kind, r.at])).toEqual([
      ["anchor", "2021-06-30T23:59:59.999Z"],
      [sent.kind, "2021-07-01T00:00:00.000Z"],
      [sent.kind, "2026-11-23T09:00:07.000Z"],
      ["purge", "2026-12-01T00:00:00.000Z"],
    ]);
    // Only the anchor is old now: nothing more to remove.
    expect(await l.purge(new Date("2021-07-01T00:00:00.000Z"))).toEqual({ deleted: 0 });
  });

  it("rejects ready() and append() when the server is unreachable, naming the target without a password", async () => {
    const l = new PostgresLedger({ connectionString: "postgres://postgres:s3cret@127.0.0.1:1/test", connectionTimeoutMs: 2000 });
    await expect(l.ready()).rejects.toThrow(/consent ledger postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:1\/test table consent_ledger is not available: .*ECONNREFUSED/);
    await expect(l.append(sent)).rejects.toThrow(/not available/);
    await expect(l.ready()).rejects.not.toThrow(/s3cret/);
    await l.close();
    await expect(l.append(sent)).rejects.toThrow(/closed/);
  });

  it("an invalid table name is refused before any SQL is built", () => {
    expect(() => new PostgresLedger({ connectionString: TEST_DATABASE_URL, table: 'x"; DROP TABLE y; --' })).toThrow(/invalid ledger table name/);
    expect(() => new PostgresLedger({ connectionString: TEST_DATABASE_URL, table: "a".repeat(64) })).toThrow(/invalid ledger table name/);
  });

  it("query and purge do not create the table and say which table is missing", async () => {
    const l = ledger();
    await expect(l.query()).rejects.toThrow(new RegExp(`table ${l.table}: query failed: relation "${l.table}" does not exist`));
    await expect(l.purge(new Date())).rejects.toThrow(new RegExp(`table ${l.table}: purge failed: relation "${l.table}" does not exist`));
    await expect(l.erase("4915112345678")).rejects.toThrow(/erasure failed: relation .* does not exist/);
  });
});

describe("createLedger", () => {
  const config = loadConfigFile("config/agent.yaml");

  it("PostgreSQL when DATABASE_URL is set (table from LEDGER_TABLE), else the file at ledger.path", async () => {
    const table = uniqueTable("factory");
    tables.push(table);
    const hashed = { ...config, ledger: { ...config.ledger, numbers: "hashed" as const } };
    const pgLedger = createLedger(hashed, { DATABASE_URL: TEST_DATABASE_URL, LEDGER_TABLE: table, LEDGER_HASH_KEY: `${KEY.id}:${KEY.secret}` });
    expect(pgLedger).toBeInstanceOf(PostgresLedger);
    expect(describeLedger(pgLedger)).toBe(`PostgreSQL table ${table}`);
    await pgLedger.ready();
    await pgLedger.append(sent);
    expect((await (pgLedger as PostgresLedger).query())[0]).toMatchObject({ number: hmacOf(NUMBER), keyId: KEY.id });
    await pgLedger.close();
    // Hashed numbers without a key: refused before anything connects, in one line naming the variable.
    expect(() => createLedger(hashed, { DATABASE_URL: TEST_DATABASE_URL, LEDGER_TABLE: table })).toThrow(HashKeyError);
    expect(() => createLedger(hashed, { DATABASE_URL: TEST_DATABASE_URL, LEDGER_TABLE: table })).toThrow(/^ledger\.numbers is hashed but LEDGER_HASH_KEY is not set/);

    expect((createLedger(config, { DATABASE_URL: TEST_DATABASE_URL }) as PostgresLedger).table).toBe("consent_ledger");

    const path = join(mkdtempSync(join(tmpdir(), "ledger-factory-")), "l.jsonl");
    for (const env of [{}, { DATABASE_URL: "" }, { DATABASE_URL: "  " }]) {
      const fileLedger = createLedger({ ...config, ledger: { ...config.ledger, path } }, env);
      expect(fileLedger).toBeInstanceOf(FileLedger);
      expect(describeLedger(fileLedger)).toBe(`file ${path}`);
      await fileLedger.close();
    }
  });
});

describe("the service with a PostgreSQL ledger that fails", () => {
  const config = loadConfigFile("config/agent.yaml");
  const call = async (ledgerUnderTest: PostgresLedger, id: string, beforeYes?: () => Promise<void>) => {
    const service = createService({
    // Deadlines (server.answerWithinMs) move only when told: no answer depends on machine speed.
    clock: new ManualClock(), config, model: new ScriptedModel(), ledger: ledgerUnderTest, logger: pino({ level: "silent" }) });
    const answers: unknown[] = [];
    const post = async (e: object) => {
      const res = await service.app.inject({ method: "POST", url: "/webhook", headers: { "content-type": "application/json" }, payload: JSON.stringify(e) });
      expect(res.statusCode).toBeLessThan(500);
      if (res.body) answers.push(JSON.parse(res.body));
    };
    try {
      for (const e of [ev.start(id), ev.speechEnded(id), ev.speak(id, "Können Sie mir die Öffnungszeiten per SMS schicken?"), ev.speechEnded(id)]) await post(e);
      await beforeYes?.();
      await post(ev.speak(id, "Ja, gerne."));
    } finally {
      await service.close();
    }
    return JSON.stringify(answers);
  };

  it("unreachable from the start: the caller gets an apology, never a send_sms", async () => {
    const out = await call(new PostgresLedger({ connectionString: UNREACHABLE, connectionTimeoutMs: 2000 }), "pg-down");
    expect(out).toContain("Entschuldigung");
    expect(out).not.toContain('"send_sms"');
  });

  it("the sms_approved INSERT fails after consent was recorded: the gate refuses the send", async () => {
    const l = ledger();
    await l.ready();
    const out = await call(l, "pg-fails-at-send", async () => {
      // From now on the database refuses exactly the evidence record of a send.
      await sql(`CREATE FUNCTION "${l.table}_refuse"() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'disk full (simulated)'; END $$`);
      await sql(`CREATE TRIGGER refuse_sent BEFORE INSERT ON "${l.table}" FOR EACH ROW WHEN (NEW.kind = 'sms_approved') EXECUTE FUNCTION "${l.table}_refuse"()`);
    });
    const kinds = (await sql<{ kind: string }>(`SELECT kind FROM "${l.table}" ORDER BY pos`)).map((r) => r.kind);
    await sql(`DROP TABLE "${l.table}", "${l.table}_head"`);
    await sql(`DROP FUNCTION "${l.table}_refuse"()`);
    expect(kinds).toEqual(["consent_asked", "consent_given"]); // consent was recorded; only the evidence of the send failed
    expect(out).not.toContain('"send_sms"');
  });

  it("the same call with a healthy ledger does send (so the refusal above is the ledger's doing)", async () => {
    const l = ledger();
    await l.ready();
    const out = await call(l, "pg-healthy");
    expect(out).toContain('"send_sms"');
    // The service closed its ledger: read the table with another instance.
    const records = await ledger({ table: l.table }).query();
    const kinds = records.map((r) => r.kind);
    // The approval before the send left; its handover follows the answer's write (when it made it before the service closed).
    expect(kinds.slice(0, 3)).toEqual(["consent_asked", "consent_given", "sms_approved"]);
    expect(kinds.slice(3)).toEqual(kinds.length > 3 ? ["sms_handed_over"] : []);
    expect(verifyRecords(records).problems).toEqual([]);
  });
});
