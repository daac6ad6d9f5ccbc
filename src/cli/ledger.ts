import { mkdirSync, realpathSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { ConfigError } from "../config/load.js";
import type { AppConfig } from "../config/schema.js";
import type { LedgerRecord } from "../ledger/ledger.js";
import { NumberHasher } from "../ledger/numberHash.js";
import { PostgresLedger } from "../ledger/postgresLedger.js";
import { purgeFile, readLedgerFile, type LedgerLineProblem } from "../ledger/readLedger.js";
import { OPT_OUT_USAGE, runOptOut } from "./ledger/optout.js";
import { loadConfig, UsageError } from "./ledger/shared.js";

const USAGE = `usage: npm run ledger -- export [--from DATE] [--to DATE] [--format csv|json] [--out FILE] [--config PATH]
       npm run ledger -- purge [--config PATH]
       npm run ledger -- optout add N | remove N | list [--config PATH]

export   records with from <= at <= to (UTC). DATE is 2026-01-31 (a whole day) or an ISO time with a
         zone (2026-01-31T09:00:00Z); a missing bound is open. CSV (RFC 4180, header row) or a JSON array,
         to stdout or --out FILE.
purge    deletes records older than ledger.retentionDays and prints how many. For the file ledger, stop
         the service first: the file is rewritten (temp file, fsync, rename).
${OPT_OUT_USAGE}

Reads PostgreSQL when DATABASE_URL is set (table LEDGER_TABLE, default consent_ledger), else the file
at ledger.path. Exit codes: 0 done; 1 failed, or export found malformed lines (reported on stderr,
the rest is exported); 2 bad usage.`;

export const CSV_COLUMNS = [
  "seq",
  "kind",
  "callId",
  "at",
  "number",
  "question",
  "reply",
  "outcome",
  "model",
  "message",
  "consentAskedAt",
  "consentAnsweredAt",
  "detail",
] as const;

const DAY_MS = 86_400_000;
const DATE_ONLY = /^(\d{4})-(\d{2})-(\d{2})$/;
const DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$/i;

/** A `--from` / `--to` value: the instant it starts at, and whether it names a whole day. */
export function parseDateArg(name: string, value: string): { start: Date; wholeDay: boolean } {
  const d = DATE_ONLY.exec(value);
  if (d) {
    const [y, m, day] = [Number(d[1]), Number(d[2]), Number(d[3])];
    const t = Date.UTC(y, m - 1, day);
    const back = new Date(t);
    if (back.getUTCFullYear() !== y || back.getUTCMonth() !== m - 1 || back.getUTCDate() !== day) {
      throw new UsageError(`${name} "${value}" is not a calendar date`);
    }
    return { start: back, wholeDay: true };
  }
  if (DATE_TIME.test(value)) {
    const t = Date.parse(value);
    if (!Number.isNaN(t)) return { start: new Date(t), wholeDay: false };
  }
  if (/^\d{4}-\d{2}-\d{2}T/.test(value) && !Number.isNaN(Date.parse(value))) {
    throw new UsageError(`${name} "${value}" has no time zone: add Z or an offset such as +01:00`);
  }
  throw new UsageError(`${name} "${value}" is not a date: use YYYY-MM-DD or an ISO time such as 2026-01-31T09:00:00Z`);
}

/** The half-open range [from, to) the ledgers filter by; `--to` is inclusive for the user. */
export function rangeFrom(fromArg?: string, toArg?: string): { from?: Date; to?: Date } {
  const from = fromArg === undefined ? undefined : parseDateArg("--from", fromArg).start;
  let to: Date | undefined;
  if (toArg !== undefined) {
    const t = parseDateArg("--to", toArg);
    to = new Date(t.start.getTime() + (t.wholeDay ? DAY_MS : 1));
  }
  if (from && to && from.getTime() >= to.getTime()) throw new UsageError(`--from ${fromArg} is after --to ${toArg}`);
  return { from, to };
}

/** One RFC 4180 field: quoted when it holds a comma, a quote, CR or LF; quotes doubled. */
export function csvField(v: unknown): string {
  if (v === undefined || v === null) return "";
  const s = typeof v === "string" ? v : typeof v === "number" || typeof v === "boolean" ? String(v) : JSON.stringify(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function toCsv(records: LedgerRecord[]): string {
  const rows = [CSV_COLUMNS.join(","), ...records.map((r) => CSV_COLUMNS.map((c) => csvField(r[c])).join(","))];
  return rows.map((r) => r + "\r\n").join("");
}

function postgres(config: AppConfig, env: NodeJS.ProcessEnv): PostgresLedger | undefined {
  const url = env.DATABASE_URL?.trim();
  return url ? new PostgresLedger({ connectionString: url, hasher: NumberHasher.fromConfig(config.ledger.numbers, env), table: env.LEDGER_TABLE?.trim() || undefined }) : undefined;
}

function warn(path: string, problems: LedgerLineProblem[]): void {
  for (const p of problems) console.error(`ledger: ${path} line ${p.line}: ${p.message}`);
}

async function runExport(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      from: { type: "string" },
      to: { type: "string" },
      format: { type: "string", default: "csv" },
      out: { type: "string" },
      config: { type: "string" },
    },
    strict: true,
    allowPositionals: true,
  });
  if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}" for export`);
  const format = values.format!;
  if (format !== "csv" && format !== "json") throw new UsageError(`unknown --format "${format}": use csv or json`);
  if (values.out === "") throw new UsageError("--out needs a file path");
  const { from, to } = rangeFrom(values.from, values.to);
  const config = loadConfig(values.config, env);

  let records: LedgerRecord[];
  let status = 0;
  const db = postgres(config, env);
  if (db) {
    try {
      records = await db.query(from, to);
    } finally {
      await db.close();
    }
  } else {
    const path = config.ledger.path;
    const contents = await readLedgerFile(path, { from, to });
    records = contents.records;
    if (contents.tornTail) console.error(`ledger: ${path} line ${contents.tornTail.line}: incomplete last line (a crash while writing?) skipped`);
    if (contents.problems.length) {
      warn(path, contents.problems);
      console.error(`ledger: ${contents.problems.length} malformed line(s) in ${path}; the export holds every readable record`);
      status = 1;
    }
  }

  const text = format === "csv" ? toCsv(records) : JSON.stringify(records, null, 2) + "\n";
  if (values.out !== undefined) {
    mkdirSync(dirname(values.out), { recursive: true });
    writeFileSync(values.out, text, "utf8");
    console.error(`ledger: ${records.length} record(s) written to ${values.out}`);
  } else {
    process.stdout.write(text);
  }
  return status;
}

