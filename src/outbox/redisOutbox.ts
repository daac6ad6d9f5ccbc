import { createHash, randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import {
  OutboxUnavailableError,
  checkLimit,
  retention,
  wholeMs,
  type Claim,
  type DeadLetter,
  type Outbox,
  type OutboxOptions,
  type PutOptions,
  type PutResult,
  type SettleResult,
} from "./outbox.js";
import { InvalidArgumentError } from "../core/errors.js";

export interface RedisOutboxOptions extends OutboxOptions {
  /** Prepended to every key (default "aiflow:"). Must not contain "{" (the keys' hash tag). */
  prefix?: string;
  /** Current time in ms epoch (tests inject theirs): tombstones, dead letters and leases of put. */
  now?: () => number;
}

/**
 * Layout version of the keys and of what they hold; a release that changes either uses v2 and
 * never reads v1 keys (as the call store does).
 */
const LAYOUT = "v1";

/*
 * Every key is `<prefix>outbox:v1:{outbox}:<name>`. The one hash tag puts the whole outbox in one
 * Redis Cluster slot, so claimDue may touch the index and any entry in one script. One slot is
 * plenty: an entry per call, a few hundred bytes to a few KB each.
 *
 *   due          zset    member key, score = ms epoch when claimable (due time; while claimed the lease end)
 *   e:<key>      hash    body, final ("1"/"0"), attempts, version, due, token ("" unclaimed), error (last failure), revision
 *   t:<key>      string  tombstone: ms epoch until which puts are ignored; PX = the tombstone period
 *   dead         zset    member key, score = ms epoch it was dead-lettered (index of d:<key>)
 *   d:<key>      hash    key, body, final, attempts, error, at, until; PX = the retention
 *
 * Times are compared with the caller's clock (ARGV), never Redis's, so the Redis and memory
 * outboxes agree under a test's clock; the PX TTLs only make Redis forget what is over.
 */

/** Shared by the per-key scripts. KEYS: due, dead, e:<key>, t:<key>, d:<key>. ARGV[1] is the key. */
const LUA_HELPERS = `
local K_DUE, K_DEAD, K_ENTRY, K_TOMB, K_LETTER = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
-- Integers as Redis should store them (a Lua number would be written as %.14g).
local function int(n) return string.format('%d', n) end
-- The entry as {token, version, due} if token holds its claim, else nil.
local function held(token)
  local e = redis.call('hmget', K_ENTRY, 'token', 'version', 'due')
  if not e[1] or e[1] == '' or e[1] ~= token then return nil end
  return e
end
-- The body was replaced during the claim: release it, the newer body is due at due.
local function release(due)
  redis.call('hset', K_ENTRY, 'token', '', 'due', int(due))
  redis.call('zadd', K_DUE, int(due), ARGV[1])
  return 'replaced'
end
local function finish(now, tombMs)
  redis.call('del', K_ENTRY)
  redis.call('zrem', K_DUE, ARGV[1])
  redis.call('set', K_TOMB, int(now + tombMs), 'PX', int(tombMs))
end
`;

/** ARGV: key, body, due, final ("1"/"0"), now, revision. */
const PUT = `
local due, final, now, revision = tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
if tonumber(redis.call('get', K_TOMB) or '-1') > now then return 'ignored_delivered' end
local e = redis.call('hmget', K_ENTRY, 'final', 'version', 'token', 'revision', 'body', 'due')
if not e[2] then
  redis.call('hset', K_ENTRY, 'body', ARGV[2], 'final', final, 'attempts', '0', 'version', '1', 'due', int(due), 'token', '', 'revision', int(revision))
  redis.call('zadd', K_DUE, int(due), ARGV[1])
  return 'stored'
end
if e[1] == '1' and final ~= '1' then return 'ignored_final' end
if final ~= '1' and revision < tonumber(e[4] or '0') then return 'ignored_older' end
-- The same put again (a resent one: ioredis sends a command again after a reconnect when its
-- reply was lost) changes nothing: a new version would post the same body once more.
if e[1] == final and e[5] == ARGV[2] and tonumber(e[4] or '0') == revision and tonumber(e[6]) == due then return 'stored' end
redis.call('hset', K_ENTRY, 'body', ARGV[2], 'final', final, 'version', int(tonumber(e[2]) + 1), 'due', int(due), 'revision', int(revision))
local score = due
if e[3] ~= '' then
  -- A claim in flight keeps the entry until its lease ends: one post per key at a time.
  local lease = tonumber(redis.call('zscore', K_DUE, ARGV[1]) or '-1')
  if lease > now then score = math.max(lease, due) end
end
redis.call('zadd', K_DUE, int(score), ARGV[1])
return 'stored'
`;

/** KEYS: due. ARGV: now, limit, lease end, claim batch id, entry key base. Returns {{key, body, final, attempts, version, token}...}. */
const CLAIM = `
local out = {}
-- The same claim again (a resent one: ioredis sends a command again after a reconnect when its
-- reply was lost) gets what the first run claimed: its entries wait at the lease end with its tokens.
for _, key in ipairs(redis.call('zrangebyscore', KEYS[1], ARGV[3], ARGV[3])) do
  local e = redis.call('hmget', ARGV[5] .. 'e:' .. key, 'body', 'final', 'attempts', 'version', 'token')
  if e[1] and e[5] == ARGV[4] .. ':' .. key then out[#out + 1] = {key, e[1], e[2], e[3], e[4], e[5]} end
end
if #out > 0 then return out end
for _, key in ipairs(redis.call('zrangebyscore', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))) do
  local ek = ARGV[5] .. 'e:' .. key
  local e = redis.call('hmget', ek, 'body', 'final', 'attempts', 'version')
  if e[1] then
    local token = ARGV[4] .. ':' .. key
    redis.call('hset', ek, 'token', token)
    redis.call('zadd', KEYS[1], ARGV[3], key)
    out[#out + 1] = {key, e[1], e[2], e[3], e[4], token}
  else
    -- An index member without its entry cannot be posted: drop it.
    redis.call('zrem', KEYS[1], key)
  end
end
return out
`;

/** ARGV: key, token, version, now, tombstone ms. */
const DELIVERED = `
local e = held(ARGV[2])
if not e then return 'stale' end
if tonumber(e[2]) ~= tonumber(ARGV[3]) then return release(tonumber(e[3])) end
finish(tonumber(ARGV[4]), tonumber(ARGV[5]))
return 'settled'
`;

/** ARGV: key, token, version, due, error. */
const RETRY = `
local e = held(ARGV[2])
if not e then return 'stale' end
redis.call('hincrby', K_ENTRY, 'attempts', 1)
redis.call('hset', K_ENTRY, 'error', ARGV[5])
if tonumber(e[2]) ~= tonumber(ARGV[3]) then return release(math.max(tonumber(e[3]), tonumber(ARGV[4]))) end
release(tonumber(ARGV[4]))
return 'settled'
`;

/** ARGV: key, token, version, error, now, tombstone ms, dead letter ms. */
const DEAD = `
local e = held(ARGV[2])
if not e then return 'stale' end
local attempts = redis.call('hincrby', K_ENTRY, 'attempts', 1)
if tonumber(e[2]) ~= tonumber(ARGV[3]) then
  redis.call('hset', K_ENTRY, 'error', ARGV[4])
  return release(tonumber(e[3]))
end
local now, deadMs = tonumber(ARGV[5]), tonumber(ARGV[7])
local d = redis.call('hmget', K_ENTRY, 'body', 'final')
redis.call('del', K_LETTER)
redis.call('hset', K_LETTER, 'key', ARGV[1], 'body', d[1], 'final', d[2], 'attempts', int(attempts), 'error', ARGV[4], 'at', int(now), 'until', int(now + deadMs))
redis.call('pexpire', K_LETTER, int(deadMs))
-- The index forgets letters past their retention here, so it stays bounded even if never listed.
redis.call('zremrangebyscore', K_DEAD, '-inf', '(' .. int(now - deadMs))
redis.call('zadd', K_DEAD, int(now), ARGV[1])
finish(now, tonumber(ARGV[6]))
return 'settled'
`;

/** KEYS: dead. ARGV: now, entry key base. Returns {{key, body, final, attempts, error, at}...}, oldest first. */
const DEAD_LETTERS = `
local out = {}
local now = tonumber(ARGV[1])
for _, key in ipairs(redis.call('zrange', KEYS[1], 0, -1)) do
  local d = redis.call('hmget', ARGV[2] .. 'd:' .. key, 'body', 'final', 'attempts', 'error', 'at', 'until')
  if d[1] and tonumber(d[6]) > now then
    out[#out + 1] = {key, d[1], d[2], d[3], d[4], d[5]}
  elseif not d[1] then
    redis.call('zrem', KEYS[1], key)
  end
end
return out
`;

/** ARGV: key, due, now. The dead letter's body back in the due set as a fresh entry; letter and tombstone gone. */
const REDRIVE = `
local d = redis.call('hmget', K_LETTER, 'body', 'final', 'until')
if not d[1] or tonumber(d[3]) <= tonumber(ARGV[3]) then return 'no_dead_letter' end
redis.call('del', K_LETTER, K_TOMB, K_ENTRY)
redis.call('zrem', K_DEAD, ARGV[1])
redis.call('hset', K_ENTRY, 'body', d[1], 'final', d[2], 'attempts', '0', 'version', '1', 'due', int(tonumber(ARGV[2])), 'token', '')
redis.call('zadd', K_DUE, int(tonumber(ARGV[2])), ARGV[1])
return 'requeued'
`;

class Script {
  readonly sha: string;
  constructor(readonly lua: string) {
    this.sha = createHash("sha1").update(lua).digest("hex");
  }
}

const SCRIPTS = {
  put: new Script(LUA_HELPERS + PUT),
  claim: new Script(CLAIM),
  delivered: new Script(LUA_HELPERS + DELIVERED),
  retry: new Script(LUA_HELPERS + RETRY),
  dead: new Script(LUA_HELPERS + DEAD),
  deadLetters: new Script(DEAD_LETTERS),
  redrive: new Script(LUA_HELPERS + REDRIVE),
};

const SETTLE_RESULTS: ReadonlySet<string> = new Set<SettleResult>(["settled", "replaced", "stale"]);
const PUT_RESULTS: ReadonlySet<string> = new Set<PutResult>(["stored", "ignored_final", "ignored_delivered", "ignored_older"]);

/**
 * Outbox shared by every instance (see outbox.ts for the model). Every operation is one Lua
 * script, so each is atomic exactly as MemoryOutbox's synchronous methods are; the semantics are
 * the same (test/outbox.contract.ts runs against both).
 */
export class RedisOutbox implements Outbox {
  private readonly base: string;
  private readonly now: () => number;
  private readonly tombstoneMs: number;
  private readonly deadLetterMs: number;

  constructor(
    private readonly redis: Redis,
    opts: RedisOutboxOptions = {},
  ) {
    const prefix = opts.prefix ?? "aiflow:";
    if (prefix.includes("{")) throw new InvalidArgumentError(`outbox: the Redis key prefix must not contain "{" (the keys' hash tag): ${prefix}`);
    this.base = `${prefix}outbox:${LAYOUT}:{outbox}:`;
    this.now = opts.now ?? Date.now;
    ({ tombstoneMs: this.tombstoneMs, deadLetterMs: this.deadLetterMs } = retention(opts));
  }

  /** The fixed keys (due index, dead letter index): for tests and operators. */
  get indexKeys(): { due: string; dead: string } {
    return { due: `${this.base}due`, dead: `${this.base}dead` };
  }

  /** A key's own keys (entry, tombstone, dead letter): for tests and operators. */
  keysOf(key: string): { entry: string; tombstone: string; deadLetter: string } {
    return { entry: `${this.base}e:${key}`, tombstone: `${this.base}t:${key}`, deadLetter: `${this.base}d:${key}` };
  }

  private perKey(key: string): string[] {
    const k = this.keysOf(key);
    return [this.indexKeys.due, this.indexKeys.dead, k.entry, k.tombstone, k.deadLetter];
  }

  /** EVALSHA, falling back to EVAL (which caches the script) after a restart or on a new server. Redis errors become OutboxUnavailableError. */
  private async run(script: Script, keys: string[], args: Array<string | number>): Promise<unknown> {
    try {
      try {
        return await this.redis.evalsha(script.sha, keys.length, ...keys, ...args);
      } catch (e) {
        if (!String((e as Error).message).startsWith("NOSCRIPT")) throw e;
        return await this.redis.eval(script.lua, keys.length, ...keys, ...args);
      }
    } catch (e) {
      throw new OutboxUnavailableError(`Redis outbox: ${(e as Error).message}`);
    }
  }

  async put(key: string, body: string, dueAt: number, opts: PutOptions = {}): Promise<PutResult> {
    const due = wholeMs(dueAt, "dueAt");
    const revision = Math.floor(opts.revision ?? 0);
    if (!Number.isFinite(revision)) throw new InvalidArgumentError(`outbox: revision must be a finite number, got ${opts.revision}`);
    const reply = String(await this.run(SCRIPTS.put, this.perKey(key), [key, body, due, opts.final === true ? "1" : "0", this.now(), revision]));
    if (!PUT_RESULTS.has(reply)) throw new OutboxUnavailableError(`Redis outbox: unexpected put reply ${reply}`);
    return reply as PutResult;
  }

  async claimDue(now: number, limit: number, leaseMs: number): Promise<Claim[]> {
    checkLimit(limit, leaseMs);
    const at = wholeMs(now, "now");
    const leaseUntil = at + wholeMs(leaseMs, "leaseMs");
    const rows = await this.run(SCRIPTS.claim, [this.indexKeys.due], [at, limit, leaseUntil, randomUUID(), this.base]);
    return rowsOf(rows, 6, "claim").map(([key, body, final, attempts, version, token]) => ({
      key: key!,
      body: body!,
      final: final === "1",
      attempts: Number(attempts),
      version: Number(version),
      token: token!,
      leaseUntil,
    }));
  }

  async delivered(claim: Claim): Promise<SettleResult> {
    return this.settle(SCRIPTS.delivered, claim, [this.now(), this.tombstoneMs]);
  }

  async retryLater(claim: Claim, dueAt: number, error: string): Promise<SettleResult> {
    return this.settle(SCRIPTS.retry, claim, [wholeMs(dueAt, "dueAt"), error]);
  }

  async deadLetter(claim: Claim, error: string): Promise<SettleResult> {
    return this.settle(SCRIPTS.dead, claim, [error, this.now(), this.tombstoneMs, this.deadLetterMs]);
  }

  private async settle(script: Script, claim: Claim, args: Array<string | number>): Promise<SettleResult> {
    const reply = String(await this.run(script, this.perKey(claim.key), [claim.key, claim.token, claim.version, ...args]));
    if (!SETTLE_RESULTS.has(reply)) throw new OutboxUnavailableError(`Redis outbox: unexpected settle reply ${reply}`);
    return reply as SettleResult;
  }

  async deadLetters(): Promise<DeadLetter[]> {
    const rows = await this.run(SCRIPTS.deadLetters, [this.indexKeys.dead], [this.now(), this.base]);
    return rowsOf(rows, 6, "dead letter").map(([key, body, final, attempts, error, at]) => ({
      key: key!,
      body: body!,
      final: final === "1",
      attempts: Number(attempts),
      error: error!,
      at: Number(at),
    }));
  }

  async redrive(key: string, dueAt: number): Promise<"requeued" | "no_dead_letter"> {
    const reply = String(await this.run(SCRIPTS.redrive, this.perKey(key), [key, wholeMs(dueAt, "dueAt"), this.now()]));
    if (reply !== "requeued" && reply !== "no_dead_letter") throw new OutboxUnavailableError(`Redis outbox: unexpected redrive reply ${reply}`);
    return reply;
  }

  async pending(): Promise<number> {
    try {
      return await this.redis.zcard(this.indexKeys.due);
    } catch (e) {
      throw new OutboxUnavailableError(`Redis outbox: ${(e as Error).message}`);
    }
  }

  async close(): Promise<void> {
    // The connection is shared (call store, limiter): its owner quits it.
  }
}

/** A script's list of rows, each `width` strings; anything else is a reply no script of this version gives. */
function rowsOf(reply: unknown, width: number, what: string): string[][] {
  if (!Array.isArray(reply) || !reply.every((r): r is string[] => Array.isArray(r) && r.length === width && r.every((x) => typeof x === "string"))) {
    throw new OutboxUnavailableError(`Redis outbox: unexpected ${what} reply`);
  }
  return reply;
}
