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
  /**
   * `holder` names what the hits are for (one SMS: `smsHolder`), so `release` can give them back.
   */
  acquire(limits: LimitSpec[], holder?: string): Promise<AcquireResult>;
  /**
   * Gives back the hits of the latest `acquire` for `holder` (an approved SMS that never left):
   * every window it counted in forgets it. Each acquire is given back at most once; nothing
   * acquired (or all of it expired), nothing done.
   */
  release(holder: string): Promise<void>;
}

/** How often the memory limiter drops windows nobody counted in lately. */
const SWEEP_EVERY_MS = 60_000;

export class MemoryRateLimiter implements RateLimiter {
  /** Per key the times of its hits, oldest first; a key without hits in its window is dropped. */
  private readonly hits = new Map<string, { times: number[]; windowMs: number }>();
  /** Per holder its acquires still counted somewhere: when, in which keys, counted until. */
  private readonly held = new Map<string, Array<{ t: number; keys: string[]; until: number }>>();
  private nextSweep: number;
  constructor(private readonly now: () => number = Date.now) {
    this.nextSweep = now() + SWEEP_EVERY_MS;
  }

  async acquire(limits: LimitSpec[], holder?: string): Promise<AcquireResult> {
    const t = this.now();
    this.sweep(t);
    const windows = limits.map((l) => this.current(l.key, l.windowMs, t));
    const full = limits.findIndex((l, i) => windows[i]!.length >= l.max);
    if (full >= 0) return { ok: false, key: limits[full]!.key };
    limits.forEach((l, i) => {
      windows[i]!.push(t);
      this.hits.set(l.key, { times: windows[i]!, windowMs: l.windowMs });
    });
    if (holder !== undefined && limits.length > 0) {
      const entries = this.held.get(holder) ?? [];
      entries.push({ t, keys: limits.map((l) => l.key), until: t + Math.max(...limits.map((l) => l.windowMs)) });
      this.held.set(holder, entries);
    }
    return { ok: true };
  }

  async release(holder: string): Promise<void> {
    const t = this.now();
    const entries = this.held.get(holder);
    const last = entries?.pop();
    if (entries?.length === 0) this.held.delete(holder);
    if (!last || last.until <= t) return;
    for (const key of last.keys) {
      const w = this.hits.get(key);
      if (!w) continue;
      const i = w.times.lastIndexOf(last.t);
      if (i >= 0) w.times.splice(i, 1);
      if (w.times.length === 0) this.hits.delete(key);
    }
  }

  /** The hits under `key` still in its window (the list the map holds, or a new one), expired ones dropped. */
  private current(key: string, windowMs: number, t: number): number[] {
    const times = this.hits.get(key)?.times ?? [];
    // Hits are appended in time order: drop the expired prefix (binary search, one splice).
    let lo = 0;
    let hi = times.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (times[mid]! > t - windowMs) hi = mid;
      else lo = mid + 1;
    }
    if (lo > 0) times.splice(0, lo);
    if (times.length === 0) this.hits.delete(key);
    return times;
  }

  /** Now and then: keys and holders whose hits all expired go, so the maps do not grow without bound. */
  private sweep(t: number): void {
    if (t < this.nextSweep) return;
    this.nextSweep = t + SWEEP_EVERY_MS;
    for (const [key, w] of this.hits) this.current(key, w.windowMs, t);
    for (const [holder, entries] of this.held) {
      const live = entries.filter((e) => e.until > t);
      if (live.length === 0) this.held.delete(holder);
      else if (live.length < entries.length) this.held.set(holder, live);
    }
  }

  /** How many keys and holders the limiter keeps (tests: nothing grows without bound). */
  get size(): { keys: number; holders: number } {
    return { keys: this.hits.size, holders: this.held.size };
  }
}

// Check every window, then count in every window, atomically (one script run in Redis). With a
// holder (the last key, ARGV[3] = "1"), the hit (its member and keys) is noted for `release`.
const ACQUIRE = `
local now = tonumber(ARGV[1])
local member = ARGV[2]
local n = #KEYS
if ARGV[3] == "1" then n = n - 1 end
-- member is unique per acquire: a resent one (ioredis sends a command again after a reconnect
-- when its reply was lost) finds itself counted already and answers as the first run did.
if redis.call("ZSCORE", KEYS[1], member) then return 0 end
for i = 1, n do
  local max = tonumber(ARGV[2 + i * 2])
  local window = tonumber(ARGV[3 + i * 2])
  redis.call("ZREMRANGEBYSCORE", KEYS[i], "-inf", now - window)
  if redis.call("ZCARD", KEYS[i]) >= max then return i end
end
local longest = 0
local keys = {}
for i = 1, n do
  local window = tonumber(ARGV[3 + i * 2])
  redis.call("ZADD", KEYS[i], now, member)
  redis.call("PEXPIRE", KEYS[i], window)
  if window > longest then longest = window end
  keys[i] = KEYS[i]
end
if n < #KEYS then
  local held = KEYS[#KEYS]
  redis.call("RPUSH", held, cjson.encode({ member = member, keys = keys }))
  if redis.call("PTTL", held) < longest then redis.call("PEXPIRE", held, longest) end
end
return 0`;

// Take the holder's latest hit off its list and out of every window it counted in. Once per
// request id (ARGV[1]; KEYS[2] keeps the replies a few minutes): a resent release takes no second hit.
const RELEASE = `
local done = redis.call("HGET", KEYS[2], ARGV[1])
if done then return tonumber(done) end
local reply = 0
local raw = redis.call("RPOP", KEYS[1])
if raw then
  local hit = cjson.decode(raw)
  for _, key in ipairs(hit.keys) do redis.call("ZREM", key, hit.member) end
  reply = 1
end
redis.call("HSET", KEYS[2], ARGV[1], reply)
redis.call("PEXPIRE", KEYS[2], 300000)
return reply`;

export class RedisRateLimiter implements RateLimiter {
  constructor(
    private readonly redis: Redis,
    private readonly prefix = "aiflow:limit:",
    private readonly now: () => number = Date.now,
  ) {}

  async acquire(limits: LimitSpec[], holder?: string): Promise<AcquireResult> {
    if (limits.length === 0) return { ok: true };
    const keys = limits.map((l) => this.prefix + l.key);
    if (holder !== undefined) keys.push(this.heldKey(holder));
    const args: (string | number)[] = [this.now(), randomUUID(), holder !== undefined ? "1" : "0"];
    for (const l of limits) args.push(l.max, l.windowMs);
    let full: number;
    try {
      full = Number(await this.redis.eval(ACQUIRE, keys.length, ...keys, ...args));
    } catch (e) {
      // Fail closed: no shared count, no SMS.
      throw new StoreUnavailableError(`Redis rate limiter: ${(e as Error).message}`);
    }
    return full === 0 ? { ok: true } : { ok: false, key: limits[full - 1]!.key };
  }

  async release(holder: string): Promise<void> {
    try {
      await this.redis.eval(RELEASE, 2, this.heldKey(holder), `${this.heldKey(holder)}:released`, randomUUID());
    } catch (e) {
      // The hits stay counted (they expire with their windows): too strict, never too lax.
      throw new StoreUnavailableError(`Redis rate limiter: ${(e as Error).message}`);
    }
  }

  private heldKey(holder: string): string {
    return `${this.prefix}held:${holder}`;
  }
}
