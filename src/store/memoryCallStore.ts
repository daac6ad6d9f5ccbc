import type { AiFlowAction } from "../aiflow/actions.js";
import type { CallState } from "../core/callState.js";
import { CALLER_VERDICTS } from "../aiflow/eventKinds.js";
import {
  holdsSend,
  REPLY_KEEP,
  REPLY_TTL_MS,
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
import { InvariantError } from "../core/errors.js";

interface Hold {
  /** A holding line was the last answer: its follow-up events only collect. */
  outstanding: boolean;
  count: number;
  droppedThrough: number;
}

interface Call {
  /**
   * The state as last committed: the store's own JSON-plain copy (what a JSON round trip, as Redis
   * does it, would give), never an object a turn holds. Each get() hands out a fresh copy.
   */
  state?: object;
  expiresAt: number;
  queue: QueuedEvent[];
  lastSeq: number;
  processed: number;
  outbox: OutboxEntry[];
  hold: Hold;
  lease?: { token: string; expiresAt: number };
  /** session_end was committed: later events start no new conversation. */
  ended?: boolean;
  /** The highest `spokenThrough` delivered: the caller has heard every line through this one. */
  heard: number;
  /** `heard` when the latest barge-in arrived (see QueuedEvent.barged). */
  barged: number;
  /** Committed entries noted as never sent (see CallStore.markNotSent), until a commit says its state knows. */
  notSent?: NotedEntry[];
}

/** A call's answers to requests that carried a request id: what a resent one gets again (see RequestId). */
interface Replies {
  lastRunAt: number;
  /** Oldest first (a Map keeps insertion order): the oldest goes beyond REPLY_KEEP. */
  byId: Map<RequestId, { reply: unknown } | { error: unknown }>;
}

/**
 * Single-instance call store. Every method runs to completion without awaiting, so each is
 * atomic like the Redis store's scripts; the semantics are the same (see callStore.ts), request ids
 * included: nothing here loses a reply, but a client that retries with the same id (and the
 * simulation's lost replies) must find the contract the Redis store keeps.
 */
export class MemoryCallStore<S extends object = object> implements CallStore<S> {
  readonly shared = false;
  private readonly calls = new Map<string, Call>();
  /** Per call, apart from its record (as the Redis store's replies key): they outlive a call that ends or is swept. */
  private readonly replies = new Map<string, Replies>();
  private readonly sweeper: NodeJS.Timeout;
  /** Per call: who is told of its commits and put-backs (see CallStore.subscribe). */
  private readonly listeners = new Map<string, Set<() => void>>();

  constructor(
    private readonly now: () => number = Date.now,
    /** Idle calls (no state, nothing queued) are forgotten after this long. */
    private readonly idleTtlMs = 3_600_000,
    sweepIntervalMs = 60_000,
    /** Lease time: real time in production (leases are about processes staying alive); a simulation's virtual clock. */
    private readonly leaseNow: () => number = Date.now,
  ) {
    this.sweeper = setInterval(() => this.sweep(), sweepIntervalMs);
    this.sweeper.unref();
  }

  private call(id: string): Call {
    let c = this.calls.get(id);
    if (!c) {
      c = { expiresAt: this.now() + this.idleTtlMs, queue: [], lastSeq: 0, processed: 0, outbox: [], hold: { outstanding: false, count: 0, droppedThrough: 0 }, heard: 0, barged: 0 };
      this.calls.set(id, c);
    }
    return c;
  }

  /**
   * Runs a request that changes the call once per request id, as the Redis store's scripts do: a
   * resent id gets a copy of the first run's reply (or its error again), and nothing happens twice.
   */
  private once<T>(callId: string, requestId: RequestId | undefined, act: () => T): T {
    // Without an id nobody can send the request again: nothing to keep.
    if (requestId === undefined) return act();
    const now = this.now();
    let r = this.replies.get(callId);
    if (r && r.lastRunAt + REPLY_TTL_MS <= now) r = undefined;
    const known = r?.byId.get(requestId);
    if (known) {
      if ("error" in known) throw known.error;
      return jsonCopy(known.reply) as T;
    }
    if (!r) this.replies.set(callId, (r = { lastRunAt: now, byId: new Map() }));
    r.lastRunAt = now;
    try {
      const reply = act();
      r.byId.set(requestId, { reply: jsonCopy(reply) });
      return reply;
    } catch (error) {
      r.byId.set(requestId, { error });
      throw error;
    } finally {
      if (r.byId.size > REPLY_KEEP) r.byId.delete(r.byId.keys().next().value!);
    }
  }

  /** Leases are about real processes staying alive, so they run on real time (`leaseNow`), not on a test's clock. */
  private holds(c: Call, token: string): boolean {
    return c.lease !== undefined && c.lease.token === token && c.lease.expiresAt > this.leaseNow();
  }

  async arrive(callId: string, e: Arriving, requestId?: RequestId): Promise<Arrival> {
    return this.once(callId, requestId, (): Arrival => this.queue(callId, e));
  }

  async arriveAndTake(callId: string, e: Arriving, lease: LeaseTake, requestId?: RequestId): Promise<TakingArrival<S>> {
    return this.once(callId, requestId, (): TakingArrival<S> => {
      const arrival = this.queue(callId, e);
      if (arrival.kind !== "queued" || !this.take(callId, lease.token, lease.ttlMs)) return arrival;
      return { ...arrival, taken: this.next(callId, lease.token) };
    });
  }

  private queue(callId: string, e: Arriving): Arrival {
    {
      const c = this.call(callId);
      if (e.holdingFollowUp && c.hold.outstanding) return { kind: "collect" };
      const seq = ++c.lastSeq;
      // The store's own copy (as Redis keeps the JSON): the caller's object may change later.
      if ((e.event.type === "user_speak" && e.event.barged_in) || e.delayed) c.barged = Math.max(c.barged, c.heard);
      c.queue.push({ seq, key: e.key, event: jsonCopy(e.event), via: e.via, attempts: 0, heard: c.heard, barged: c.barged, ...(e.trace ? { trace: e.trace } : {}) });
      return { kind: "queued", seq };
    }
  }

  async acquireLease(callId: string, token: string, ttlMs: number): Promise<boolean> {
    return this.take(callId, token, ttlMs);
  }

  private take(callId: string, token: string, ttlMs: number): boolean {
    const c = this.call(callId);
    if (c.lease && c.lease.expiresAt > this.leaseNow() && c.lease.token !== token) return false;
    c.lease = { token, expiresAt: this.leaseNow() + ttlMs };
    return true;
  }

  async renewLease(callId: string, token: string, ttlMs: number): Promise<{ held: boolean; droppedThrough: number }> {
    const c = this.call(callId);
    if (!this.holds(c, token)) return { held: false, droppedThrough: c.hold.droppedThrough };
    c.lease!.expiresAt = this.leaseNow() + ttlMs;
    return { held: true, droppedThrough: c.hold.droppedThrough };
  }

  async releaseLease(callId: string, token: string): Promise<void> {
    const c = this.calls.get(callId);
    if (c?.lease?.token !== token) return;
    c.lease = undefined;
    // An event queued meanwhile waits for someone to take the lease.
    this.changed(callId);
  }

  async nextEvent(callId: string, token: string, requestId?: RequestId): Promise<NextEvent<S>> {
    return this.once(callId, requestId, (): NextEvent<S> => this.next(callId, token));
  }

  private next(callId: string, token: string): NextEvent<S> {
    const c = this.call(callId);
    if (!this.holds(c, token)) return { held: false, droppedThrough: c.hold.droppedThrough };
    const head = c.queue[0];
    if (!head) return { droppedThrough: c.hold.droppedThrough, held: true };
    head.attempts++;
    const pendingSends = c.outbox.filter((e) => e.seq < head.seq && holdsSend(e.actions)).map((e) => jsonCopy(e));
    const notSent = c.notSent?.length ? { notSent: jsonCopy(c.notSent) } : {};
    return { event: { ...head, event: jsonCopy(head.event) }, droppedThrough: c.hold.droppedThrough, held: true, pendingSends, ...notSent, current: { state: this.read(c) } };
  }

  async commitAndNext(callId: string, token: string, r: CommitRequest<S>, requestId?: RequestId): Promise<CommitThen<S>> {
    return this.once(callId, requestId, (): CommitThen<S> => {
      const result = this.commitNow(callId, token, r);
      if (result === "lease_lost") return { result };
      const next = this.next(callId, token);
      if (next.event) return { result, next };
      const c = this.call(callId);
      c.lease = undefined;
      return { result, released: { queued: c.lastSeq } };
    });
  }

  subscribe(callId: string, listener: () => void): Subscription {
    let set = this.listeners.get(callId);
    if (!set) this.listeners.set(callId, (set = new Set()));
    set.add(listener);
    return {
      ready: Promise.resolve(),
      close: () => {
        set.delete(listener);
        if (set.size === 0 && this.listeners.get(callId) === set) this.listeners.delete(callId);
      },
    };
  }

  /** Tell the call's subscribers, after the request that changed it has returned (as a pub/sub message comes after the reply). */
  private changed(callId: string): void {
    const set = this.listeners.get(callId);
    if (set) queueMicrotask(() => set.forEach((l) => l()));
  }

  async yieldEvent(callId: string, seq: number, requestId?: RequestId): Promise<void> {
    return this.once(callId, requestId, (): void => {
      const head = this.calls.get(callId)?.queue[0];
      if (head?.seq === seq && head.attempts > 0) head.attempts--;
    });
  }

  async commit(callId: string, token: string, r: CommitRequest<S>, requestId?: RequestId): Promise<CommitResult> {
    return this.once(callId, requestId, (): CommitResult => this.commitNow(callId, token, r));
  }

  private commitNow(callId: string, token: string, r: CommitRequest<S>): CommitResult {
    const result = this.commitBody(callId, token, r);
    if (result !== "lease_lost") this.changed(callId);
    return result;
  }

  private commitBody(callId: string, token: string, r: CommitRequest<S>): CommitResult {
    {
      const c = this.call(callId);
      if (!this.holds(c, token)) return "lease_lost";
      const head = c.queue[0];
      if (!head || head.seq !== r.seq) throw new InvariantError(`commit of event ${r.seq} for call ${callId}, but the queue head is ${head?.seq}`);
      c.queue.shift();
      c.processed = r.seq;
      if (r.droppable && r.seq <= c.hold.droppedThrough) return "dropped";
      if (r.state === null) {
        c.state = undefined;
        c.ended = true;
        c.outbox = [];
        c.notSent = undefined;
        // A new conversation under the same id counts its lines from 0 again.
        c.heard = 0;
        c.barged = 0;
        c.hold = { outstanding: false, count: 0, droppedThrough: c.hold.droppedThrough };
        return "committed";
      }
      if (r.state) {
        c.state = jsonCopy(r.state);
        c.expiresAt = this.now() + r.ttlSeconds * 1000;
        // A conversation again (a new session_start after the end): later events belong to it.
        c.ended = undefined;
        if (r.notSentSeen?.length) c.notSent = c.notSent?.filter((e) => !r.notSentSeen!.includes(e.seq));
      }
      if (r.withdraw?.length) c.outbox = c.outbox.filter((e) => !r.withdraw!.includes(e.seq));
      if (r.entry && r.entry.actions.length) c.outbox.push(jsonCopy(r.entry));
      else if (r.entry?.spokenThrough !== undefined) {
        // Nothing to deliver (streamed already, or silent): heard once what is still waiting before it is.
        const last = c.outbox.at(-1);
        if (last) last.spokenThrough = Math.max(last.spokenThrough ?? 0, r.entry.spokenThrough);
        else c.heard = Math.max(c.heard, r.entry.spokenThrough);
      }
      return "committed";
    }
  }

  async progress(callId: string): Promise<Progress> {
    const c = this.calls.get(callId);
    const ready: Record<Transport, number> = { http: 0, ws: 0 };
    if (!c) return { processed: 0, queued: 0, ready, ended: false };
    for (const e of c.outbox) ready[e.via]++;
    return { processed: c.processed, queued: c.lastSeq, ready, ended: c.ended === true };
  }

  async collect(callId: string, r: CollectRequest, requestId?: RequestId): Promise<Collected> {
    return this.once(callId, requestId, (): Collected => {
      const c = this.call(callId);
      // A send waits for every caller event queued after it: their "no" must be able to stop it.
      const verdictsDue = c.queue.filter((q) => CALLER_VERDICTS.has(q.event.type)).map((q) => q.seq);
      const held = (e: OutboxEntry) => !r.ignoreVerdicts && holdsSend(e.actions) && verdictsDue.some((s) => s > e.seq);
      const blockedFrom = Math.min(...c.outbox.filter(held).map((e) => e.seq));
      const mine = (e: OutboxEntry) => e.via === r.via && (r.collecting || e.seq === r.seq) && e.seq < blockedFrom;
      const taken = c.outbox.filter(mine);
      if (taken.length) {
        c.outbox = c.outbox.filter((e) => !mine(e));
        if (r.collecting) c.hold = { ...c.hold, outstanding: false, count: 0 };
        taken.sort((a, b) => a.seq - b.seq);
        for (const e of taken) if (e.spokenThrough !== undefined) c.heard = Math.max(c.heard, e.spokenThrough);
        return { kind: "actions", actions: taken.flatMap((e): AiFlowAction[] => e.actions), entries: jsonCopy(taken), processed: c.processed };
      }
      const pending = c.processed < c.lastSeq;
      if (!pending && r.collecting) c.hold = { ...c.hold, outstanding: false, count: 0 };
      if (!r.mayHold || !pending) return { kind: "nothing" };
      c.hold.count++;
      if (c.hold.count <= r.maxHoldingLines) {
        c.hold.outstanding = true;
        return { kind: "hold", count: c.hold.count };
      }
      c.hold = { outstanding: false, count: 0, droppedThrough: c.lastSeq };
      return { kind: "give_up", droppedThrough: c.lastSeq };
    });
  }

  async putBack(callId: string, entries: OutboxEntry[], processedAtCollect: number, requestId?: RequestId): Promise<OutboxEntry[]> {
    return this.once(callId, requestId, (): OutboxEntry[] => {
      const c = this.calls.get(callId);
      // The call ends: its session_end turn may have taken the outbox already, and its commit deletes it.
      if (!c || c.ended || c.queue.some((q) => q.event.type === "session_end")) return entries;
      const refused = entries.filter((e) => holdsSend(e.actions) && c.processed > processedAtCollect);
      const back = entries.filter((e) => !refused.includes(e) && !c.outbox.some((o) => o.seq === e.seq && o.via === e.via));
      c.outbox = [...jsonCopy(back), ...c.outbox].sort((a, b) => a.seq - b.seq);
      c.barged = Math.max(c.barged, c.heard);
      this.changed(callId);
      return refused;
    });
  }

  async markNotSent(callId: string, entries: NotedEntry[], requestId?: RequestId): Promise<void> {
    return this.once(callId, requestId, (): void => {
      const c = this.calls.get(callId);
      if (!c?.state || c.ended || c.expiresAt <= this.now()) return;
      const noted = (c.notSent ??= []);
      for (const e of entries) if (!noted.some((n) => n.seq === e.seq)) noted.push(jsonCopy({ seq: e.seq, actions: e.actions }));
    });
  }

  async get(callId: string): Promise<CallState<S> | undefined> {
    const c = this.calls.get(callId);
    return c ? this.read(c) : undefined;
  }

  private read(c: Call): CallState<S> | undefined {
    if (!c.state) return undefined;
    if (c.expiresAt <= this.now()) {
      c.state = undefined;
      return undefined;
    }
    // A copy: a turn that is dropped or fenced out changes its own copy, never what is stored.
    return jsonCopy(c.state) as CallState<S>;
  }

  async size(): Promise<number> {
    this.sweep();
    let n = 0;
    for (const c of this.calls.values()) if (c.state) n++;
    return n;
  }

  /** Drop expired calls: after a successful transfer sipgate may never send session_end. */
  sweep(): void {
    const t = this.now();
    for (const [id, r] of this.replies) if (r.lastRunAt + REPLY_TTL_MS <= t) this.replies.delete(id);
    for (const [id, c] of this.calls) {
      if (c.expiresAt > t) continue;
      c.state = undefined;
      if (c.queue.length === 0 && !(c.lease && c.lease.expiresAt > this.leaseNow())) this.calls.delete(id);
    }
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
  }
}

/**
 * A copy of `v` equal to `JSON.parse(JSON.stringify(v))`, what the Redis store's round trip
 * gives, without the text in between (several times faster for call state; strings are shared,
 * not copied). It follows JSON.stringify's own steps: toJSON (with its key), boxed primitives
 * unwrapped, NaN and ±Infinity as null, -0 as 0, undefined, functions and symbols left out of
 * objects and null in arrays, only own enumerable string keys; the result's objects are plain.
 * Like JSON.stringify it throws on a BigInt and on a cycle.
 */
export function jsonCopy<T>(v: T): T {
  const out = copyValue(v, "");
  return (out === OMIT ? undefined : out) as T;
}

const OMIT = Symbol("omit");

function copyValue(value: unknown, key: string): unknown {
  let v = value;
  if ((typeof v === "object" && v !== null) || typeof v === "bigint") {
    const toJSON = (v as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === "function") v = toJSON.call(v, key);
  }
  if (typeof v === "object" && v !== null) v = unboxed(v);
  switch (typeof v) {
    case "string":
    case "boolean":
      return v;
    case "number":
      return Number.isFinite(v) ? (v === 0 ? 0 : v) : null;
    case "bigint":
      // JSON.stringify's own TypeError.
      return JSON.stringify(v);
    case "object": {
      if (v === null) return null;
      if (Array.isArray(v)) {
        const a = new Array<unknown>(v.length);
        for (let i = 0; i < v.length; i++) {
          const x = copyValue(v[i], String(i));
          a[i] = x === OMIT ? null : x;
        }
        return a;
      }
      const o: Record<string, unknown> = {};
      for (const k of Object.keys(v)) {
        const x = copyValue((v as Record<string, unknown>)[k], k);
        if (x === OMIT) continue;
        // An own "__proto__" key (JSON.parse makes one) must stay a key, not become the prototype.
        if (k === "__proto__") Object.defineProperty(o, k, { value: x, enumerable: true, writable: true, configurable: true });
        else o[k] = x;
      }
      return o;
    }
    default:
      // undefined, functions, symbols: left out of objects, null in arrays.
      return OMIT;
  }
}

const UNBOX = [Number.prototype.valueOf, String.prototype.valueOf, Boolean.prototype.valueOf, BigInt.prototype.valueOf] as Array<(this: unknown) => unknown>;

/** A boxed primitive's value (new Number(1) is written as 1), as JSON.stringify does; any other object as it is. */
function unboxed(v: object): unknown {
  const proto = Object.getPrototypeOf(v);
  if (proto === Object.prototype || proto === Array.prototype || proto === null) return v;
  for (const unbox of UNBOX) {
    try {
      return unbox.call(v);
    } catch {
      // Not that kind of box.
    }
  }
  return v;
}
