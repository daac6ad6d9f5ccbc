import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import { StoreUnavailableError } from "./callStore.js";

/** One sliding-window limit: at most `max` hits under `key` within `windowMs`. */
export interface LimitSpec {
  key: string;
  max: number;
  windowMs: number;
}

export type AcquireResult = { ok: true } | { ok: false; key: string };

/**
 * Counts SMS against several windows at once, shared across calls (and, with Redis, across
 * instances). `acquire` is all-or-nothing: if any window is full nothing is counted, so a
 * refusal by one limit does not use up the others.
 */
export interface RateLimiter {
  acquire(limits: LimitSpec[]): Promise<AcquireResult>;
}

export class MemoryRateLimiter implements RateLimiter {
  private readonly hits = new Map<string, number[]>();
  constructor(private readonly now: () => number = Date.now) {}

  async acquire(limits: LimitSpec[]): Promise<AcquireResult> {
    const t = this.now();
    const windows = limits.map((l) => {
      const hits = this.hits.get(l.key) ?? [];
      // Hits are appended in time order: drop the expired prefix (binary search, one splice).
      let lo = 0;
      let hi = hits.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (hits[mid]! > t - l.windowMs) hi = mid;
        else lo = mid + 1;
      }
      if (lo > 0) hits.splice(0, lo);
      this.hits.set(l.key, hits);
      return hits;
    });
    const full = limits.findIndex((l, i) => windows[i]!.length >= l.max);
    if (full >= 0) return { ok: false, key: limits[full]!.key };
    windows.forEach((w) => w.push(t));
    return { ok: true };
  }
}

// Check every window, then count in every window, atomically (one script run in Redis).
const ACQUIRE = `
local now = tonumber(ARGV[1])
local member = ARGV[2]
for i, key in ipairs(KEYS) do
  local max = tonumber(ARGV[1 + i * 2])
  local window = tonumber(ARGV[2 + i * 2])
  redis.call("ZREMRANGEBYSCORE", key, "-inf", now - window)
  if redis.call("ZCARD", key) >= max then return i end
end
for i, key in ipairs(KEYS) do
  redis.call("ZADD", key, now, member)
  redis.call("PEXPIRE", key, tonumber(ARGV[2 + i * 2]))
end
return 0`;

export class RedisRateLimiter implements RateLimiter {
  constructor(
    private readonly redis: Redis,
    private readonly prefix = "aiflow:limit:",
    private readonly now: () => number = Date.now,
  ) {}

  async acquire(limits: LimitSpec[]): Promise<AcquireResult> {
    if (limits.length === 0) return { ok: true };
    const args: (string | number)[] = [this.now(), randomUUID()];
    for (const l of limits) args.push(l.max, l.windowMs);
    let full: number;
    try {
      full = Number(await this.redis.eval(ACQUIRE, limits.length, ...limits.map((l) => this.prefix + l.key), ...args));
    } catch (e) {
      // Fail closed: no shared count, no SMS.
      throw new StoreUnavailableError(`Redis rate limiter: ${(e as Error).message}`);
    }
    return full === 0 ? { ok: true } : { ok: false, key: limits[full - 1]!.key };
  }
}
