import { createHash } from "node:crypto";
import { mkdirSync } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { dirname } from "node:path";
import type { ConsentLedger, LedgerRecordInput } from "./ledger.js";

/**
 * JSON Lines file, one record per line, fsync'd before `append` resolves. Writes are
 * serialized so lines never interleave, and every byte is checked written. A write error
 * rejects, and the gate then refuses the send.
 */
export class FileLedger implements ConsentLedger {
  private handle: Promise<FileHandle>;
  private chain: Promise<unknown> = Promise.resolve();
  private seq = 0;

  constructor(
    readonly path: string,
    private readonly numbers: "full" | "hashed" = "full",
  ) {
    this.handle = (async () => {
      mkdirSync(dirname(path), { recursive: true });
      const fh = await open(path, "a+");
      await this.resume(fh);
      return fh;
    })();
    // An unwritable path surfaces at ready() and at every append, never as an unhandled rejection.
    this.handle.catch(() => undefined);
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

  async close(): Promise<void> {
    await this.chain;
    const fh = await this.handle.catch(() => undefined);
    await fh?.close();
  }
}

export function hashNumber(n: string): string {
  return "sha256:" + createHash("sha256").update(n).digest("hex");
}
