import pg from "pg";
import { ConfigError } from "../core/errors.js";
import { digestOf, GENESIS, LedgerRecordError, prepareRecord, sealRecord, type Redactor } from "./chain.js";
import { planErasure, planPurge } from "./maintenance.js";
import { LedgerUnavailableError, type ConsentLedger, type LedgerKind, type LedgerRecord, type LedgerRecordInput, type MaintenanceFacts, type OptOutBy, type OptOutChange, type OptOutEntry, type OptOutResult } from "./ledger.js";
import { NumberHasher } from "./numberHash.js";
import { optOutRecord } from "./optOut.js";

export const DEFAULT_LEDGER_TABLE = "consent_ledger";

export interface PostgresLedgerOptions {
  /** `postgres://user:password@host:port/database` (DATABASE_URL). */
  connectionString: string;
  /** How numbers are stored (default: in full). */
  hasher?: NumberHasher;
  /** How text naming the number is stored with hashed numbers. */
  redact?: Redactor;
  /** Table name: letters, digits and `_`, starting with a letter or `_` (at most 56 characters: `<table>_head` holds the chain head, `<table>_optout` the do-not-text list). */
  table?: string;
  /** How long to wait for a connection before `ready()` / `append()` reject. */
  connectionTimeoutMs?: number;
  /** Client-side cap on one statement, so a hanging server cannot hold a caller's turn forever. */
  queryTimeoutMs?: number;
  /** Pool size per instance. */
  maxConnections?: number;
}

interface Row {
  seq: string;
  pos: string | null;
  id: string | null;
  prev: string | null;
  key_id: string | null;
  ref: string | null;
  reason: string | null;
  erased: { digest?: string; personal?: string; by: string } | null;
  salt: string | null;
  maintenance: MaintenanceFacts | null;
  kind: string;
  call_id: string;
  at: Date;
  number: string | null;
  question: string | null;
  reply: string | null;
  outcome: string | null;
  model: string | null;
  message: string | null;
  consent_asked_at: Date | null;
  consent_answered_at: Date | null;
  detail: string | null;
  /** Absent on a row read before the column was added in this connection's view. */
  decided_by?: string | null;
  rule?: string | null;
}

const TABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,55}$/;

/**
 * The consent ledger in PostgreSQL, for several instances sharing one evidence store.
 * Append-only by use: the service only INSERTs; purge and erasure (the CLI) are the only other
 * writes. The hash chain stays one line with several instances writing at once: each append
 * locks the chain-head row (`<table>_head`) in the transaction that inserts the record, so the
 * chain order is the `pos` column (not the `seq` bigserial, whose order concurrent inserts do
 * not follow). `append` resolves after that transaction committed (`synchronous_commit=on`
 * forced for this connection), so the gate's "evidence first" promise holds; any error rejects
 * and the gate refuses the send.
 */
export class PostgresLedger implements ConsentLedger {
  readonly table: string;
  private readonly pool: pg.Pool;
  readonly hasher: NumberHasher;
  private readonly redact: Redactor | undefined;
  private readonly target: string;
  private init: Promise<void> | undefined;
  private closed = false;

  constructor(opts: PostgresLedgerOptions) {
    const table = opts.table ?? DEFAULT_LEDGER_TABLE;
    if (!TABLE_NAME.test(table)) throw new ConfigError(`invalid ledger table name "${table}": use letters, digits and _ (at most 56)`);
    this.table = table;
    this.hasher = opts.hasher ?? NumberHasher.full();
    this.redact = opts.redact;
    this.target = `${redact(opts.connectionString)} table ${table}`;
    this.pool = new pg.Pool({
      connectionString: opts.connectionString,
      connectionTimeoutMillis: opts.connectionTimeoutMs ?? 5000,
      query_timeout: opts.queryTimeoutMs ?? 10_000,
      max: opts.maxConnections ?? 5,
      application_name: "aiflow-sms-agent ledger",
      // The durability promise must not depend on a server or database default of synchronous_commit=off.
      options: "-c synchronous_commit=on",
    });
    // An idle connection dropped by the server must not crash the process; the next query reconnects.
    this.pool.on("error", () => undefined);
  }

