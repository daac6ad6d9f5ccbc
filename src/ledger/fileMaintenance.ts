import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { open, readFile, rename, stat, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { digestOf, sealRecord } from "./chain.js";
import { LEDGER_FILE_MODE } from "./fileLedger.js";
import { lockPathOf, withFileLock } from "./fileLock.js";
import type { LedgerRecord } from "./ledger.js";
import { planErasure, planPurge, purgeablePrefix, unknownKeyIds } from "./maintenance.js";
import type { NumberHasher } from "./numberHash.js";
import { LedgerFileError, parseText, type LedgerLineProblem, type ParsedLine } from "./readLedger.js";

/**
 * Purge and erasure of the file ledger. Both rewrite the file (a temp file in the same folder,
 * fsync'd, renamed over the ledger, the folder fsync'd: a crash leaves the old or the new file,
 * never a mix) while holding the ledger's lock file, which the running service also takes for
 * every append: the service waits for the rewrite, then sees the new file and continues its
 * chain after the maintenance record. So nothing the service writes meanwhile is lost.
 */

export interface PurgeResult {
  /** Records removed (the earlier anchor included). */
  deleted: number;
  kept: number;
  /** Lines that are not records: kept as they are, and a purge never removes past one. */
  problems: LedgerLineProblem[];
  rewritten: boolean;
  /** The position the new anchor stands for. */
  through?: number;
}

export interface FileMaintenanceOptions {
  lockWaitMs?: number;
}

async function readLines(path: string): Promise<{ lines: ParsedLine[]; tornTail?: ParsedLine } | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new LedgerFileError(`cannot read ledger file ${path}: ${(e as Error).message}`);
  }
  return parseText(text);
}

function problemsOf(lines: ParsedLine[], tornTail?: ParsedLine): LedgerLineProblem[] {
  return [...lines, ...(tornTail ? [tornTail] : [])].flatMap((l) => (l.problem ? [{ line: l.line, message: l.problem }] : []));
}

/** Writes `body` as the new ledger file: temp file (0600), fsync, rename, folder fsync. */
async function replaceFile(path: string, body: string): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.rewrite-${process.pid}-${randomBytes(4).toString("hex")}.tmp`);
  const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, LEDGER_FILE_MODE);
  try {
    await fh.writeFile(body, "utf8");
    await fh.sync();
  } catch (e) {
    await fh.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw new LedgerFileError(`cannot write ${tmp}: ${(e as Error).message}`);
  }
  await fh.close();
  await rename(tmp, path);
  const d = await open(dir, "r");
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

/** The last record of the file, whose digest the next record links to. */
function lastRecord(lines: ParsedLine[]): LedgerRecord | undefined {
  return lines.findLast((l) => l.record)?.record;
}

const lineOf = (r: LedgerRecord) => JSON.stringify(r);

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    (e: NodeJS.ErrnoException) => (e.code === "ENOENT" ? false : Promise.reject(new LedgerFileError(`cannot read ledger file ${path}: ${e.message}`))),
  );
}

/**
 * Removes the longest prefix of the chain wholly before `before`, leaving an anchor and a purge
 * record (maintenance.ts). A line that is not a record ends the prefix: what it is cannot be told,
 * so it is kept, with everything after it.
 */
export async function purgeFile(path: string, before: Date, now = new Date(), opts: FileMaintenanceOptions = {}): Promise<PurgeResult> {
  // No ledger yet (and perhaps no folder for the lock): nothing to purge.
  if (!(await exists(path))) return { deleted: 0, kept: 0, problems: [], rewritten: false };
  return withFileLock(
    lockPathOf(path),
    async () => {
      const parsed = await readLines(path);
      if (!parsed) return { deleted: 0, kept: 0, problems: [], rewritten: false };
      const { lines, tornTail } = parsed;
      const problems = problemsOf(lines, tornTail);
      const leading: LedgerRecord[] = [];
      for (const l of lines) {
        if (!l.record || l.problem) break;
        leading.push(l.record);
      }
      const n = purgeablePrefix(leading, before);
      const keptLines = lines.slice(n);
      const kept = keptLines.filter((l) => l.record).length;
      if (n === 0) return { deleted: 0, kept, problems, rewritten: false };
      const lastRemoved = leading[n - 1]!;
      const plan = planPurge(lastRemoved, n, before, now);
      const last = lastRecord(lines)!;
      const purge = sealRecord(plan.purge, last.seq + 1, digestOf(last));
      const body = [lineOf(plan.anchor), ...keptLines.map((l) => l.raw), ...(tornTail ? [tornTail.raw] : []), lineOf(purge)].join("\n") + "\n";
      await replaceFile(path, body);
      return { deleted: n, kept, problems, rewritten: true, through: lastRemoved.seq };
    },
    { waitMs: opts.lockWaitMs },
  );
}

export interface EraseResult {
  /** How many records were tombstoned. */
  erased: number;
  /** Key ids of hashed records no configured key can match: the erasure may be incomplete. */
  unknownKeys?: string[];
  /** The erasure record's id (absent when nothing was about the number). */
  erasureId?: string;
}

/** Tombstones every record about `number` and appends the erasure record. */
export async function eraseFromFile(path: string, number: string, hasher: NumberHasher, now = new Date(), opts: FileMaintenanceOptions = {}): Promise<EraseResult> {
  if (!(await exists(path))) return { erased: 0 };
  return withFileLock(
    lockPathOf(path),
    async () => {
      const parsed = await readLines(path);
      if (!parsed) return { erased: 0 };
      const { lines, tornTail } = parsed;
      const records = lines.flatMap((l) => (l.record ? [l.record] : []));
      const unknownKeys = unknownKeyIds(records, hasher);
      const plan = planErasure(records, number, hasher, now);
      if (!plan.tombstones.length) return { erased: 0, unknownKeys };
      const bySeq = new Map(plan.tombstones.map((t) => [t.seq, t]));
      const out = lines.map((l) => {
        const t = l.record && bySeq.get(l.record.seq);
        // The record of that line is replaced; a torn fragment before it on the same line is dropped.
        return t && l.record!.id === t.id ? lineOf(t) : l.raw;
      });
      const last = lastRecord(lines)!;
      const erasure = sealRecord(plan.erasure, last.seq + 1, digestOf(last));
      await replaceFile(path, [...out, ...(tornTail ? [tornTail.raw] : []), lineOf(erasure)].join("\n") + "\n");
      return { erased: plan.tombstones.length, erasureId: plan.erasure.id, unknownKeys };
    },
    { waitMs: opts.lockWaitMs },
  );
}
