import { randomBytes } from "node:crypto";
import { readlinkSync } from "node:fs";
import { open, readFile, stat, unlink, utimes } from "node:fs/promises";
import { hostname } from "node:os";

/**
 * A lock file beside the ledger (`<ledger>.lock`) that every writer of the file takes: the
 * service for each append, the CLI for a purge, an erasure or an opt-out change. So a purge
 * (which rewrites the file) and the running service never lose each other's records.
 *
 * Taken by creating the file exclusively (O_EXCL) with the holder's pid and a token of its own.
 * A lock whose holder process is gone (killed mid-append) is stale and is removed; so is one
 * older than `staleMs` (a holder that hung). Waiting is bounded: after `waitMs` the caller gets
 * an error, and an append that fails makes the gate refuse the send (fail closed).
 *
 * Removing a stale lock is itself guarded: two waiters that both saw the same stale lock must
 * not both remove "it", or the second removes the lock the first has just taken and both write
 * at once (the chain forks: two records at one position). So a stale lock is removed only under
 * a breaker file (`<lock>.break`, O_EXCL too), and only if it still holds the token seen stale;
 * a holder releases only a lock that still holds its own token.
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
  const staleMs = opts.staleMs ?? 60_000;
  const token = await acquire(lockPath, opts.waitMs ?? 10_000, staleMs);
  // A long rewrite keeps its lock fresh: another process judging by the lock's age never takes it from a live holder.
  const heartbeat = setInterval(() => {
    void readFile(lockPath, "utf8")
      .then((held) => (held === token ? utimes(lockPath, new Date(), new Date()) : undefined))
      .catch(() => undefined);
  }, Math.max(10, Math.floor(staleMs / 3)));
  heartbeat.unref();
  try {
    return await work();
  } finally {
    clearInterval(heartbeat);
    // Only our own lock: one taken over as stale (we hung past staleMs) belongs to its new holder.
    if ((await readFile(lockPath, "utf8").catch(() => "")) === token) await unlink(lockPath).catch(() => undefined);
  }
}

/** Creates `path` exclusively with `content`; false when it exists. */
async function createExclusive(path: string, content: string): Promise<boolean> {
  let fh;
  try {
    fh = await open(path, "wx", 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw e;
  }
  try {
    await fh.writeFile(content);
  } finally {
    await fh.close();
  }
  return true;
}

/** Takes the lock; resolves with the token it holds (`<pid> <random>`). */
async function acquire(lockPath: string, waitMs: number, staleMs: number): Promise<string> {
  const token = `${process.pid} ${randomBytes(8).toString("hex")} ${PLACE}`;
  const deadline = Date.now() + waitMs;
  let pause = 1;
  for (;;) {
    if (await createExclusive(lockPath, token)) return token;
    const seen = await holder(lockPath);
    if ((await isStale(lockPath, seen, staleMs)) && (await breakStale(lockPath, seen, staleMs))) continue;
    if (Date.now() >= deadline) throw new FileLockTimeout(`ledger lock ${lockPath} held for over ${waitMs} ms (by pid ${pidOf(seen) || "?"}); remove it if that process is gone`);
    await new Promise((r) => setTimeout(r, pause));
    pause = Math.min(pause * 2, 25);
  }
}

/**
 * Removes the lock if it still holds `seen` (the token found stale), under the breaker file so
 * that no other waiter removes a lock taken meanwhile. A breaker left by a process that died in
 * these few lines is removed like a stale lock. True when the lock is gone or changed hands (try
 * again at once); false when another waiter is breaking it or it cannot be removed (wait).
 */
async function breakStale(lockPath: string, seen: string, staleMs: number): Promise<boolean> {
  const breaker = `${lockPath}.break`;
  if (!(await createExclusive(breaker, `${process.pid} ${randomBytes(8).toString("hex")}`))) {
    if (await isStale(breaker, await holder(breaker), staleMs)) await unlink(breaker).catch(() => undefined);
    return false;
  }
  try {
    if ((await holder(lockPath)) !== seen) return true;
    await unlink(lockPath);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "ENOENT";
  } finally {
    await unlink(breaker).catch(() => undefined);
  }
}

async function holder(lockPath: string): Promise<string> {
  return (await readFile(lockPath, "utf8").catch(() => "?")).trim() || "?";
}

/** The pid in a lock's content (`<pid> <token>`, or a bare pid as written before tokens). */
function pidOf(content: string): number {
  return Number(content.split(" ")[0]);
}

/**
 * Where a pid means something: this host and this pid namespace. A CLI run in another container
 * beside the service (`docker compose run … ledger purge`) holds the lock under a pid the service
 * cannot see; that pid proves nothing there, and only the lock's age can say it is stale.
 */
const PLACE = `${hostname()}/${pidNamespace()}`;

function pidNamespace(): string {
  try {
    return readlinkSync("/proc/self/ns/pid");
  } catch {
    return "-";
  }
}

/** The place a lock's holder named (absent in a lock written without one). */
function placeOf(content: string): string | undefined {
  return content.split(" ")[2];
}

async function isStale(lockPath: string, content: string, staleMs: number): Promise<boolean> {
  const pid = pidOf(content);
  const place = placeOf(content);
  if (Number.isInteger(pid) && pid > 0 && (place === undefined || place === PLACE)) {
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
