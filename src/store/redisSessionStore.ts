import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import type { CallState } from "../engine/state.js";
import { KeyedQueue } from "./keyedQueue.js";
import { StoreUnavailableError, type SessionStore } from "./sessionStore.js";

export interface RedisStoreOptions {
  prefix?: string;
  /** How long one event may hold a call's lock before another instance may take it over. */
  lockTtlMs?: number;
  /** How long an event waits for its call's lock before giving up (bounded wait). */
  lockWaitMs?: number;
}

// Release only our own lock: compare the token, then delete.
const RELEASE = `if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end`;
const EXTEND = `if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("pexpire", KEYS[1], ARGV[2]) else return 0 end`;

export class LockTimeoutError extends Error {
  constructor(sessionId: string, waitedMs: number) {
    super(`call ${sessionId} is busy: its lock was not free within ${waitedMs} ms`);
    this.name = "LockTimeoutError";
  }
}

/**
 * Call state shared by every instance. Events of one call are processed one at a time across
 * instances: a per-call lock (SET NX PX with a token, kept alive while the turn runs, released
 * by compare-and-delete), waited for with a bound. Within one instance, events also queue in
 * arrival order before they ask Redis. If an instance dies mid-turn, its lock expires and the
 * call goes on elsewhere with the last saved state.
 */
export class RedisSessionStore implements SessionStore {
  private readonly prefix: string;
  private readonly lockTtlMs: number;
  private readonly lockWaitMs: number;
  private readonly local = new KeyedQueue();

  constructor(
    private readonly redis: Redis,
    opts: RedisStoreOptions = {},
  ) {
    this.prefix = opts.prefix ?? "aiflow:";
    this.lockTtlMs = opts.lockTtlMs ?? 30_000;
    this.lockWaitMs = opts.lockWaitMs ?? 10_000;
  }

  private key(id: string) {
    return `${this.prefix}call:${id}`;
  }
  private lockKey(id: string) {
    return `${this.prefix}lock:${id}`;
  }
  private get index() {
    return `${this.prefix}calls`;
  }

  private async guard<T>(op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (e) {
      if (e instanceof LockTimeoutError) throw e;
      throw new StoreUnavailableError(`Redis: ${(e as Error).message}`);
    }
  }

  withLock<T>(sessionId: string, work: () => Promise<T>): Promise<T> {
    return this.local.run(sessionId, () => this.locked(sessionId, work));
  }

  private async locked<T>(sessionId: string, work: () => Promise<T>): Promise<T> {
    const token = randomUUID();
    const lock = this.lockKey(sessionId);
    const started = Date.now();
    let delay = 5;
    for (;;) {
      const ok = await this.guard(() => this.redis.set(lock, token, "PX", this.lockTtlMs, "NX"));
      if (ok === "OK") break;
      if (Date.now() - started >= this.lockWaitMs) throw new LockTimeoutError(sessionId, this.lockWaitMs);
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 100);
    }
    // Keep the lock while a slow turn (model retries) runs; stop when done.
    const keepAlive = setInterval(() => {
      this.redis.eval(EXTEND, 1, lock, token, String(this.lockTtlMs)).catch(() => undefined);
    }, Math.max(100, Math.floor(this.lockTtlMs / 3)));
    keepAlive.unref();
    try {
      return await work();
    } finally {
      clearInterval(keepAlive);
      await this.redis.eval(RELEASE, 1, lock, token).catch(() => undefined);
    }
  }

  async get(sessionId: string): Promise<CallState | undefined> {
    const json = await this.guard(() => this.redis.get(this.key(sessionId)));
    return json ? (JSON.parse(json) as CallState) : undefined;
  }

  async set(state: CallState, ttlSeconds: number): Promise<void> {
    const expiresAt = Date.now() + ttlSeconds * 1000;
    await this.guard(() =>
      this.redis
        .multi()
        .set(this.key(state.sessionId), JSON.stringify(state), "EX", ttlSeconds)
        .zadd(this.index, expiresAt, state.sessionId)
        .exec()
        .then((res) => {
          const failed = res?.find(([err]) => err);
          if (failed) throw failed[0];
        }),
    );
  }

  async delete(sessionId: string): Promise<void> {
    await this.guard(() => this.redis.multi().del(this.key(sessionId)).zrem(this.index, sessionId).exec());
  }

  async size(): Promise<number> {
    return this.guard(async () => {
      await this.redis.zremrangebyscore(this.index, 0, Date.now());
      return this.redis.zcard(this.index);
    });
  }

  async close(): Promise<void> {
    // The connection is shared (limiter too): its owner quits it.
  }
}
