import { createHash, randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import type { AiFlowAction } from "../aiflow/actions.js";
import type { AiFlowEvent } from "../aiflow/events.js";
import type { CallState } from "../core/callState.js";
import { CALLER_VERDICTS } from "../aiflow/eventKinds.js";
import {
  holdsSend,
  REPLY_KEEP,
  REPLY_TTL_MS,
  StoreUnavailableError,
  type Arrival,
  type Arriving,
  type CallStore,
  type Collected,
  type CollectRequest,
  type CommitRequest,
  type CommitResult,
  type CommitThen,
  type LeaseTake,
  type NextEvent,
  type NotedEntry,
  type TakingArrival,
  type OutboxEntry,
  type Progress,
  type QueuedEvent,
  type RequestId,
  type Subscription,
  type Transport,
} from "./callStore.js";
import { AgentError, InvariantError } from "../core/errors.js";

export interface RedisCallStoreOptions {
  /** Prepended to every key (default "aiflow:"). Must not contain "{" (the keys' hash tags). */
  prefix?: string;
  /**
   * Least lifetime of a call's queue, counters and holding record, refreshed on every write
   * (default one hour, as the memory store's idle TTL): nothing of a call lives forever.
   */
  idleTtlMs?: number;
}

/**
 * Layout version of the keys and of what they hold. A release that changes either uses a new
 * version (v3, ...) and never reads keys of another version: calls running during a rolling
 * upgrade stay with the instances of their own release, and old keys expire by their TTLs.
 * v4: the call state keeps a stack of running tasks (`CallState.tasks`) instead of a return step. A
 * new key that an older release of the same version may ignore without misreading the call (`unsent`)
 * needs no new version.
 */
const LAYOUT = "v4";

/**
 * KEYS of every per-call script, in this order. They share the hash tag `{callId}`, so one
 * call's keys live in one Redis Cluster slot and a script may touch all of them.
 */
const KEY_NAMES = ["state", "queue", "seq", "processed", "outbox", "hold", "lease", "heard", "replies", "unsent"] as const;

/*
 * Values, written so that Lua never has to re-encode JSON (cjson turns [] into {} and rounds
 * numbers to 14 digits): Lua reads only a small header, the JSON after it is opaque.
 *   state      string  CallState JSON, PX = the commit's TTL
 *   queue      list    "<seq>:<attempts>:<JSON {key, event, via}>", oldest first
 *   seq        string  last arrival number (INCR)
 *   processed  string  highest seq taken off the queue
 *   outbox     list    "<seq>:<via>:<JSON actions>", in commit order
 *   hold       hash    outstanding (1 or absent), count, droppedThrough, barged (the heard mark at the
                     latest barge-in), ended (absent fields are 0)
 *   lease      string  the holder's token, PX = the lease TTL
 *   heard      string  how many of the call's lines the caller has heard (never moves back)
 *   replies    hash    request id -> "<n>:<msgpack reply>" of the mutating scripts' latest runs, and
 *                      "#" -> n (counts runs); PX = REPLY_TTL_MS from the last run, trimmed to the
 *                      last REPLY_KEEP runs (see `once`); emptied when the call ends (they hold its
 *                      events and actions), but for the ending commit's own reply
 *   unsent     list    "<seq>:<JSON actions>" committed and never sent, noted after their commit
 *                      (markNotSent), until a commit with a state names their seqs; TTL of the state
 * The index zset `<prefix>v4:calls` (member call id, score = state expiry in ms) counts live
 * calls for size(). It is in another slot, so it is updated after the commit script, not in it.
 */


/** Shared by every script: KEYS as in KEY_NAMES. */
const LUA_HELPERS = `
local K_STATE, K_QUEUE, K_SEQ, K_PROCESSED, K_OUTBOX, K_HOLD, K_LEASE, K_HEARD, K_REPLIES, K_UNSENT = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]
-- Make key expire no sooner than ms from now (a missing key stays missing).
local function extend(key, ms)
  local t = redis.call('pttl', key)
  if t ~= -2 and t < ms then redis.call('pexpire', key, ms) end
end
local function droppedThrough()
  return tonumber(redis.call('hget', K_HOLD, 'droppedThrough') or '0') or 0
end
local function holds(token)
  return redis.call('get', K_LEASE) == token
end
-- The caller has heard every line through n (never moves back).
local function hear(n, ms)
  if n == nil then return end
  if n > (tonumber(redis.call('get', K_HEARD) or '0') or 0) then redis.call('set', K_HEARD, n) end
  extend(K_HEARD, ms)
end
-- The head of the queue with its attempts counted, for the holder of token: {held 1/0, droppedThrough,
-- head element (if any), state JSON ("" for none), outbox elements of earlier events that hold a send...}.
local function next_event(token)
  local dt = droppedThrough()
  if not holds(token) then return {0, dt} end
  local head = redis.call('lindex', K_QUEUE, 0)
  if not head then return {1, dt} end
  local seq, attempts, rest = string.match(head, '^(%d+):(%d+):(.*)$')
  local el = seq .. ':' .. (tonumber(attempts) + 1) .. ':' .. rest
  redis.call('lset', K_QUEUE, 0, el)
  local reply = {1, dt, el, redis.call('get', K_STATE) or '', 0}
  for _, e in ipairs(redis.call('lrange', K_OUTBOX, 0, -1)) do
    local s, send = string.match(e, '^(%d+):%a+:%d*:(%a):')
    if send == 's' and tonumber(s) < tonumber(seq) then reply[#reply + 1] = e end
  end
  -- How many pending sends; the entries noted unsent (markNotSent) follow them.
  reply[5] = #reply - 5
  for _, e in ipairs(redis.call('lrange', K_UNSENT, 0, -1)) do reply[#reply + 1] = e end
  return reply
end
-- Whoever waits for this call's progress on another instance is told (see CallStore.subscribe).
local function changed()
  redis.call('publish', string.sub(K_STATE, 1, -6) .. 'changed', '1')
end
-- Runs act once per request id (the last ARGV): a client that sends the same script call again
-- (ioredis after a reconnect, when the first reply was lost) gets the first run's reply, and
-- nothing happens a second time. The last ${REPLY_KEEP} replies are kept, ${REPLY_TTL_MS} ms after the last run.
local function once(act)
  local rid = ARGV[#ARGV]
  local cached = redis.call('hget', K_REPLIES, rid)
  if cached then return cmsgpack.unpack(string.sub(cached, string.find(cached, ':', 1, true) + 1)) end
  local reply = act()
  local n = redis.call('hincrby', K_REPLIES, '#', 1)
  redis.call('hset', K_REPLIES, rid, n .. ':' .. cmsgpack.pack(reply))
  if redis.call('hlen', K_REPLIES) > ${2 * REPLY_KEEP + 1} then
    local all = redis.call('hgetall', K_REPLIES)
    for i = 1, #all, 2 do
      local m = tonumber(string.match(all[i + 1], '^(%d+):'))
      if m and m <= n - ${REPLY_KEEP} then redis.call('hdel', K_REPLIES, all[i]) end
    end
  end
  redis.call('pexpire', K_REPLIES, ${REPLY_TTL_MS})
  return reply
end
`;

/** ARGV: holdingFollowUp ("1"/"0"), body JSON, idle ms, kind ("v" caller verdict / "o"). Returns the seq, or 0: collect only. */
const ARRIVE_FN = `
local function arrive_body()
if ARGV[1] == '1' and redis.call('hget', K_HOLD, 'outstanding') == '1' then return 0 end
local seq = redis.call('incr', K_SEQ)
local heard = redis.call('get', K_HEARD) or '0'
-- A barge-in may have cut whatever had been delivered: lines through the heard mark are suspect.
if ARGV[5] == '1' and tonumber(heard) > tonumber(redis.call('hget', K_HOLD, 'barged') or '0') then redis.call('hset', K_HOLD, 'barged', heard) end
local barged = redis.call('hget', K_HOLD, 'barged') or '0'
redis.call('rpush', K_QUEUE, seq .. ':0:' .. ARGV[4] .. ':' .. heard .. ':' .. barged .. ':' .. ARGV[2])
local idle = tonumber(ARGV[3])
extend(K_SEQ, idle)
extend(K_QUEUE, idle)
extend(K_PROCESSED, idle)
return seq
end
`;

const ARRIVE = `${ARRIVE_FN}
return arrive_body()
`;

/**
 * ARGV: as ARRIVE, then token, lease ttl ms. Returns {seq} (0: collect only), or {seq, next_event's
 * reply} when the event was queued and the lease was free: it is now token's.
 */
const ARRIVE_TAKE = `${ARRIVE_FN}
local seq = arrive_body()
if seq == 0 or redis.call('exists', K_LEASE) == 1 then return {seq} end
redis.call('set', K_LEASE, ARGV[6], 'PX', ARGV[7])
return {seq, next_event(ARGV[6])}
`;

/** ARGV: token, ttl ms. Returns 1 when taken (or already ours: refreshed), else 0. */
const ACQUIRE = `
local cur = redis.call('get', K_LEASE)
if cur and cur ~= ARGV[1] then return 0 end
redis.call('set', K_LEASE, ARGV[1], 'PX', ARGV[2])
return 1
`;

/** ARGV: token, ttl ms. Returns {held 1/0, droppedThrough}. */
const RENEW = `
local dt = droppedThrough()
if not holds(ARGV[1]) then return {0, dt} end
redis.call('pexpire', K_LEASE, ARGV[2])
return {1, dt}
`;

/** ARGV: token. Compare-and-delete; waiters are told (the call is free to take). */
const RELEASE = `
if holds(ARGV[1]) then
  redis.call('del', K_LEASE)
  -- An event queued meanwhile waits for someone to take the lease.
  changed()
end
return 0
`;

/**
 * ARGV: token. Returns {held 1/0, droppedThrough, head element with its attempts counted (if any),
 * n, then n outbox elements of earlier events that hold a send, then the elements noted unsent...}.
 */
const NEXT = `
return next_event(ARGV[1])
`;

/** ARGV: seq. Gives back the attempt counted for the head, if it is still event seq (a live instance lost its lease). */
const YIELD = `
local head = redis.call('lindex', K_QUEUE, 0)
if not head then return 0 end
local seq, attempts, rest = string.match(head, '^(%d+):(%d+):(.*)$')
if tonumber(seq) ~= tonumber(ARGV[1]) or tonumber(attempts) == 0 then return 0 end
redis.call('lset', K_QUEUE, 0, seq .. ':' .. (tonumber(attempts) - 1) .. ':' .. rest)
return 1
`;

/**
 * ARGV: token, seq, droppable ("1"/"0"), state mode ("1" write, "0" call ended, "2" unchanged), state JSON, ttl ms, outbox
 * element ("" for none), idle ms, spokenThrough heard at once ("" for none: nothing silent to hear),
 * seqs of outbox entries withdrawn (comma-separated, "" for none), seqs of unsent elements the state
 * now knows of (comma-separated, "" for none). Returns {"lease_lost"} | {"bad_head", head seq or ""} |
 * {"dropped"} | {"committed", 1 with state / 0 ended}.
 */
const COMMIT_FN = `
local function commit_body()
if not holds(ARGV[1]) then return {'lease_lost'} end
local seq = tonumber(ARGV[2])
local head = redis.call('lindex', K_QUEUE, 0)
local headSeq = head and string.match(head, '^(%d+):')
if not headSeq or tonumber(headSeq) ~= seq then return {'bad_head', headSeq or ''} end
local ttl = tonumber(ARGV[6])
local idle = math.max(ttl, tonumber(ARGV[8]))
redis.call('lpop', K_QUEUE)
redis.call('set', K_PROCESSED, ARGV[2])
extend(K_PROCESSED, idle)
extend(K_QUEUE, idle)
extend(K_SEQ, idle)
if ARGV[3] == '1' and seq <= droppedThrough() then return {'dropped'} end
if ARGV[4] == '0' then
  -- A new conversation under the same id counts its lines from 0 again (heard and barged marks go).
  -- The replies kept for resent requests go too: they hold the call's events and actions (numbers,
  -- the caller's words), and the call is over. This run's own reply is kept (\`once\` writes it after).
  redis.call('del', K_STATE, K_OUTBOX, K_HEARD, K_REPLIES, K_UNSENT)
  -- The holding record goes, except how far answers gave up (later queued turns stay dropped).
  redis.call('hdel', K_HOLD, 'outstanding', 'count', 'barged')
  -- A tombstone: a late or redelivered event of an ended call starts no new conversation.
  redis.call('hset', K_HOLD, 'ended', '1')
  extend(K_HOLD, idle)
  return {'committed', 0}
end
-- "2": state unchanged (nothing happened to the call); its TTL is not extended either.
if ARGV[4] == '1' then
  redis.call('set', K_STATE, ARGV[5], 'PX', ttl)
  -- A conversation again (a new session_start after the end): later events belong to it.
  redis.call('hdel', K_HOLD, 'ended')
  if ARGV[11] ~= '' then
    local seen = {}
    for s in string.gmatch(ARGV[11], '%d+') do seen[tonumber(s)] = true end
    for _, e in ipairs(redis.call('lrange', K_UNSENT, 0, -1)) do
      if seen[tonumber(string.match(e, '^(%d+):'))] then redis.call('lrem', K_UNSENT, 1, e) end
    end
  end
end
if ARGV[10] ~= '' then
  local gone = {}
  for s in string.gmatch(ARGV[10], '%d+') do gone[tonumber(s)] = true end
  for _, e in ipairs(redis.call('lrange', K_OUTBOX, 0, -1)) do
    if gone[tonumber(string.match(e, '^(%d+):'))] then redis.call('lrem', K_OUTBOX, 1, e) end
  end
end
if ARGV[7] ~= '' then redis.call('rpush', K_OUTBOX, ARGV[7]) end
if ARGV[9] ~= '' then
  -- Nothing to deliver: heard once what still waits before it is (raise the last entry's mark).
  local last = redis.call('lindex', K_OUTBOX, -1)
  if last then
    local s, v, st, rest = string.match(last, '^(%d+):(%a+):(%d*):(.*)$')
    local n = math.max(tonumber(st) or 0, tonumber(ARGV[9]))
    redis.call('lset', K_OUTBOX, -1, s .. ':' .. v .. ':' .. n .. ':' .. rest)
  else
    hear(tonumber(ARGV[9]), idle)
  end
end
if redis.call('exists', K_OUTBOX) == 1 then redis.call('pexpire', K_OUTBOX, ttl) end
extend(K_HOLD, idle)
return {'committed', 1}
end
`;

const COMMIT = `${COMMIT_FN}
local r = commit_body()
if r[1] == 'committed' or r[1] == 'dropped' then changed() end
return r
`;

/**
 * ARGV: as COMMIT. Returns {commit reply} (lease lost, bad head), {commit reply, {"next", next_event's
 * reply...}} or {commit reply, {"released", highest seq queued}} (nothing queued: the lease is released).
 */
const COMMIT_NEXT = `${COMMIT_FN}
local r = commit_body()
if r[1] ~= 'committed' and r[1] ~= 'dropped' then return {r} end
changed()
local n = next_event(ARGV[1])
if n[3] then
  table.insert(n, 1, 'next')
  return {r, n}
end
redis.call('del', K_LEASE)
return {r, {'released', tonumber(redis.call('get', K_SEQ) or '0')}}
`;

/** Returns {processed, queued, ready http, ready ws}. */
const PROGRESS = `
local ready = { http = 0, ws = 0 }
for _, e in ipairs(redis.call('lrange', K_OUTBOX, 0, -1)) do
  local via = string.match(e, '^%d+:(%a+):')
  if ready[via] then ready[via] = ready[via] + 1 end
end
return {tonumber(redis.call('get', K_PROCESSED) or '0'), tonumber(redis.call('get', K_SEQ) or '0'), ready.http, ready.ws, redis.call('hget', K_HOLD, 'ended') == '1' and 1 or 0}
`;

/**
 * ARGV: via, own seq ("" for none), collecting ("1"/"0"), mayHold ("1"/"0"), maxHoldingLines,
 * idle ms. Returns {"actions", element...} | {"hold", count} | {"give_up", droppedThrough} | {"nothing"}.
 * The same decisions as MemoryCallStore.collect, in the same order.
 */
const COLLECT = `
local via, own, collecting, mayHold = ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1', ARGV[4] == '1'
local maxLines, idle = tonumber(ARGV[5]), tonumber(ARGV[6])
-- A send waits for every caller verdict queued after it: their "no" must be able to stop it
-- (unless the call ends and everything is discarded: ARGV[7] == '1').
local lastVerdict = 0
if ARGV[7] ~= '1' then for _, q in ipairs(redis.call('lrange', K_QUEUE, 0, -1)) do
  local s, kind = string.match(q, '^(%d+):%d+:(%a):')
  if kind == 'v' and tonumber(s) > lastVerdict then lastVerdict = tonumber(s) end
end end
local entries = redis.call('lrange', K_OUTBOX, 0, -1)
local blockedFrom = math.huge
for _, e in ipairs(entries) do
  local s, send = string.match(e, '^(%d+):%a+:%d*:(%a):')
  if send == 's' and tonumber(s) < lastVerdict and tonumber(s) < blockedFrom then blockedFrom = tonumber(s) end
end
local taken = {}
for _, e in ipairs(entries) do
  local s, v = string.match(e, '^(%d+):(%a+):')
  if v == via and (collecting or tonumber(s) == own) and tonumber(s) < blockedFrom then taken[#taken + 1] = e end
end
if #taken > 0 then
  -- LREM keeps the outbox's TTL; equal elements are interchangeable.
  for _, e in ipairs(taken) do
    redis.call('lrem', K_OUTBOX, 1, e)
    local heard = string.match(e, '^%d+:%a+:(%d+):')
    if heard then hear(tonumber(heard), idle) end
  end
  if collecting then redis.call('hdel', K_HOLD, 'outstanding', 'count') end
  local reply = {'actions', tonumber(redis.call('get', K_PROCESSED) or '0')}
  for _, e in ipairs(taken) do reply[#reply + 1] = e end
  return reply
end
local pending = tonumber(redis.call('get', K_PROCESSED) or '0') < tonumber(redis.call('get', K_SEQ) or '0')
if not pending and collecting then redis.call('hdel', K_HOLD, 'outstanding', 'count') end
if not mayHold or not pending then return {'nothing'} end
local count = redis.call('hincrby', K_HOLD, 'count', 1)
if count <= maxLines then
  redis.call('hset', K_HOLD, 'outstanding', '1')
  extend(K_HOLD, idle)
  return {'hold', count}
end
local last = tonumber(redis.call('get', K_SEQ) or '0')
redis.call('hdel', K_HOLD, 'outstanding', 'count')
redis.call('hset', K_HOLD, 'droppedThrough', last)
extend(K_HOLD, idle)
return {'give_up', last}
`;

/**
 * ARGV: processed at the collect, then the outbox elements to put back (in seq order). An element
 * already in the outbox is not added twice. Returns the elements not put back: all of them for an
 * ended call or one whose session_end is queued (its turn may have taken the outbox already, and its
 * commit deletes it), an element holding a send when an event was processed since the collect. The barged
 * mark moves up to the heard mark.
 */
const PUT_BACK = `
local refused = {}
local ending = false
for _, q in ipairs(redis.call('lrange', K_QUEUE, 0, -1)) do
  -- Only non-verdict events can be the end; the body is read, never written back (see Values).
  if string.match(q, '^%d+:%d+:o:') and cjson.decode(string.match(q, '^%d+:%d+:%a:%d+:%d+:(.*)$')).event.type == 'session_end' then ending = true end
end
if ending or redis.call('hget', K_HOLD, 'ended') == '1' then
  for i = 2, #ARGV - 1 do refused[#refused + 1] = ARGV[i] end
  return refused
end
local since = tonumber(redis.call('get', K_PROCESSED) or '0') > tonumber(ARGV[1])
local present = {}
for _, e in ipairs(redis.call('lrange', K_OUTBOX, 0, -1)) do present[e] = true end
for i = #ARGV - 1, 2, -1 do
  local send = string.match(ARGV[i], '^%d+:%a+:%d*:(%a):')
  if send == 's' and since then table.insert(refused, 1, ARGV[i])
  elseif not present[ARGV[i]] then redis.call('lpush', K_OUTBOX, ARGV[i]) end
end
local heard = tonumber(redis.call('get', K_HEARD) or '0')
if heard > tonumber(redis.call('hget', K_HOLD, 'barged') or '0') then redis.call('hset', K_HOLD, 'barged', heard) end
changed()
return refused
`;

/**
 * ARGV: the entries noted as never sent ("<seq>:<JSON actions>"). Nothing for a call that ended or
 * has no state; an entry already noted (its seq) is not noted twice. The list lives as long as the state.
 */
const MARK_NOT_SENT = `
if redis.call('hget', K_HOLD, 'ended') == '1' then return 0 end
local ttl = redis.call('pttl', K_STATE)
if ttl < 0 then return 0 end
local present = {}
for _, e in ipairs(redis.call('lrange', K_UNSENT, 0, -1)) do present[string.match(e, '^(%d+):')] = true end
for i = 1, #ARGV - 1 do
  local s = string.match(ARGV[i], '^(%d+):')
  if not present[s] then
    redis.call('rpush', K_UNSENT, ARGV[i])
    present[s] = true
  end
end
extend(K_UNSENT, ttl)
return 0
`;

class Script {
  readonly lua: string;
  readonly sha: string;
  /**
   * once: the script changes the call's keys in a way a second run would repeat (count, queue,
   * take twice). It runs inside `once`, with a request id as its last ARGV, so a resent call is
   * answered from the first run's reply. The others are safe to run twice as they are: acquire
   * (already ours: refreshed), renew (extends again), release (compare-and-delete), progress (reads).
   */
  constructor(
    body: string,
    readonly once = false,
  ) {
    this.lua = LUA_HELPERS + (once ? `return once(function()\n${body}\nend)\n` : body);
    this.sha = createHash("sha1").update(this.lua).digest("hex");
  }
}

const SCRIPTS = {
  arrive: new Script(ARRIVE, true),
  arriveTake: new Script(ARRIVE_TAKE, true),
  commitNext: new Script(COMMIT_NEXT, true),
  acquire: new Script(ACQUIRE),
  renew: new Script(RENEW),
  release: new Script(RELEASE),
  next: new Script(NEXT, true),
  yield: new Script(YIELD, true),
  commit: new Script(COMMIT, true),
  progress: new Script(PROGRESS),
  collect: new Script(COLLECT, true),
  putBack: new Script(PUT_BACK, true),
  markNotSent: new Script(MARK_NOT_SENT, true),
};

/** The store answered with something no script of this version returns. */
class CorruptReplyError extends AgentError {
  readonly code = "store_reply_corrupt";
}

/**
 * Call store shared by every instance (see callStore.ts for the model). Every method that reads
 * and then writes is one Lua script, so each is atomic exactly as MemoryCallStore's synchronous
 * methods are; the semantics are the same (the contract tests in test/callStore.contract.ts
 * run against both).
 */
export class RedisCallStore<S extends object = object> implements CallStore<S> {
  readonly shared = true;
  private readonly prefix: string;
  private readonly idleTtlMs: number;
  /** Per call: the index score this instance last wrote (insertion order: oldest first). */
  private readonly indexed = new Map<string, number>();
  private sub?: Redis;
  private readonly subscribers = new Map<string, { listeners: Set<() => void>; ready: Promise<void> }>();

  constructor(
    private readonly redis: Redis,
    opts: RedisCallStoreOptions = {},
  ) {
    this.prefix = opts.prefix ?? "aiflow:";
    this.idleTtlMs = opts.idleTtlMs ?? 3_600_000;
  }

  /** The call's keys, in KEY_NAMES order (exposed for tests and operators). */
  keys(callId: string): string[] {
    return KEY_NAMES.map((k) => this.key(callId, k));
  }
  private key(callId: string, name: (typeof KEY_NAMES)[number]): string {
    return `${this.prefix}${LAYOUT}:call:{${callId}}:${name}`;
  }
  private get index() {
    return `${this.prefix}${LAYOUT}:calls`;
  }

  private async guard<T>(op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (e) {
      throw new StoreUnavailableError(`Redis: ${(e as Error).message}`);
    }
  }

  /**
   * EVALSHA, falling back to EVAL (which caches the script) after a restart or on a new server.
   * A `once` script gets the caller's request id, or a fresh one: the client may send the command
   * again after a reconnect (autoResendUnfulfilledCommands, on by default and left on), and that
   * second run only repeats the first one's reply.
   */
  private run(script: Script, callId: string, args: Array<string | number>, requestId?: RequestId): Promise<unknown> {
    if (script.once) args = [...args, requestId ?? randomUUID()];
    return this.guard(async () => {
      const keys = this.keys(callId);
      try {
        return await this.redis.evalsha(script.sha, keys.length, ...keys, ...args);
      } catch (e) {
        if (!String((e as Error).message).startsWith("NOSCRIPT")) throw e;
        return await this.redis.eval(script.lua, keys.length, ...keys, ...args);
      }
    });
  }

  async arrive(callId: string, e: Arriving, requestId?: RequestId): Promise<Arrival> {
    const seq = Number(await this.run(SCRIPTS.arrive, callId, this.arriveArgs(e), requestId));
    return seq > 0 ? { kind: "queued", seq } : { kind: "collect" };
  }

  async arriveAndTake(callId: string, e: Arriving, lease: LeaseTake, requestId?: RequestId): Promise<TakingArrival<S>> {
    const [seq, next] = (await this.run(SCRIPTS.arriveTake, callId, [...this.arriveArgs(e), lease.token, ms(lease.ttlMs)], requestId)) as [number, NextReply?];
    if (Number(seq) === 0) return { kind: "collect" };
    return next ? { kind: "queued", seq: Number(seq), taken: parseNext<S>(next) } : { kind: "queued", seq: Number(seq) };
  }

  private arriveArgs(e: Arriving): Array<string | number> {
    const body = JSON.stringify({ key: e.key, event: e.event, via: e.via, ...(e.trace ? { trace: e.trace } : {}) });
    const kind = CALLER_VERDICTS.has(e.event.type) ? "v" : "o";
    // A delayed event (kept through an outage) marks what was delivered as possibly unheard, as a barge-in does.
    const bargeIn = (e.event.type === "user_speak" && e.event.barged_in) || e.delayed ? "1" : "0";
    return [e.holdingFollowUp ? "1" : "0", body, this.idleTtlMs, kind, bargeIn];
  }

  async acquireLease(callId: string, token: string, ttlMs: number): Promise<boolean> {
    return Number(await this.run(SCRIPTS.acquire, callId, [token, ms(ttlMs)])) === 1;
  }

  async renewLease(callId: string, token: string, ttlMs: number): Promise<{ held: boolean; droppedThrough: number }> {
    const [held, droppedThrough] = (await this.run(SCRIPTS.renew, callId, [token, ms(ttlMs)])) as [number, number];
    return { held: held === 1, droppedThrough: Number(droppedThrough) };
  }

  async releaseLease(callId: string, token: string): Promise<void> {
    await this.run(SCRIPTS.release, callId, [token]);
  }

  async nextEvent(callId: string, token: string, requestId?: RequestId): Promise<NextEvent<S>> {
    return parseNext<S>((await this.run(SCRIPTS.next, callId, [token], requestId)) as NextReply);
  }

  async yieldEvent(callId: string, seq: number, requestId?: RequestId): Promise<void> {
    await this.run(SCRIPTS.yield, callId, [seq], requestId);
  }

  async commit(callId: string, token: string, c: CommitRequest<S>, requestId?: RequestId): Promise<CommitResult> {
    const { args, expiresAt, stateMode } = this.commitArgs(token, c);
    const reply = (await this.run(SCRIPTS.commit, callId, args, requestId)) as CommitReply;
    return this.committed(callId, c, reply, expiresAt, stateMode);
  }

  async commitAndNext(callId: string, token: string, c: CommitRequest<S>, requestId?: RequestId): Promise<CommitThen<S>> {
    const { args, expiresAt, stateMode } = this.commitArgs(token, c);
    const [reply, then] = (await this.run(SCRIPTS.commitNext, callId, args, requestId)) as [CommitReply, (["next", ...NextReply] | ["released", number])?];
    const result = await this.committed(callId, c, reply, expiresAt, stateMode);
    if (!then) return { result };
    if (then[0] === "released") return { result, released: { queued: Number(then[1]) } };
    return { result, next: parseNext<S>(then.slice(1) as NextReply) };
  }

  private commitArgs(token: string, c: CommitRequest<S>) {
    const ttlMs = ms(c.ttlSeconds * 1000);
    const delivers = c.state !== null && c.entry !== undefined && c.entry.actions.length > 0;
    const entry = delivers ? outboxElement(c.entry!) : "";
    const heardNow = !delivers && c.state !== null && c.entry?.spokenThrough !== undefined ? String(c.entry.spokenThrough) : "";
    const stateMode = c.state === null ? "0" : c.state === undefined ? "2" : "1";
    const args = [token, c.seq, c.droppable ? "1" : "0", stateMode, c.state ? JSON.stringify(c.state) : "", ttlMs, entry, this.idleTtlMs, heardNow, (c.withdraw ?? []).join(","), (c.notSentSeen ?? []).join(",")];
    return { args, expiresAt: Date.now() + ttlMs, stateMode, ttlMs };
  }

  private async committed(callId: string, c: CommitRequest<S>, [result, detail]: CommitReply, expiresAt: number, stateMode: string): Promise<CommitResult> {
    switch (result) {
      case "lease_lost":
      case "dropped":
        return result;
      case "bad_head":
        // A programming error of the caller, not an unavailable store.
        throw new InvariantError(`commit of event ${c.seq} for call ${callId}, but the queue head is ${detail === "" ? undefined : detail}`);
      case "committed":
        // The index lives in another cluster slot, so it cannot be in the script. It only counts
        // calls (size()): the commit stands even if this update fails, and a stale member ends
        // with its score. A call's score is only moved on when a tenth of its TTL has passed since
        // this instance last moved it (one ZADD per turn would be a fifth of a turn's commands).
        if (stateMode === "0") {
          this.indexed.delete(callId);
          await this.redis.zrem(this.index, callId).catch(() => undefined);
        } else if (stateMode === "1" && detail === 1) {
          const last = this.indexed.get(callId);
          const ttlMs = c.ttlSeconds * 1000;
          if (last !== undefined && expiresAt - last < ttlMs / 10) return "committed";
          this.indexed.delete(callId);
          this.indexed.set(callId, expiresAt);
          if (this.indexed.size > MAX_INDEXED) this.indexed.delete(this.indexed.keys().next().value!);
          await this.redis.zadd(this.index, expiresAt, callId).catch(() => this.indexed.delete(callId));
        }
        return "committed";
      default:
        throw new StoreUnavailableError(`Redis: unexpected commit reply ${String(result)}`);
    }
  }

  subscribe(callId: string, listener: () => void): Subscription {
    const channel = this.channel(callId);
    let entry = this.subscribers.get(channel);
    if (!entry) {
      // A hint only: a failed subscription is ready too (waits look again after a lease's time).
      const ready = this.subscriber()
        .subscribe(channel)
        .then(
          () => undefined,
          () => undefined,
        );
      this.subscribers.set(channel, (entry = { listeners: new Set(), ready }));
    }
    const mine = entry;
    mine.listeners.add(listener);
    return {
      ready: mine.ready,
      close: () => {
        mine.listeners.delete(listener);
        if (mine.listeners.size > 0 || this.subscribers.get(channel) !== mine) return;
        this.subscribers.delete(channel);
        void this.subscriber()
          .unsubscribe(channel)
          .catch(() => undefined);
      },
    };
  }

  private channel(callId: string): string {
    return this.key(callId, "state").slice(0, -"state".length) + "changed";
  }

  /** One connection per store for pub/sub (a subscribed connection runs no other commands); ioredis subscribes again after a reconnect. */
  private subscriber(): Redis {
    if (!this.sub) {
      // Its own settings: connected now, and a subscription asked for while it connects waits for it.
      this.sub = this.redis.duplicate({ lazyConnect: false, enableOfflineQueue: true });
      this.sub.on("error", () => undefined);
      this.sub.on("message", (channel: string) => this.subscribers.get(channel)?.listeners.forEach((l) => l()));
    }
    return this.sub;
  }

  async progress(callId: string): Promise<Progress> {
    const [processed, queued, http, ws, ended] = (await this.run(SCRIPTS.progress, callId, [])) as number[];
    return { processed: Number(processed), queued: Number(queued), ready: { http: Number(http), ws: Number(ws) }, ended: Number(ended) === 1 };
  }

  async collect(callId: string, r: CollectRequest, requestId?: RequestId): Promise<Collected> {
    const args = [r.via, r.seq ?? "", r.collecting ? "1" : "0", r.mayHold ? "1" : "0", r.maxHoldingLines, this.idleTtlMs, r.ignoreVerdicts ? "1" : "0"];
    const [kind, ...rest] = (await this.run(SCRIPTS.collect, callId, args, requestId)) as [string, ...Array<string | number>];
    switch (kind) {
      case "actions": {
        const [processed, ...elements] = rest;
        const entries = (elements as string[]).map(parseOutbox).sort((a, b) => a.seq - b.seq);
        return { kind: "actions", actions: entries.flatMap((e) => e.actions), entries, processed: Number(processed) };
      }
      case "hold":
        return { kind: "hold", count: Number(rest[0]) };
      case "give_up":
        return { kind: "give_up", droppedThrough: Number(rest[0]) };
      case "nothing":
        return { kind: "nothing" };
      default:
        throw new StoreUnavailableError(`Redis: unexpected collect reply ${String(kind)}`);
    }
  }

  async putBack(callId: string, entries: OutboxEntry[], processedAtCollect: number, requestId?: RequestId): Promise<OutboxEntry[]> {
    if (!entries.length) return [];
    const refused = (await this.run(SCRIPTS.putBack, callId, [processedAtCollect, ...[...entries].sort((a, b) => a.seq - b.seq).map(outboxElement)], requestId)) as string[];
    return refused.map(parseOutbox);
  }

  async markNotSent(callId: string, entries: NotedEntry[], requestId?: RequestId): Promise<void> {
    if (!entries.length) return;
    await this.run(SCRIPTS.markNotSent, callId, entries.map((e) => `${e.seq}:${JSON.stringify(e.actions)}`), requestId);
  }

  async get(callId: string): Promise<CallState<S> | undefined> {
    const json = await this.guard(() => this.redis.get(this.key(callId, "state")));
    return json ? (JSON.parse(json) as CallState<S>) : undefined;
  }

  async size(): Promise<number> {
    return this.guard(async () => {
      await this.redis.zremrangebyscore(this.index, 0, Date.now());
      return this.redis.zcard(this.index);
    });
  }

  async close(): Promise<void> {
    // The connection is shared (limiter too): its owner quits it. The subscriber is the store's own.
    this.sub?.disconnect();
    this.sub = undefined;
  }
}

/** Calls whose index score is remembered (beyond it the oldest is forgotten: its next commit writes it again). */
const MAX_INDEXED = 100_000;

type CommitReply = [string, (string | number)?];
type NextReply = [number, number, string?, string?, number?, ...string[]];

/** The store's reply, with the call's state as this store keeps it (`S`, written by its own commits). */
function parseNext<S extends object>([held, droppedThrough, el, state, pending, ...elements]: NextReply): NextEvent<S> {
  if (Number(held) !== 1) return { held: false, droppedThrough: Number(droppedThrough) };
  if (el === undefined) return { droppedThrough: Number(droppedThrough), held: true };
  const current = { state: state ? (JSON.parse(state) as CallState<S>) : undefined };
  const sends = elements.slice(0, Number(pending));
  const unsent = elements.slice(Number(pending));
  return { event: parseQueued(el), droppedThrough: Number(droppedThrough), held: true, pendingSends: sends.map(parseOutbox), ...(unsent.length ? { notSent: unsent.map(parseNoted) } : {}), current };
}

/** A TTL Redis accepts: whole milliseconds, at least 1 (0 or less would be an error there). */
function ms(n: number): number {
  return Math.max(1, Math.ceil(n));
}

function parseQueued(el: string): QueuedEvent {
  const m = /^(\d+):(\d+):[vo]:(\d+):(\d+):/.exec(el);
  if (!m) throw new CorruptReplyError(`queue element ${el.slice(0, 40)}`);
  const body = JSON.parse(el.slice(m[0].length)) as { key: string; event: AiFlowEvent; via: Transport; trace?: string };
  return { seq: Number(m[1]), key: body.key, event: body.event, via: body.via, attempts: Number(m[2]), heard: Number(m[3]), barged: Number(m[4]), ...(body.trace ? { trace: body.trace } : {}) };
}

function outboxElement(e: OutboxEntry): string {
  return `${e.seq}:${e.via}:${e.spokenThrough ?? ""}:${holdsSend(e.actions) ? "s" : "n"}:${JSON.stringify(e.actions)}`;
}

function parseOutbox(el: string): OutboxEntry {
  const m = /^(\d+):(http|ws):(\d*):[sn]:/.exec(el);
  if (!m) throw new CorruptReplyError(`outbox element ${el.slice(0, 40)}`);
  return { seq: Number(m[1]), via: m[2] as Transport, actions: JSON.parse(el.slice(m[0].length)) as AiFlowAction[], ...(m[3] ? { spokenThrough: Number(m[3]) } : {}) };
}

function parseNoted(el: string): NotedEntry {
  const m = /^(\d+):/.exec(el);
  if (!m) throw new CorruptReplyError(`unsent element ${el.slice(0, 40)}`);
  return { seq: Number(m[1]), actions: JSON.parse(el.slice(m[0].length)) as AiFlowAction[] };
}
