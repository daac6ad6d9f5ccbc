import { createHash } from "node:crypto";
import { mkdirSync } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { dirname } from "node:path";
import type { ConsentLedger, LedgerRecordInput } from "./ledger.js";

/**
 * JSON Lines file, one record per line, fsync'd before `append` resolves. Writes are
 * serialized so lines never interleave. A write error rejects, and the gate then refuses the send.
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
      return open(path, "a");
    })();
    // An unwritable path surfaces at ready() and at every append, never as an unhandled rejection.
    this.handle.catch(() => undefined);
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
      const line = JSON.stringify({ seq: ++this.seq, ...stored }) + "\n";
      await fh.write(line);
      await fh.sync();
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
