import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import type { LedgerRecord } from "../ledger/ledger.js";
import type { AppConfig } from "../appConfig.js";
import { unknownKeyIds } from "../ledger/maintenance.js";
import { filterByTime, readLedgerFile } from "../ledger/readLedger.js";
import { accessText, allRecords, callPage, forThePerson, recordsAbout } from "./ledger/access.js";
import { ConfigError, DAY_MS, hasherOf, loadConfig, numberArg, postgres, UsageError, warn, writePrivateFile } from "./ledger/common.js";
import { runErase, runPurge, runVerify } from "./ledger/maintenance.js";
import { OPT_OUT_USAGE, runOptOut } from "./ledger/optout.js";

const USAGE = `usage: npm run ledger -- export [--from DATE] [--to DATE] [--format csv|json] [--out FILE] [--config PATH]
       npm run ledger -- export --number N [--format text|csv|json] [--out FILE] [--config PATH]
       npm run ledger -- show CALL_ID [--config PATH]
       npm run ledger -- verify [--strict] [--config PATH]
       npm run ledger -- purge [--config PATH]
       npm run ledger -- erase --number N [--config PATH]
       npm run ledger -- optout add N | remove N | list [--config PATH]

export   records with from <= at <= to (UTC). DATE is 2026-01-31 (a whole day) or an ISO time with a
         zone (2026-01-31T09:00:00Z); a missing bound is open. CSV (RFC 4180, header row) or a JSON array,
         to stdout or --out FILE (written 0600, as every file the CLI writes).
         With --number N (an access request): every record about N, each question as it was spoken,
         as readable text (or csv/json).
show     one call's evidence as a page: what was asked, answered, approved, handed over.
verify   checks the hash chain, that every approval follows a consent for that number and has an
         outcome, from the records alone; exit 0, or 1 naming the first bad record. Approvals whose
         outcome is unknown are listed (--strict: they fail too).
purge    removes the chain's prefix older than ledger.retentionDays, leaving an anchor and a purge
         record so the rest still verifies; safe while the service runs (it waits for the rewrite).
erase    replaces the personal fields of every record about number N with a tombstone that keeps the
         record's digest, and records the erasure (the do-not-text list keeps N if it is on it).
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
  "decidedBy",
  "rule",
  "message",
  "consentAskedAt",
  "consentAnsweredAt",
  "detail",
] as const;

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


async function runExport(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      from: { type: "string" },
      to: { type: "string" },
      format: { type: "string" },
      out: { type: "string" },
      config: { type: "string" },
      number: { type: "string" },
    },
    strict: true,
    allowPositionals: true,
  });
  if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}" for export`);
  const person = values.number !== undefined;
  const format = values.format ?? (person ? "text" : "csv");
  const formats = person ? ["text", "csv", "json"] : ["csv", "json"];
  if (!formats.includes(format)) throw new UsageError(`unknown --format "${format}": use ${formats.join(" or ")}`);
  if (values.out === "") throw new UsageError("--out needs a file path");
  const { from, to } = rangeFrom(values.from, values.to);
  const config = loadConfig(values.config, env);
  if (person) return exportForPerson(numberArg("--number", values.number, config), format, values.out, config, env, { from, to });

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
  await output(text, values.out, records.length);
  return status;
}

/** To stdout, or to a private file (0600: it holds numbers and callers' words). */
async function output(text: string, out: string | undefined, count: number): Promise<void> {
  if (out === undefined) {
    process.stdout.write(text);
    return;
  }
  await writePrivateFile(out, text);
  console.error(`ledger: ${count} record(s) written to ${out} (mode 0600)`);
}

/** The right of access: every record about one number, each question as it was spoken. */
async function exportForPerson(number: string, format: string, out: string | undefined, config: AppConfig, env: NodeJS.ProcessEnv, range: { from?: Date; to?: Date }): Promise<number> {
  const { records, malformed } = await allRecords(config, env);
  const hasher = hasherOf(config, env);
  const about = forThePerson(filterByTime(recordsAbout(records, number, hasher), range.from, range.to), number, config);
  const text = format === "text" ? accessText(about, number) : format === "csv" ? toCsv(about) : JSON.stringify(about, null, 2) + "\n";
  await output(text, out, about.length);
  const unknown = unknownKeyIds(records, hasher);
  if (unknown.length) console.error(`ledger: records hashed with key(s) ${unknown.join(", ")} cannot be matched to a number (LEDGER_HASH_KEYS_OLD does not list them): the answer may be incomplete`);
  return malformed || unknown.length ? 1 : 0;
}

async function runShow(args: string[], env: NodeJS.ProcessEnv, now: Date): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { config: { type: "string" } }, strict: true, allowPositionals: true });
  if (positionals.length !== 1) throw new UsageError(positionals.length ? `show takes one call id, not ${positionals.length}` : "show needs a call id");
  const config = loadConfig(values.config, env);
  const callId = positionals[0]!;
  const { records, malformed } = await allRecords(config, env);
  const mine = records.filter((r) => r.callId === callId);
  process.stdout.write(callPage(callId, mine, hasherOf(config, env), now));
  return malformed || !mine.length ? 1 : 0;
}

export async function runLedgerCli(argv: string[], env: NodeJS.ProcessEnv, now = new Date()): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === "--help" || command === "-h" || command === "help") {
      console.log(USAGE);
      return 0;
    }
    if (command === "export") return await runExport(rest, env);
    if (command === "show") return await runShow(rest, env, now);
    if (command === "verify") return await runVerify(rest, env, now);
    if (command === "purge") return await runPurge(rest, env, now);
    if (command === "erase") return await runErase(rest, env, now);
    if (command === "optout") return await runOptOut(rest, env, now);
    const commands = "export, show, verify, purge, erase or optout";
    throw new UsageError(command === undefined ? `no command: use ${commands}` : `unknown command "${command}": use ${commands}`);
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