  private get ident(): string {
    return `"${this.table}"`;
  }

  private get headIdent(): string {
    return `"${this.table}_head"`;
  }

  private get optOutIdent(): string {
    return `"${this.table}_optout"`;
  }

  /** Connects and creates the table and its indexes if missing; safe to run from several instances at once. */
  ready(): Promise<void> {
    if (this.closed) return Promise.reject(new LedgerUnavailableError(`consent ledger ${this.target} is closed`));
    if (!this.init) {
      this.init = this.createSchema().catch((e: unknown) => {
        this.init = undefined; // a later ready() / append() tries again
        throw new LedgerUnavailableError(`consent ledger ${this.target} is not available: ${errorText(e)}`);
      });
    }
    return this.init;
  }

  private async createSchema(): Promise<void> {
    const client = await this.pool.connect();
    try {
      await client.query("BEGIN");
      // CREATE ... IF NOT EXISTS races between concurrent starters (duplicate pg_type); serialize them.
      await client.query("SELECT pg_advisory_xact_lock(hashtext($1))", [`aiflow-sms-agent ledger ${this.table}`]);
      await client.query(`CREATE TABLE IF NOT EXISTS ${this.ident} (
        seq bigserial PRIMARY KEY,
        kind text NOT NULL,
        call_id text NOT NULL,
        at timestamptz NOT NULL,
        number text,
        question text,
        reply text,
        outcome text,
        model text,
        message text,
        consent_asked_at timestamptz,
        consent_answered_at timestamptz,
        detail text
      )`);
      // Columns of the chained records; a table from before the chain gets them (its rows stay legacy).
      for (const col of ["pos bigint", "id text", "prev text", "key_id text", "ref text", "reason text", "erased jsonb", "maintenance jsonb", "salt text", "decided_by text", "rule text"]) {
        await client.query(`ALTER TABLE ${this.ident} ADD COLUMN IF NOT EXISTS ${col}`);
      }
      await client.query(`CREATE INDEX IF NOT EXISTS "${this.table}_at_idx" ON ${this.ident} (at)`);
      await client.query(`CREATE INDEX IF NOT EXISTS "${this.table}_call_id_idx" ON ${this.ident} (call_id)`);
      await client.query(`CREATE INDEX IF NOT EXISTS "${this.table}_number_idx" ON ${this.ident} (number)`);
      await client.query(`CREATE UNIQUE INDEX IF NOT EXISTS "${this.table}_pos_idx" ON ${this.ident} (pos)`);
      await client.query(`CREATE UNIQUE INDEX IF NOT EXISTS "${this.table}_id_idx" ON ${this.ident} (id)`);
      await client.query(`CREATE TABLE IF NOT EXISTS ${this.headIdent} (one boolean PRIMARY KEY CHECK (one), pos bigint NOT NULL, digest text NOT NULL)`);
      // The do-not-text list: one row per number (as stored), changed only in the transaction that writes its record.
      await client.query(`CREATE TABLE IF NOT EXISTS ${this.optOutIdent} (number text PRIMARY KEY, key_id text, since timestamptz NOT NULL, added_by text NOT NULL, record_id text NOT NULL)`);
      const head = await client.query(`SELECT 1 FROM ${this.headIdent}`);
      if (!head.rowCount) {
        // The chain continues after the last legacy record, if any.
        const last = await client.query<Row>(`SELECT * FROM ${this.ident} ORDER BY ${ORDER_DESC} LIMIT 1`);
        const rec = last.rows[0] ? toRecord(last.rows[0]) : undefined;
        await client.query(`INSERT INTO ${this.headIdent} (one, pos, digest) VALUES (true, $1, $2)`, [rec?.seq ?? 0, rec ? digestOf(rec) : GENESIS]);
      }
      await client.query("COMMIT");
    } catch (e) {
      await client.query("ROLLBACK").catch(() => undefined);
      throw e;
    } finally {
      client.release();
    }
  }

