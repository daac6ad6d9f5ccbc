import { readFile } from "node:fs/promises";
import { z } from "zod";
import { LEDGER_KINDS, type LedgerRecord } from "./ledger.js";
import { AgentError } from "../core/errors.js";

/**
 * Reading and purging the FileLedger's JSON Lines file (the `npm run ledger` CLI).
 *
 * A crash (power loss, full disk) can leave the last line incomplete. Normally that line's `append`
 * never resolved, so no SMS depended on it. It is skipped and reported as `tornTail`. Any other line
 * that is not a record is reported with its line number and never silently dropped.
 */


const optionalText = z.string().optional();
const recordSchema = z
  .object({
    seq: z.number().int(),
    id: optionalText,
    kind: z.enum(LEDGER_KINDS),
    callId: z.string(),
    at: z.string().refine((s) => !Number.isNaN(Date.parse(s)), "at is not a timestamp"),
    number: optionalText,
    question: optionalText,
    reply: optionalText,
    outcome: optionalText,
    model: optionalText,
    decidedBy: z.enum(["rule", "model"]).optional(),
    rule: optionalText,
    message: optionalText,
    consentAskedAt: optionalText,
    consentAnsweredAt: optionalText,
    detail: optionalText,
    ref: optionalText,
    reason: optionalText,
    prev: z.string().regex(/^[0-9a-f]{64}$/, "prev is not a SHA-256 digest").optional(),
    keyId: optionalText,
    salt: optionalText,
    erased: z
      .object({
        digest: z.string().regex(/^[0-9a-f]{64}$/, "erased.digest is not a SHA-256 digest").optional(),
        personal: z.string().regex(/^[0-9a-f]{64}$/, "erased.personal is not a SHA-256 digest").optional(),
        by: z.string(),
      })
      .passthrough()
      .optional(),
    maintenance: z
      .object({ through: z.number().int().optional(), digest: optionalText, count: z.number().int().optional(), before: optionalText, ids: z.array(z.string()).optional() })
      .passthrough()
      .optional(),
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

export interface ParsedLine {
  line: number;
  raw: string;
  record?: LedgerRecord;
  problem?: string;
}

export class LedgerFileError extends AgentError {
  readonly code = "ledger_file";
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
export function parseText(text: string): { lines: ParsedLine[]; tornTail?: ParsedLine } {
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