async function runPurge(args: string[], env: NodeJS.ProcessEnv, now: Date): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { config: { type: "string" } }, strict: true, allowPositionals: true });
  if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}" for purge`);
  const config = loadConfig(values.config, env);
  const days = config.ledger.retentionDays;
  const before = new Date(now.getTime() - days * DAY_MS);
  let deleted: number;
  const db = postgres(config, env);
  if (db) {
    try {
      deleted = await db.purgeOlderThan(before);
    } finally {
      await db.close();
    }
  } else {
    const r = await purgeFile(config.ledger.path, before);
    warn(config.ledger.path, r.problems);
    deleted = r.deleted;
  }
  console.log(`${deleted} record(s) deleted (older than ${before.toISOString()}, ledger.retentionDays ${days})`);
  return 0;
}

export async function runLedgerCli(argv: string[], env: NodeJS.ProcessEnv, now = new Date()): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === "--help" || command === "-h" || command === "help") {
      console.log(USAGE);
      return 0;
    }
    if (command === "export") return await runExport(rest, env);
    if (command === "purge") return await runPurge(rest, env, now);
    if (command === "optout") return await runOptOut(rest, env, now);
    throw new UsageError(command === undefined ? "no command: use export or purge" : `unknown command "${command}": use export or purge`);
  } catch (e) {
    const err = e as Error & { code?: string };
    const usage = e instanceof UsageError || e instanceof ConfigError || (typeof err.code === "string" && err.code.startsWith("ERR_PARSE_ARGS"));
    console.error(`ledger: ${err.message.replace(/\s*\n\s*/g, "; ")}`);
    return usage ? 2 : 1;
  }
}

/** Run as a script (not imported); compared by real path, as the ESM loader resolves symlinks. */
function isMain(): boolean {
  try {
    return Boolean(process.argv[1]) && realpathSync(process.argv[1]!) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}

if (isMain()) {
  process.exitCode = await runLedgerCli(process.argv.slice(2), process.env);
}