  /**
   * Resolves only after the row is committed. The head row is locked, the id checked (a record
   * already stored is not written again), the record sealed with the head's position and digest,
   * inserted and the head moved, all in one transaction.
   */
  async append(rec: LedgerRecordInput): Promise<void> {
    await this.ready();
    const prepared = prepareRecord(rec, this.hasher, this.redact);
    try {
      await this.inChain(async (client, head) => {
        const dup = await client.query(`SELECT 1 FROM ${this.ident} WHERE id = $1`, [rec.id]);
        if (dup.rowCount) return;
        const sealed = sealRecord(prepared, head.pos + 1, head.digest);
        await this.insert(client, sealed);
        await this.moveHead(client, sealed);
      });
    } catch (e) {
      throw new LedgerUnavailableError(`consent ledger ${this.target}: record not written: ${errorText(e)}`);
    }
  }

  /** Runs `work` in a transaction holding the chain head (serialising every writer of the chain). */
  async inChain<T>(work: (client: pg.PoolClient, head: { pos: number; digest: string }) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    try {
      await client.query("BEGIN");
      const h = await client.query<{ pos: string; digest: string }>(`SELECT pos, digest FROM ${this.headIdent} FOR UPDATE`);
      if (!h.rows[0]) throw new LedgerRecordError(`chain head ${this.table}_head is missing`);
      const out = await work(client, { pos: Number(h.rows[0].pos), digest: h.rows[0].digest });
      await client.query("COMMIT");
      return out;
    } catch (e) {
      await client.query("ROLLBACK").catch(() => undefined);
      throw e;
    } finally {
      client.release();
    }
  }

  /**
   * Whether the number is on the do-not-text list, under any stored form (one indexed lookup).
   * Rejects when the database cannot answer: the gate then refuses the send.
   */
  async optedOut(number: string): Promise<boolean> {
    await this.ready();
    try {
      const res = await this.pool.query(`SELECT 1 FROM ${this.optOutIdent} WHERE number = ANY($1) LIMIT 1`, [this.hasher.formsOf(number)]);
      return (res.rowCount ?? 0) > 0;
    } catch (e) {
      throw new LedgerUnavailableError(`do-not-text list ${this.target}_optout: lookup failed: ${errorText(e)}`);
    }
  }

  /**
   * The change's record and the list row in one transaction holding the chain head: both are
   * there, or neither. Every stored form of the number goes; an addition stores the current form.
   * Taking off a number that is not listed writes nothing.
   */
  async setOptOut(change: OptOutChange): Promise<OptOutResult> {
    await this.ready();
    const prepared = prepareRecord(optOutRecord(change), this.hasher, this.redact);
    const forms = this.hasher.formsOf(change.number);
    try {
      return await this.inChain(async (client, head) => {
        const listed = await client.query(`SELECT 1 FROM ${this.optOutIdent} WHERE number = ANY($1)`, [forms]);
        const wasListed = (listed.rowCount ?? 0) > 0;
        const dup = await client.query(`SELECT 1 FROM ${this.ident} WHERE id = $1`, [change.id]);
        if (dup.rowCount || (!change.add && !wasListed)) return { written: false, wasListed };
        const sealed = sealRecord(prepared, head.pos + 1, head.digest);
        await this.insert(client, sealed);
        await this.moveHead(client, sealed);
        await client.query(`DELETE FROM ${this.optOutIdent} WHERE number = ANY($1)`, [forms]);
        if (change.add) {
          await client.query(`INSERT INTO ${this.optOutIdent} (number, key_id, since, added_by, record_id) VALUES ($1, $2, $3, $4, $5)`, [sealed.number, sealed.keyId ?? null, sealed.at, change.by, change.id]);
        }
        return { written: true, wasListed };
      });
    } catch (e) {
      throw new LedgerUnavailableError(`consent ledger ${this.target}: do-not-text list not changed: ${errorText(e)}`);
    }
  }

