import { open, readFile, stat, unlink } from "node:fs/promises";

/**
 * A lock file beside the ledger (`<ledger>.lock`) that every writer of the file takes: the
 * service for each append, the CLI for a purge, an erasure or an opt-out change. So a purge
 * (which rewrites the file) and the running service never lose each other's records.
 *
 * Taken by creating the file exclusively (O_EXCL) with the holder's pid. A lock whose holder
 * process is gone (killed mid-append) is stale and is removed; so is one older than `staleMs`
 * (a holder that hung). Waiting is bounded: after `waitMs` the caller gets an error, and an
 * append that fails makes the gate refuse the send (fail closed).
 */
export interface FileLockOptions {
  waitMs?: number;
  staleMs?: number;
}

export class FileLockTimeout extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FileLockTimeout";
  }
}

export function lockPathOf(ledgerPath: string): string {
  return `${ledgerPath}.lock`;
}

export async function withFileLock<T>(lockPath: string, work: () => Promise<T>, opts: FileLockOptions = {}): Promise<T> {
  await acquire(lockPath, opts.waitMs ?? 10_000, opts.staleMs ?? 60_000);
  try {
    return await work();
  } finally {
    await unlink(lockPath).catch(() => undefined);
  }
}

async function acquire(lockPath: string, waitMs: number, staleMs: number): Promise<void> {
  const deadline = Date.now() + waitMs;
  let pause = 1;
  for (;;) {
    try {
      const fh = await open(lockPath, "wx", 0o600);
      try {
        await fh.writeFile(String(process.pid));
      } finally {
        await fh.close();
      }
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
    if (await isStale(lockPath, staleMs)) {
      await unlink(lockPath).catch(() => undefined);
      continue;
    }
    if (Date.now() >= deadline) throw new FileLockTimeout(`ledger lock ${lockPath} held for over ${waitMs} ms (by pid ${await holder(lockPath)}); remove it if that process is gone`);
    await new Promise((r) => setTimeout(r, pause));
    pause = Math.min(pause * 2, 25);
  }
}

async function holder(lockPath: string): Promise<string> {
  return (await readFile(lockPath, "utf8").catch(() => "?")).trim() || "?";
}

async function isStale(lockPath: string, staleMs: number): Promise<boolean> {
  const pid = Number(await holder(lockPath));
  if (Number.isInteger(pid) && pid > 0) {
    if (pid !== process.pid) {
      try {
        process.kill(pid, 0);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "ESRCH") return true;
      }
    }
  }
  const st = await stat(lockPath).catch(() => undefined);
  // Gone meanwhile: not stale, just free (the next open takes it).
  if (!st) return false;
  return Date.now() - st.mtimeMs > staleMs;
}
