import { mkdir, open, readFile, stat, type FileHandle } from "node:fs/promises";
import { dirname } from "node:path";
import { digestOf, GENESIS, prepareRecord, sealRecord, type Redactor } from "./chain.js";
import { lockPathOf, withFileLock } from "./fileLock.js";
import { LedgerUnavailableError, type ConsentLedger, type LedgerRecord, type LedgerRecordInput, type OptOutChange, type OptOutEntry, type OptOutResult } from "./ledger.js";
import { NumberHasher } from "./numberHash.js";
import { applyOptOut, entriesOf, isListed, optOutRecord } from "./optOut.js";
import { OptOutFile, optOutPathOf } from "./optOutFile.js";
import { parseLedgerText } from "./readLedger.js";
import { AgentError } from "../core/errors.js";

/**
 * The ledger holds phone numbers and what callers said: only its owner may read it. The modes
 * are given at creation (umask can only narrow them); an existing file is tightened at start-up.
 */
export const LEDGER_FILE_MODE = 0o600;
export const LEDGER_DIR_MODE = 0o700;

const octal = (mode: number) => "0" + (mode & 0o7777).toString(8);

/** The ledger file is open to others and this process cannot change that: start-up must stop. */
export class LedgerPermissionError extends AgentError {
  readonly code = "ledger_permission";
}

export interface FileLedgerOptions {
  /** One line about a permission fix or risk found at start-up (default: console.warn). */
  notice?: (line: string) => void;
  /** How numbers are stored (default: in full). */
  hasher?: NumberHasher;
  /** How text naming the number is stored with hashed numbers. */
  redact?: Redactor;
  /** How long an append waits for the file's lock (held by a purge, an erasure or the CLI). */
  lockWaitMs?: number;
}

/** How far back a reopened file is read for the chain head and the ids already written. */
const TAIL_BYTES = 1024 * 1024;
/** Ids kept in memory to drop a repeated append (a retried write, an event run again). */
const REMEMBERED_IDS = 100_000;

/**
 * JSON Lines file, one chained record per line, fsync'd before `append` resolves. Writes are
 * serialized in this process and, across processes, by the lock file (fileLock.ts): before each
 * append the ledger checks that the file is still the one it holds and still ends where it left
 * it, and otherwise reads the new end (a purge replaced the file, the CLI appended a record).
 * A write error rejects, and the gate then refuses the send.
 */
export class FileLedger implements ConsentLedger {
  private handle: Promise<FileHandle>;
  private chain: Promise<unknown> = Promise.resolve();
  private seq = 0;
  private head = GENESIS;
  /** Inode and size of the file as this ledger last wrote it. */
  private ino = 0;
  private size = 0;
  private readonly ids = new Set<string>();
  private readonly idOrder: string[] = [];
  private readonly notice: (line: string) => void;
  readonly hasher: NumberHasher;
  private readonly redact: Redactor | undefined;
  private readonly lockWaitMs: number | undefined;
  /** The do-not-text list beside the ledger (optOutFile.ts). */
  private readonly optOuts: OptOutFile;

  constructor(
    readonly path: string,
    opts: FileLedgerOptions = {},
  ) {
    this.notice = opts.notice ?? ((line) => console.warn(line));
    this.hasher = opts.hasher ?? NumberHasher.full();
    this.redact = opts.redact;
    this.lockWaitMs = opts.lockWaitMs;
    this.optOuts = new OptOutFile(optOutPathOf(path), path);
    this.handle = this.openFile();
    // An unwritable path surfaces at ready() and at every append, never as an unhandled rejection.
    this.handle.catch(() => undefined);
  }

