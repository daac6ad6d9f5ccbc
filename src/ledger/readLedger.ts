import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { open, readFile, rename, stat, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { z } from "zod";
import { LEDGER_KINDS, type LedgerRecord } from "./ledger.js";

/**
 * Reading and purging the FileLedger's JSON Lines file (the `npm run ledger` CLI).
 *
 * A crash (power loss, full disk) can leave the last line incomplete. Normally that line's `append`
 * never resolved, so no SMS depended on it. It is skipped and reported as `tornTail`. Any other line
 * that is not a record is reported with its line number and never silently dropped.
 */

// Every kind a ledger holds: what the service writes now, maintenance records, and legacy kinds of older records.
const KINDS = LEDGER_KINDS;

const optionalText = z.string().optional();
const recordSchema = z
  .object({
    seq: z.number().int(),
    kind: z.enum(KINDS),
    callId: z.string(),
    at: z.string().refine((s) => !Number.isNaN(Date.parse(s)), "at is not a timestamp"),
    number: optionalText,
    question: optionalText,
    reply: optionalText,
    outcome: optionalText,
    model: optionalText,
    message: optionalText,
    consentAskedAt: optionalText,
    consentAnsweredAt: optionalText,
    detail: optionalText,
  })
  // Fields a later version adds are kept (JSON export shows them; CSV has fixed columns).
  .passthrough();

export interface LedgerLineProblem {
  /** 1-based line number in the file. */
  line: number;
  message: string;
}

export interface LedgerFileContents {
  records: LedgerRecord[];
  /** Lines that are not records (not counting a torn last line). */
  problems: LedgerLineProblem[];
  /** The incomplete last line a crash left behind, if any. */
  tornTail?: { line: number; bytes: number };
}

interface ParsedLine {
  line: number;
  raw: string;
  record?: LedgerRecord;
  problem?: string;
}

export class LedgerFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "LedgerFileError";
  }
}

function parseRecord(text: string): { record?: LedgerRecord; problem?: string } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    return { problem: `not JSON (${(e as Error).message})` };
  }
  const r = recordSchema.safeParse(json);
  if (!r.success) {
    const i = r.error.issues[0]!;
    return { problem: `not a ledger record: ${i.path.join(".") || "(root)"}: ${i.message}` };
  }
  return { record: r.data as LedgerRecord };
}

const RECORD_START = '{"seq":';

/** Splits file text into lines and parses each; `tornTail` is the unterminated last line if it is no record. */
function parseText(text: string): { lines: ParsedLine[]; tornTail?: ParsedLine } {
  const parts = text.split("\n");
  const terminated = text.endsWith("\n");
  if (terminated) parts.pop(); // the "" after the final newline
  const lines: ParsedLine[] = [];
  let tornTail: ParsedLine | undefined;
  parts.forEach((raw, i) => {
    const line = i + 1;
    const body = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    if (body.trim() === "") return;
    const isLast = i === parts.length - 1;
    const parsed = parseRecord(body);
    if (parsed.record) {
      lines.push({ line, raw, record: parsed.record });
      return;
    }
    if (isLast && !terminated) {
      tornTail = { line, raw, problem: `incomplete last line (a crash while writing?): ${parsed.problem}` };
      return;
    }
    // A record appended after a torn write is glued to the fragment on the same line: recover it.
    for (let at = body.indexOf(RECORD_START, 1); at > 0; at = body.indexOf(RECORD_START, at + 1)) {
      const rest = parseRecord(body.slice(at));
      if (rest.record) {
        lines.push({ line, raw, record: rest.record, problem: `torn record fragment (${at} characters) before a complete record; fragment skipped, record kept` });
        return;
      }
    }
    lines.push({ line, raw, problem: parsed.problem });
  });
  return { lines, tornTail };
}

function contentsOf(lines: ParsedLine[], tornTail: ParsedLine | undefined): LedgerFileContents {
  const out: LedgerFileContents = {
    records: lines.flatMap((l) => (l.record ? [l.record] : [])),
    problems: lines.flatMap((l) => (l.problem ? [{ line: l.line, message: l.problem }] : [])),
  };
  if (tornTail) out.tornTail = { line: tornTail.line, bytes: Buffer.byteLength(tornTail.raw) };
  return out;
}

async function readText(path: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === "ENOENT") throw new LedgerFileError(`ledger file ${path} does not exist (check ledger.path in the config)`);
    throw new LedgerFileError(`cannot read ledger file ${path}: ${err.message}`);
  }
}

