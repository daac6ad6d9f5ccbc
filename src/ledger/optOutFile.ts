import { randomBytes } from "node:crypto";
import { constants, createReadStream } from "node:fs";
import { open, rename, stat, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { z } from "zod";
import type { LedgerRecord } from "./ledger.js";
import { applyOptOut, OptOutListError, type OptOutMap } from "./optOut.js";
import { parseLedgerText } from "./readLedger.js";

/**
 * The file ledger's do-not-text list: a small JSON file beside the ledger (`<ledger>.optout.json`,
 * 0600), so the gate does not read the whole ledger on every send. Every change is written under
 * the ledger's lock file together with its record: first the record (fsync'd), then this file
 * (temp file, fsync, rename), so a reader sees the old list or the new one, never a mix.
 *
 * The list is derived from the ledger and repaired from it: it holds the position of the last
 * opt-out record applied (`throughSeq`), and whoever takes the lock to change it, or opens the
 * ledger (`ready()`: service start, the CLI), first applies opt-out records after that position
 * found near the ledger's end (a crash between the two writes), or rebuilds the whole list from the
 * ledger when the file is missing. A running service reads it again whenever it changed on disk
 * (the CLI added a number), and refuses sends when it cannot read it.
 */

const ENTRY = z.object({ since: z.string(), by: z.enum(["caller", "operator"]), record: z.string(), keyId: z.string().optional() }).strict();
const LIST_FILE = z.object({ version: z.literal(1), throughSeq: z.number().int().min(0), entries: z.record(z.string(), ENTRY) }).strict();
export type OptOutFileContents = z.infer<typeof LIST_FILE>;

export const OPT_OUT_FILE_MODE = 0o600;
/** How far back from the ledger's end a crash's unapplied change is looked for. */
const TAIL_BYTES = 1024 * 1024;
/** Ledger lines that can be opt-out records (the rest is skipped unparsed while rebuilding). */
const OPT_OUT_MARK = '"opt_out_';

export function optOutPathOf(ledgerPath: string): string {
  return `${ledgerPath}.optout.json`;
}

function emptyList(): OptOutFileContents {
  return { version: 1, throughSeq: 0, entries: {} };
}

export class OptOutFile {
  private cached: { key: string; list: OptOutFileContents } | undefined;
  /** Once the file was read, its disappearance is an error, not an empty list. */
  private seen = false;

  constructor(
    readonly path: string,
    private readonly ledgerPath: string,
  ) {}

  private parse(text: string): OptOutFileContents {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new OptOutListError(`do-not-text list ${this.path} is not JSON (${(e as Error).message}): move it away; the next start rebuilds it from the ledger (unless the ledger was purged: then restore it from a backup)`);
    }
    const r = LIST_FILE.safeParse(json);
    if (!r.success) {
      const i = r.error.issues[0]!;
      throw new OptOutListError(`do-not-text list ${this.path} is not a list (${i.path.join(".") || "(root)"}: ${i.message}): move it away; the next start rebuilds it from the ledger (unless the ledger was purged: then restore it from a backup)`);
    }
    return r.data;
  }

  /**
   * The list as it is on disk now, for the gate: read again only when the file changed (a
   * `stat` per send otherwise). Missing before it was ever seen: empty (a ledger that never
   * had `ready()` called). Missing after, or unreadable: OptOutListError (the gate refuses).
   */
  async current(): Promise<OptOutFileContents> {
    const now = await stat(this.path, { bigint: true }).catch((e: NodeJS.ErrnoException) => (e.code === "ENOENT" ? undefined : Promise.reject(this.failure(e))));
    if (!now) {
      if (this.seen) throw new OptOutListError(`do-not-text list ${this.path} is gone: sends are refused until the service starts again and rebuilds it from the ledger`);
      return emptyList();
    }
    if (this.cached?.key === keyOf(now)) return this.cached.list;
    const read = await this.read();
    if (!read) return this.current();
    return read;
  }

  /** Reads the file through one handle (its stat and its bytes belong together); undefined when missing. */
  private async read(): Promise<OptOutFileContents | undefined> {
    let fh;
    try {
      fh = await open(this.path, "r");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw this.failure(e);
    }
    try {
      const st = await fh.stat({ bigint: true });
      const list = this.parse(await fh.readFile("utf8"));
      this.cached = { key: keyOf(st), list };
      this.seen = true;
      return structuredClone(list);
    } finally {
      await fh.close();
    }
  }

  private failure(e: unknown): OptOutListError {
    return new OptOutListError(`do-not-text list ${this.path} cannot be read: ${(e as Error).message}`);
  }

  /**
   * Under the ledger's lock: the list from disk with what the ledger holds beyond it applied (and
   * written back), or rebuilt from the whole ledger when the file is missing.
   */
  async reconciled(): Promise<OptOutFileContents> {
    const list = await this.read();
    if (!list) {
      const rebuilt = await this.rebuild();
      await this.write(rebuilt);
      return rebuilt;
    }
    const missed = (await this.tailRecords()).filter((r) => r.seq > list.throughSeq);
    if (missed.length === 0) return list;
    for (const r of missed) apply(list.entries, r);
    list.throughSeq = missed.at(-1)!.seq;
    await this.write(list);
    return list;
  }

  /**
   * Every opt-out record of the ledger, in order, applied to an empty list. Only the stored form a
   * record holds can be removed: a number added under one key and removed after a rotation stays
   * listed here (fail safe; remove it again). Erased records name no number and are skipped.
   */
  private async rebuild(): Promise<OptOutFileContents> {
    const list = emptyList();
    let input;
    try {
      input = createReadStream(this.ledgerPath, { encoding: "utf8" });
      let first = true;
      for await (const line of createInterface({ input, crlfDelay: Infinity })) {
        if (first && line.trim()) {
          first = false;
          // A purge removed the chain's old prefix, opt-outs in it too: the ledger no longer holds the whole list.
          if (parseLedgerText(line).records[0]?.kind === "anchor") {
            throw new OptOutListError(`do-not-text list ${this.path} is missing and ${this.ledgerPath} was purged (it starts at an anchor), so opt-outs older than the purge are not in it: restore ${this.path} from a backup; sends are refused until then`);
          }
        }
        if (!line.includes(OPT_OUT_MARK)) continue;
        const r = parseLedgerText(line).records[0];
        if (!r || !isOptOutRecord(r)) continue;
        apply(list.entries, r);
        list.throughSeq = r.seq;
      }
    } catch (e) {
      if (e instanceof OptOutListError) throw e;
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw new OptOutListError(`do-not-text list ${this.path} cannot be rebuilt from ${this.ledgerPath}: ${(e as Error).message}`);
    } finally {
      input?.destroy();
    }
    return list;
  }

  /** The opt-out records near the ledger's end, in order (a window that starts mid-line skips that line). */
  private async tailRecords(): Promise<LedgerRecord[]> {
    let fh;
    try {
      fh = await open(this.ledgerPath, "r");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw e;
    }
    try {
      const { size } = await fh.stat();
      const length = Math.min(size, TAIL_BYTES);
      const buf = Buffer.alloc(length);
      await fh.read(buf, 0, length, size - length);
      const lines = buf.toString("utf8").split("\n");
      if (length < size) lines.shift();
      return lines.filter((l) => l.includes(OPT_OUT_MARK)).flatMap((l) => parseLedgerText(l).records.filter(isOptOutRecord));
    } finally {
      await fh.close();
    }
  }

  /** Replaces the file: a temp file in the same folder, fsync'd, renamed over it, the folder fsync'd. */
  async write(list: OptOutFileContents): Promise<void> {
    const dir = dirname(this.path);
    const tmp = join(dir, `.${basename(this.path)}.${process.pid}-${randomBytes(4).toString("hex")}.tmp`);
    const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, OPT_OUT_FILE_MODE);
    try {
      await fh.writeFile(JSON.stringify(list) + "\n", "utf8");
      await fh.sync();
    } catch (e) {
      await fh.close().catch(() => undefined);
      await unlink(tmp).catch(() => undefined);
      throw new OptOutListError(`do-not-text list ${this.path} cannot be written: ${(e as Error).message}`);
    }
    await fh.close();
    await rename(tmp, this.path);
    const d = await open(dir, "r");
    try {
      await d.sync();
    } finally {
      await d.close();
    }
    this.seen = true;
    this.cached = undefined;
  }
}

function isOptOutRecord(r: LedgerRecord): boolean {
  return r.kind === "opt_out_added" || r.kind === "opt_out_removed";
}

function apply(entries: OptOutMap, r: LedgerRecord): void {
  if (r.number !== undefined) applyOptOut(entries, r, [r.number]);
}

/** Identity of the file's current version: a rename gives a new inode, but inodes are reused, so times and size too. */
function keyOf(st: { ino: bigint; size: bigint; mtimeNs: bigint; ctimeNs: bigint }): string {
  return `${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
}