  async optOutEntries(): Promise<OptOutEntry[]> {
    await this.ready();
    const res = await this.pool.query<{ number: string; key_id: string | null; since: Date; added_by: OptOutBy; record_id: string }>(
      `SELECT number, key_id, since, added_by, record_id FROM ${this.optOutIdent} ORDER BY since, number`,
    );
    return res.rows.map((r) => ({ number: r.number, ...(r.key_id ? { keyId: r.key_id } : {}), since: r.since.toISOString(), by: r.added_by, record: r.record_id }));
  }

  /** Writes a sealed record (inside `inChain`); `legacy`: placed among the legacy rows, at `seq`. */
  async insert(client: pg.PoolClient, r: LedgerRecord, legacy = false): Promise<void> {
    await client.query(
      `INSERT INTO ${this.ident} (${legacy ? "seq" : "pos"}, id, kind, call_id, at, number, question, reply, outcome, model, message, consent_asked_at, consent_answered_at, detail, prev, key_id, ref, reason, erased, maintenance, salt, decided_by, rule)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)`,
      [
        r.seq,
        r.id ?? null,
        r.kind,
        r.callId,
        r.at,
        r.number ?? null,
        r.question ?? null,
        r.reply ?? null,
        r.outcome ?? null,
        r.model ?? null,
        r.message ?? null,
        r.consentAskedAt ?? null,
        r.consentAnsweredAt ?? null,
        r.detail ?? null,
        r.prev ?? null,
        r.keyId ?? null,
        r.ref ?? null,
        r.reason ?? null,
        r.erased ? JSON.stringify(r.erased) : null,
        r.maintenance ? JSON.stringify(r.maintenance) : null,
        r.salt ?? null,
        r.decidedBy ?? null,
        r.rule ?? null,
      ],
    );
  }

  /** The chain head is now this record (inside `inChain`). */
  async moveHead(client: pg.PoolClient, last: LedgerRecord): Promise<void> {
    await client.query(`UPDATE ${this.headIdent} SET pos = $1, digest = $2`, [last.seq, digestOf(last)]);
  }

  /**
   * Records with `from <= at < to` (either bound may be left out), in append order, shaped like the
   * file ledger's lines (absent fields left out). Does not create the table.
   */
  async query(from?: Date, to?: Date): Promise<LedgerRecord[]> {
    const where: string[] = [];
    const params: Date[] = [];
    if (from) where.push(`at >= $${params.push(from)}`);
    if (to) where.push(`at < $${params.push(to)}`);
    const sql = `SELECT * FROM ${this.ident}${where.length ? ` WHERE ${where.join(" AND ")}` : ""} ORDER BY ${ORDER}`;
    try {
      const res = await this.pool.query<Row>(sql, params);
      return res.rows.map(toRecord);
    } catch (e) {
      throw new LedgerUnavailableError(`consent ledger ${this.target}: query failed: ${errorText(e)}`);
    }
  }

  /** One call's records in append order. */
  async recordsOf(callId: string): Promise<LedgerRecord[]> {
    await this.ready();
    try {
      const res = await this.pool.query<Row>(`SELECT * FROM ${this.ident} WHERE call_id = $1 ORDER BY ${ORDER}`, [callId]);
      return res.rows.map(toRecord);
    } catch (e) {
      throw new LedgerUnavailableError(`consent ledger ${this.target}: query failed: ${errorText(e)}`);
    }
  }

  /**
   * For the CLI's reads and maintenance: the table must exist (they never create an empty ledger
   * where the operator expected one); one from before the chain is brought up to date by ready().
   */
  private async existingTable(): Promise<void> {
    const res = await this.pool.query<{ t: string | null }>("SELECT to_regclass($1) AS t", [this.ident]);
    if (!res.rows[0]?.t) throw new LedgerUnavailableError(`relation "${this.table}" does not exist`);
    await this.ready();
  }

  /** The chain head as PostgreSQL holds it: the last record's position and digest. */
  async head(): Promise<{ seq: number; digest: string }> {
    const res = await this.pool.query<{ pos: string; digest: string }>(`SELECT pos, digest FROM ${this.headIdent}`);
    return { seq: Number(res.rows[0]?.pos ?? 0), digest: res.rows[0]?.digest ?? GENESIS };
  }

