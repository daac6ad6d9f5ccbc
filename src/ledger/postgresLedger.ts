import pg from "pg";
import { hashNumber } from "./fileLedger.js";
import type { ConsentLedger, LedgerKind, LedgerRecord, LedgerRecordInput } from "./ledger.js";

export const DEFAULT_LEDGER_TABLE = "consent_ledger";

export interface PostgresLedgerOptions {
  /** `postgres://user:password@host:port/database` (DATABASE_URL). */
  connectionString: string;
  numbers?: "full" | "hashed";
  /** Table name: letters, digits and `_`, starting with a letter or `_` (at most 63 characters). */
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
}

const TABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/**
 * The consent ledger in PostgreSQL, for several instances sharing one evidence store.
 * Append-only by use: the service only INSERTs; `purgeOlderThan` (retention) is the only DELETE.
 * `append` resolves after the INSERT has committed (autocommit, `synchronous_commit=on` forced
 * for this connection), so the gate's "evidence first" promise holds; any error rejects and the
 * gate refuses the send.
 */
export class PostgresLedger implements ConsentLedger {
  readonly table: string;
  private readonly pool: pg.Pool;
  private readonly numbers: "full" | "hashed";
  private readonly target: string;
  private init: Promise<void> | undefined;
  private closed = false;

  constructor(opts: PostgresLedgerOptions) {
    const table = opts.table ?? DEFAULT_LEDGER_TABLE;
    if (!TABLE_NAME.test(table)) throw new Error(`invalid ledger table name "${table}": use letters, digits and _ (at most 63)`);
    this.table = table;
    this.numbers = opts.numbers ?? "full";
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

  /** Connects and creates the table and its indexes if missing; safe to run from several instances at once. */
  ready(): Promise<void> {
    if (this.closed) return Promise.reject(new Error(`consent ledger ${this.target} is closed`));
    if (!this.init) {
      this.init = this.createSchema().catch((e: unknown) => {
        this.init = undefined; // a later ready() / append() tries again
        throw new Error(`consent ledger ${this.target} is not available: ${errorText(e)}`);
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
      await client.query(`CREATE INDEX IF NOT EXISTS "${this.table}_at_idx" ON ${this.ident} (at)`);
      await client.query(`CREATE INDEX IF NOT EXISTS "${this.table}_call_id_idx" ON ${this.ident} (call_id)`);
      await client.query("COMMIT");
    } catch (e) {
      await client.query("ROLLBACK").catch(() => undefined);
      throw e;
    } finally {
      client.release();
    }
  }

  /** Resolves only after the row is committed. */
  async append(rec: LedgerRecordInput): Promise<void> {
    await this.ready();
    const number = rec.number && this.numbers === "hashed" ? hashNumber(rec.number) : rec.number;
    try {
      await this.pool.query(
        `INSERT INTO ${this.ident} (kind, call_id, at, number, question, reply, outcome, model, message, consent_asked_at, consent_answered_at, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
        [
          rec.kind,
          rec.callId,
          rec.at,
          number ?? null,
          rec.question ?? null,
          rec.reply ?? null,
          rec.outcome ?? null,
          rec.model ?? null,
          rec.message ?? null,
          rec.consentAskedAt ?? null,
          rec.consentAnsweredAt ?? null,
          rec.detail ?? null,
        ],
      );
    } catch (e) {
      throw new Error(`consent ledger ${this.target}: record not written: ${errorText(e)}`);
    }
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
    const sql = `SELECT * FROM ${this.ident}${where.length ? ` WHERE ${where.join(" AND ")}` : ""} ORDER BY seq`;
    try {
      const res = await this.pool.query<Row>(sql, params);
      return res.rows.map(toRecord);
    } catch (e) {
      throw new Error(`consent ledger ${this.target}: query failed: ${errorText(e)}`);
    }
  }

  /** One call's records in append order. */
  async recordsOf(callId: string): Promise<LedgerRecord[]> {
    await this.ready();
    try {
      const res = await this.pool.query<Row>(`SELECT * FROM ${this.ident} WHERE call_id = $1 ORDER BY seq`, [callId]);
      return res.rows.map(toRecord);
    } catch (e) {
      throw new Error(`consent ledger ${this.target}: query failed: ${errorText(e)}`);
    }
  }

  /** Deletes records with `at < before` (retention); returns how many. Does not create the table. */
  async purgeOlderThan(before: Date): Promise<number> {
    try {
      const res = await this.pool.query(`DELETE FROM ${this.ident} WHERE at < $1`, [before]);
      return res.rowCount ?? 0;
    } catch (e) {
      throw new Error(`consent ledger ${this.target}: purge failed: ${errorText(e)}`);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.init?.catch(() => undefined);
    await this.pool.end();
  }
}

function toRecord(r: Row): LedgerRecord {
  const rec: LedgerRecord = { seq: Number(r.seq), kind: r.kind as LedgerKind, callId: r.call_id, at: r.at.toISOString() };
  if (r.number !== null) rec.number = r.number;
  if (r.question !== null) rec.question = r.question;
  if (r.reply !== null) rec.reply = r.reply;
  if (r.outcome !== null) rec.outcome = r.outcome;
  if (r.model !== null) rec.model = r.model;
  if (r.message !== null) rec.message = r.message;
  if (r.consent_asked_at !== null) rec.consentAskedAt = r.consent_asked_at.toISOString();
  if (r.consent_answered_at !== null) rec.consentAnsweredAt = r.consent_answered_at.toISOString();
  if (r.detail !== null) rec.detail = r.detail;
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