  private async openFile(): Promise<FileHandle> {
    await this.prepareFolder(dirname(this.path));
    const fh = await open(this.path, "a+", LEDGER_FILE_MODE);
    try {
      await this.makePrivate(fh);
      await this.resume(fh);
    } catch (e) {
      await fh.close().catch(() => undefined);
      throw e;
    }
    return fh;
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
   * Continue after what is on disk: `seq` and the chain head from the last record, the ids of
   * the records near the end (a retried append is dropped), and a line torn by a crash closed
   * with a newline so the next record starts on a line of its own.
   */
  private async resume(fh: FileHandle): Promise<void> {
    const st = await fh.stat();
    this.ino = st.ino;
    this.size = st.size;
    this.seq = 0;
    this.head = GENESIS;
    if (st.size === 0) return;
    const length = Math.min(st.size, TAIL_BYTES);
    const buf = Buffer.alloc(length);
    await fh.read(buf, 0, length, st.size - length);
    const tail = buf.toString("utf8");
    if (!tail.endsWith("\n")) {
      await this.writeAll(fh, "\n");
      this.size += 1;
    }
    const lines = tail.split("\n");
    // The first line of a window that starts mid-file may be cut: it is skipped like a torn one.
    if (length < st.size) lines.shift();
    let last: LedgerRecord | undefined;
    for (const line of lines) {
      const record = line.trim() ? parseLedgerText(line).records[0] : undefined;
      if (!record) continue;
      last = record;
      if (record.id) this.remember(record.id);
    }
    if (last) {
      this.seq = last.seq;
      this.head = digestOf(last);
    }
  }

  private remember(id: string): void {
    if (this.ids.has(id)) return;
    this.ids.add(id);
    this.idOrder.push(id);
    if (this.idOrder.length > REMEMBERED_IDS) this.ids.delete(this.idOrder.shift()!);
  }

  /** FileHandle.write may write fewer bytes than asked (a full disk): write until all are on disk, or fail. */
  private async writeAll(fh: FileHandle, text: string): Promise<void> {
    const data = Buffer.from(text, "utf8");
    let offset = 0;
    while (offset < data.length) {
      const { bytesWritten } = await fh.write(data, offset, data.length - offset);
      if (bytesWritten <= 0) throw new LedgerUnavailableError(`ledger write made no progress (${offset} of ${data.length} bytes)`);
      offset += bytesWritten;
    }
  }

  /**
   * Resolves once the file is open for appending and the do-not-text list beside it agrees with it
   * (created, rebuilt or repaired from the ledger: see optOutFile.ts); start-up awaits this to fail fast.
   */
  async ready(): Promise<void> {
    try {
      await this.handle;
    } catch (e) {
      if (e instanceof LedgerPermissionError) throw e;
      throw new LedgerUnavailableError(`consent ledger ${this.path} is not writable: ${(e as Error).message}`);
    }
    await this.locked(async () => {
      await this.current();
      await this.optOuts.reconciled();
    });
  }

  /**
   * Under the lock: the file this ledger holds is still the ledger, and ends where this ledger
   * left it. A purge or an erasure replaced it: reopen. Another process appended: read the end.
   */
  private async current(): Promise<FileHandle> {
    let fh = await this.handle;
    const now = await stat(this.path).catch(() => undefined);
    if (!now || now.ino !== this.ino) {
      await fh.close().catch(() => undefined);
      this.handle = this.openFile();
      this.handle.catch(() => undefined);
      fh = await this.handle;
    } else if (now.size !== this.size) {
      await this.resume(fh);
    }
    return fh;
  }

  append(rec: LedgerRecordInput): Promise<void> {
    let prepared: ReturnType<typeof prepareRecord>;
    try {
      prepared = prepareRecord(rec, this.hasher, this.redact);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.locked(async () => {
      const fh = await this.current();
      if (this.ids.has(rec.id)) return;
      await this.writeSealed(fh, prepared, rec.id);
    });
  }

  /** Runs `work` after this ledger's earlier writes, holding the lock file every writer of the ledger takes. */
  private locked<T>(work: () => Promise<T>): Promise<T> {
    const run = this.chain.then(() => withFileLock(lockPathOf(this.path), work, { waitMs: this.lockWaitMs }));
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Under the lock: the record gets the next place in the chain and is on disk when this resolves. */
  private async writeSealed(fh: FileHandle, prepared: ReturnType<typeof prepareRecord>, id: string): Promise<LedgerRecord> {
    const sealed = sealRecord(prepared, this.seq + 1, this.head);
    const line = JSON.stringify(sealed) + "\n";
    await this.writeAll(fh, line);
    await fh.sync();
    this.size += Buffer.byteLength(line);
    this.seq = sealed.seq;
    this.head = digestOf(sealed);
    this.remember(id);
    return sealed;
  }

  /** Whether the number is on the do-not-text list: a `stat` of the list file, read again only when another process changed it. */
  async optedOut(number: string): Promise<boolean> {
    const list = await this.optOuts.current();
    return isListed(list.entries, this.hasher.formsOf(number));
  }

  /**
   * Under the lock: the change's record is appended (fsync'd), then the list file is replaced. A
   * crash between the two leaves a record the list misses; the next change or start applies it.
   * Taking off a number that is not listed writes nothing.
   */
  setOptOut(change: OptOutChange): Promise<OptOutResult> {
    let prepared: ReturnType<typeof prepareRecord>;
    try {
      prepared = prepareRecord(optOutRecord(change), this.hasher, this.redact);
    } catch (e) {
      return Promise.reject(e);
    }
    const forms = this.hasher.formsOf(change.number);
    return this.locked(async () => {
      const fh = await this.current();
      const list = await this.optOuts.reconciled();
      const wasListed = isListed(list.entries, forms);
      if (this.ids.has(change.id) || (!change.add && !wasListed)) return { written: false, wasListed };
      const sealed = await this.writeSealed(fh, prepared, change.id);
      applyOptOut(list.entries, sealed, forms);
      await this.optOuts.write({ ...list, throughSeq: sealed.seq });
      return { written: true, wasListed };
    });
  }

  async optOutEntries(): Promise<OptOutEntry[]> {
    return entriesOf((await this.optOuts.current()).entries);
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