  /**
   * Every record in chain order, in batches (a large ledger is never held at once): the legacy
   * rows by `seq`, then the chained rows by `pos`.
   */
  async scan(each: (r: LedgerRecord) => void, batch = 5000): Promise<void> {
    try {
      await this.existingTable();
      let seq = -1;
      for (;;) {
        const res = await this.pool.query<Row>(`SELECT * FROM ${this.ident} WHERE pos IS NULL AND seq > $1 ORDER BY seq LIMIT $2`, [seq, batch]);
        for (const row of res.rows) each(toRecord(row));
        if (res.rows.length < batch) break;
        seq = Number(res.rows.at(-1)!.seq);
      }
      let pos = -1;
      for (;;) {
        const res = await this.pool.query<Row>(`SELECT * FROM ${this.ident} WHERE pos > $1 ORDER BY pos LIMIT $2`, [pos, batch]);
        for (const row of res.rows) each(toRecord(row));
        if (res.rows.length < batch) break;
        pos = Number(res.rows.at(-1)!.pos);
      }
    } catch (e) {
      throw new LedgerUnavailableError(`consent ledger ${this.target}: query failed: ${errorText(e)}`);
    }
  }

  /**
   * Removes the longest prefix of the chain wholly before `before`, leaves the anchor and appends
   * the purge record (maintenance.ts), in one transaction holding the chain head: appends of
   * running instances wait for it and continue the chain after the purge record. Returns how
   * many records were removed.
   */
  async purge(before: Date, now = new Date()): Promise<{ deleted: number; through?: number }> {
    try {
      await this.existingTable();
      return await this.inChain(async (client, head) => {
        // The first record, in chain order, that must stay; everything before it goes.
        const firstKept = await client.query<Row>(`SELECT * FROM ${this.ident} WHERE at >= $1 ORDER BY ${ORDER} LIMIT 1`, [before]);
        const k = firstKept.rows[0];
        const beforeKept = k ? (k.pos === null ? `pos IS NULL AND seq < ${Number(k.seq)}` : `(pos IS NULL OR pos < ${Number(k.pos)})`) : "true";
        const count = await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${this.ident} WHERE ${beforeKept}`);
        const n = Number(count.rows[0]!.n);
        const last = await client.query<Row>(`SELECT * FROM ${this.ident} WHERE ${beforeKept} ORDER BY ${ORDER_DESC} LIMIT 1`);
        const lastRemoved = last.rows[0] ? toRecord(last.rows[0]) : undefined;
        if (!lastRemoved || (n === 1 && lastRemoved.kind === "anchor")) return { deleted: 0 };
        const plan = planPurge(lastRemoved, n, before, now);
        await client.query(`DELETE FROM ${this.ident} WHERE ${beforeKept}`);
        // Before the rows that stay: among the legacy rows (by seq) when the first one kept is legacy.
        await this.insert(client, plan.anchor, k?.pos === null);
        const purge = sealRecord(plan.purge, head.pos + 1, head.digest);
        await this.insert(client, purge);
        await this.moveHead(client, purge);
        return { deleted: n, through: lastRemoved.seq };
      });
    } catch (e) {
      throw new LedgerUnavailableError(`consent ledger ${this.target}: purge failed: ${errorText(e)}`);
    }
  }

  /** Tombstones every record about `number` and appends the erasure record, in one transaction holding the chain head. */
  async erase(number: string, now = new Date()): Promise<{ erased: number; erasureId?: string; unknownKeys?: string[] }> {
    try {
      await this.existingTable();
      return await this.inChain(async (client, head) => {
        const digits = number.replace(/\D/g, "");
        // Candidates: the number in any stored form, or (full numbers) in a text; isAboutNumber decides.
        const text = `regexp_replace(concat_ws(' ', question, reply, message, detail), '[[:space:]./()-]', '', 'g')`;
        const res = await client.query<Row>(
          `SELECT * FROM ${this.ident} WHERE erased IS NULL AND (number = ANY($1) OR ${text} LIKE '%' || $2 || '%' OR ${text} LIKE '%' || $3 || '%') ORDER BY ${ORDER}`,
          [this.hasher.formsOf(number), digits, digits.startsWith("49") ? "0" + digits.slice(2) : digits],
        );
        const keys = await client.query<{ key_id: string }>(`SELECT DISTINCT key_id FROM ${this.ident} WHERE key_id IS NOT NULL AND erased IS NULL`);
        const unknownKeys = keys.rows.map((k) => k.key_id).filter((k) => !this.hasher.knowsKey(k)).sort();
        const plan = planErasure(res.rows.map(toRecord), number, this.hasher, now);
        if (!plan.tombstones.length) return { erased: 0, unknownKeys };
        for (const t of plan.tombstones) {
          const where = t.id !== undefined ? "id = $1" : "pos IS NULL AND seq = $1";
          await client.query(
            `UPDATE ${this.ident} SET number = NULL, key_id = NULL, question = NULL, reply = NULL, message = NULL, detail = NULL, salt = NULL, erased = $2 WHERE ${where}`,
            [t.id ?? t.seq, JSON.stringify(t.erased)],
          );
        }
        const erasure = sealRecord(plan.erasure, head.pos + 1, head.digest);
        await this.insert(client, erasure);
        await this.moveHead(client, erasure);
        return { erased: plan.tombstones.length, erasureId: plan.erasure.id, unknownKeys };
      });
    } catch (e) {
      throw new LedgerUnavailableError(`consent ledger ${this.target}: erasure failed: ${errorText(e)}`);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.init?.catch(() => undefined);
    await this.pool.end();
  }
}

/** Chain order: the legacy rows (no `pos`, written before the chain) first, by `seq`; then by `pos`. */
const ORDER = "(pos IS NOT NULL), pos, seq";
const ORDER_DESC = "(pos IS NOT NULL) DESC, pos DESC, seq DESC";

/** A row as the record it was written as (the same fields, so the same digest). */
export function toRecord(r: Row): LedgerRecord {
  const rec: LedgerRecord = { seq: Number(r.pos ?? r.seq), kind: r.kind as LedgerKind, callId: r.call_id, at: r.at.toISOString() };
  if (r.id !== null) rec.id = r.id;
  if (r.number !== null) rec.number = r.number;
  if (r.question !== null) rec.question = r.question;
  if (r.reply !== null) rec.reply = r.reply;
  if (r.outcome !== null) rec.outcome = r.outcome;
  if (r.model !== null) rec.model = r.model;
  if (r.decided_by !== null && r.decided_by !== undefined) rec.decidedBy = r.decided_by as "rule" | "model";
  if (r.rule !== null && r.rule !== undefined) rec.rule = r.rule;
  if (r.message !== null) rec.message = r.message;
  if (r.consent_asked_at !== null) rec.consentAskedAt = r.consent_asked_at.toISOString();
  if (r.consent_answered_at !== null) rec.consentAnsweredAt = r.consent_answered_at.toISOString();
  if (r.detail !== null) rec.detail = r.detail;
  if (r.ref !== null) rec.ref = r.ref;
  if (r.reason !== null) rec.reason = r.reason;
  if (r.prev !== null) rec.prev = r.prev;
  if (r.key_id !== null) rec.keyId = r.key_id;
  if (r.erased !== null) rec.erased = r.erased;
  if (r.maintenance !== null) rec.maintenance = r.maintenance;
  if (r.salt !== null && r.salt !== undefined) rec.salt = r.salt;
  return rec;
}

/** The connection string without its password, for messages and logs. */
export function redact(connectionString: string): string {
  try {
    const u = new URL(connectionString);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "(unparsable DATABASE_URL)";
  }
}

function errorText(e: unknown): string {
  if (e instanceof AggregateError && e.errors.length) return e.errors.map((x: unknown) => errorText(x)).join("; ");
  if (e instanceof Error) return e.message || (e as NodeJS.ErrnoException).code || e.name;
  return String(e);
}
