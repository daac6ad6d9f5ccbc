import { createHash } from "node:crypto";
import { mkdir, open, readFile, stat, type FileHandle } from "node:fs/promises";
import { dirname } from "node:path";
import type { ConsentLedger, LedgerRecord, LedgerRecordInput } from "./ledger.js";

/**
 * The ledger holds phone numbers and what callers said: only its owner may read it. The modes
 * are given at creation (umask can only narrow them); an existing file is tightened at start-up.
 */
export const LEDGER_FILE_MODE = 0o600;
export const LEDGER_DIR_MODE = 0o700;

const octal = (mode: number) => "0" + (mode & 0o7777).toString(8);

/** The ledger file is open to others and this process cannot change that: start-up must stop. */
export class LedgerPermissionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "LedgerPermissionError";
  }
}

export interface FileLedgerOptions {
  /** One line about a permission fix or risk found at start-up (default: console.warn). */
  notice?: (line: string) => void;
}

/**
 * JSON Lines file, one record per line, fsync'd before `append` resolves. Writes are
 * serialized so lines never interleave, and every byte is checked written. A write error
 * rejects, and the gate then refuses the send.
 */
export class FileLedger implements ConsentLedger {
  private handle: Promise<FileHandle>;
  private chain: Promise<unknown> = Promise.resolve();
  private seq = 0;
  private readonly notice: (line: string) => void;

  constructor(
    readonly path: string,
    private readonly numbers: "full" | "hashed" = "full",
    opts: FileLedgerOptions = {},
  ) {
    this.notice = opts.notice ?? ((line) => console.warn(line));
    this.handle = (async () => {
      await this.prepareFolder(dirname(path));
      const fh = await open(path, "a+", LEDGER_FILE_MODE);
      try {
        await this.makePrivate(fh);
        await this.resume(fh);
      } catch (e) {
        await fh.close().catch(() => undefined);
        throw e;
      }
      return fh;
    })();
    // An unwritable path surfaces at ready() and at every append, never as an unhandled rejection.
    this.handle.catch(() => undefined);
  }

  /**
   * Folders the service creates are private (0700). An existing folder is left as it is: it may
   * be shared (the project folder, /var/lib, /tmp), and changing it could break other programs;
   * the file's own 0600 keeps its contents private. Only a folder that others may write into
   * without the sticky bit gets one warning: there anyone can delete or replace the evidence.
   */
  private async prepareFolder(dir: string): Promise<void> {
    await mkdir(dir, { recursive: true, mode: LEDGER_DIR_MODE });
    const { mode } = await stat(dir);
    const sticky = (mode & 0o1000) !== 0;
    if ((mode & 0o022) !== 0 && !sticky) {
      this.notice(`consent ledger folder ${dir} is writable by group or others (mode ${octal(mode)}, no sticky bit): they can delete or replace ${this.path}; chmod go-w it, or move ledger.path`);
    }
  }

  /**
   * An existing file wider than 0600 (e.g. 0644 from before this check) is tightened, and said
   * so once. If that fails (the file belongs to someone else) the service refuses to start:
   * writing callers' numbers into a file others can read is not an option.
   */
  private async makePrivate(fh: FileHandle): Promise<void> {
    const { mode, uid } = await fh.stat();
    if ((mode & 0o7777 & ~LEDGER_FILE_MODE) === 0) return;
    try {
      await fh.chmod(LEDGER_FILE_MODE);
    } catch (e) {
      const owner = typeof process.getuid === "function" && uid !== process.getuid() ? `; it belongs to uid ${uid}, not to this process` : "";
      throw new LedgerPermissionError(
        `consent ledger ${this.path} has mode ${octal(mode)}, wider than ${octal(LEDGER_FILE_MODE)}, and cannot be made private (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}${owner}): chmod 600 it as its owner`,
      );
    }
    this.notice(`consent ledger ${this.path} had mode ${octal(mode)}; tightened to ${octal(LEDGER_FILE_MODE)} (it holds phone numbers and callers' words)`);
  }

  /**
   * Continue after what is on disk: `seq` goes on from the last record, and a line torn by a
   * crash is closed with a newline so the next record starts on a line of its own.
   */
  private async resume(fh: FileHandle): Promise<void> {
    const { size } = await fh.stat();
    if (size === 0) return;
    const length = Math.min(size, 64 * 1024);
    const buf = Buffer.alloc(length);
    await fh.read(buf, 0, length, size - length);
    const tail = buf.toString("utf8");
    if (!tail.endsWith("\n")) await this.writeAll(fh, "\n");
    const lines = tail.split("\n").filter(Boolean).reverse();
    for (const line of lines) {
      try {
        const seq = (JSON.parse(line) as { seq?: unknown }).seq;
        if (typeof seq === "number") {
          this.seq = seq;
          return;
        }
      } catch {
        // a torn line: look further back
      }
    }
  }

  /** FileHandle.write may write fewer bytes than asked (a full disk): write until all are on disk, or fail. */
  private async writeAll(fh: FileHandle, text: string): Promise<void> {
    const data = Buffer.from(text, "utf8");
    let offset = 0;
    while (offset < data.length) {
      const { bytesWritten } = await fh.write(data, offset, data.length - offset);
      if (bytesWritten <= 0) throw new Error(`ledger write made no progress (${offset} of ${data.length} bytes)`);
      offset += bytesWritten;
    }
  }

  /** Resolves once the file is open for appending; start-up awaits this to fail fast. */
  async ready(): Promise<void> {
    try {
      await this.handle;
    } catch (e) {
      if (e instanceof LedgerPermissionError) throw e;
      throw new Error(`consent ledger ${this.path} is not writable: ${(e as Error).message}`);
    }
  }

  append(rec: LedgerRecordInput): Promise<void> {
    const stored = this.numbers === "hashed" && rec.number ? { ...rec, number: hashNumber(rec.number) } : rec;
    const run = this.chain.then(async () => {
      const fh = await this.handle;
      await this.writeAll(fh, JSON.stringify({ seq: this.seq + 1, ...stored }) + "\n");
      await fh.sync();
      this.seq++;
    });
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Reads the whole file (only after an instance died mid-turn, so rarely); torn lines are skipped. */
  async recordsOf(callId: string): Promise<LedgerRecord[]> {
    await this.chain;
    const text = await readFile(this.path, "utf8").catch((e: NodeJS.ErrnoException) => (e.code === "ENOENT" ? "" : Promise.reject(e)));
    const out: LedgerRecord[] = [];
    for (const line of text.split("\n")) {
      if (!line.includes(callId)) continue;
      try {
        const r = JSON.parse(line) as LedgerRecord;
        if (r.callId === callId) out.push(r);
      } catch {
        // a torn line
      }
    }
    return out;
  }

  async close(): Promise<void> {
    await this.chain;
    const fh = await this.handle.catch(() => undefined);
    await fh?.close();
  }
}

export function hashNumber(n: string): string {
  return "sha256:" + createHash("sha256").update(n).digest("hex");
}