/** Parses JSON Lines ledger text (exported for tests and other readers). */
export function parseLedgerText(text: string): LedgerFileContents {
  const { lines, tornTail } = parseText(text);
  return contentsOf(lines, tornTail);
}

/** Reads the whole ledger file, optionally keeping only records with `from <= at < to`. */
export async function readLedgerFile(path: string, range: { from?: Date; to?: Date } = {}): Promise<LedgerFileContents> {
  const contents = parseLedgerText(await readText(path));
  return { ...contents, records: filterByTime(contents.records, range.from, range.to) };
}

/** Records with `from <= at < to`; a missing bound is open. Order is kept. */
export function filterByTime<T extends { at: string }>(records: T[], from?: Date, to?: Date): T[] {
  const lo = from?.getTime() ?? -Infinity;
  const hi = to?.getTime() ?? Infinity;
  return records.filter((r) => {
    const t = Date.parse(r.at);
    return t >= lo && t < hi;
  });
}

export interface PurgeResult {
  /** Records removed because `at < before`. */
  deleted: number;
  kept: number;
  /** Lines that are not records; kept unless they carry a parsable `"at"` older than `before`. */
  problems: LedgerLineProblem[];
  /** Whether the file was rewritten (nothing to delete: untouched). */
  rewritten: boolean;
}

const AT_IN_FRAGMENT = /"at":"([^"]+)"/;

/**
 * Removes records older than `before` (`at < before`) by writing the kept lines, byte for byte, to a
 * temp file in the same directory, fsync'ing it, renaming it over the ledger and fsync'ing the directory.
 * A crash at any point leaves either the old or the new file, never a mix.
 *
 * The ledger must not be written meanwhile: a running FileLedger keeps its handle on the replaced
 * file (its later records would be lost), so stop the service first. A change to the file while the
 * purge runs is detected and the purge is aborted without touching the ledger.
 */
export async function purgeFile(path: string, before: Date): Promise<PurgeResult> {
  let st;
  try {
    st = await stat(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return { deleted: 0, kept: 0, problems: [], rewritten: false };
    throw new LedgerFileError(`cannot read ledger file ${path}: ${(e as Error).message}`);
  }
  const text = await readText(path);
  const { lines, tornTail } = parseText(text);
  const cutoff = before.getTime();
  const keep: string[] = [];
  const problems: LedgerLineProblem[] = [];
  let deleted = 0;
  let kept = 0;
  const consider = (l: ParsedLine) => {
    if (l.record) {
      if (l.problem) problems.push({ line: l.line, message: l.problem });
      if (Date.parse(l.record.at) < cutoff) deleted++;
      else {
        kept++;
        keep.push(l.raw);
      }
      return;
    }
    // Not a record: we cannot be sure what it is, so it stays unless it is clearly older than the cutoff.
    const at = AT_IN_FRAGMENT.exec(l.raw)?.[1];
    const t = at === undefined ? NaN : Date.parse(at);
    if (!Number.isNaN(t) && t < cutoff) {
      deleted++;
      return;
    }
    problems.push({ line: l.line, message: l.problem ?? "not a record" });
    keep.push(l.raw);
  };
  lines.forEach(consider);
  // A torn tail is kept too (newline-terminated now, so the next append starts on its own line).
  if (tornTail) consider(tornTail);

  if (deleted === 0) return { deleted, kept, problems, rewritten: false };

  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.purge-${process.pid}-${randomBytes(4).toString("hex")}.tmp`);
  const body = keep.length ? keep.join("\n") + "\n" : "";
  const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, st.mode & 0o7777);
  try {
    await fh.writeFile(body, "utf8");
    await fh.sync();
  } catch (e) {
    await fh.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw new LedgerFileError(`cannot write ${tmp}: ${(e as Error).message}`);
  }
  await fh.close();

  const now = await stat(path).catch(() => undefined);
  if (!now || now.ino !== st.ino || now.size !== st.size || now.mtimeMs !== st.mtimeMs) {
    await unlink(tmp).catch(() => undefined);
    throw new LedgerFileError(`ledger file ${path} changed while purging (is the service running?); nothing was deleted`);
  }
  await rename(tmp, path);
  const d = await open(dir, "r");
  try {
    await d.sync();
  } finally {
    await d.close();
  }
  return { deleted, kept, problems, rewritten: true };
}
