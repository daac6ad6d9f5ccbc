import type { AiFlowAction } from "../aiflow/actions.js";
import type { CallState } from "../core/callState.js";
import type { Arrival, CallStore, Collected, CollectRequest, CommitRequest, CommitResult, OutboxEntry, Progress, QueuedEvent, Transport } from "./callStore.js";

interface Hold {
  /** A holding line was the last answer: its follow-up events only collect. */
  outstanding: boolean;
  count: number;
  droppedThrough: number;
}

interface Call {
  /** State kept as JSON text: the same round trip Redis does, so nothing unserializable slips in. */
  stateJson?: string;
  expiresAt: number;
  queue: QueuedEvent[];
  lastSeq: number;
  processed: number;
  outbox: OutboxEntry[];
  hold: Hold;
  lease?: { token: string; expiresAt: number };
  /** session_end was committed: later events start no new conversation. */
  ended?: boolean;
}

/**
 * Single-instance call store. Every method runs to completion without awaiting, so each is
 * atomic like the Redis store's scripts; the semantics are the same (see callStore.ts).
 */
export class MemoryCallStore<S extends object = object> implements CallStore<S> {
  readonly shared = false;
  private readonly calls = new Map<string, Call>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    private readonly now: () => number = Date.now,
    /** Idle calls (no state, nothing queued) are forgotten after this long. */
    private readonly idleTtlMs = 3_600_000,
    sweepIntervalMs = 60_000,
  ) {
    this.sweeper = setInterval(() => this.sweep(), sweepIntervalMs);
    this.sweeper.unref();
  }

  private call(id: string): Call {
    let c = this.calls.get(id);
    if (!c) {
      c = { expiresAt: this.now() + this.idleTtlMs, queue: [], lastSeq: 0, processed: 0, outbox: [], hold: { outstanding: false, count: 0, droppedThrough: 0 } };
      this.calls.set(id, c);
    }
    return c;
  }

  /** Leases are about real processes staying alive, so they run on real time, not on a test's clock. */
  private holds(c: Call, token: string): boolean {
    return c.lease !== undefined && c.lease.token === token && c.lease.expiresAt > Date.now();
  }

  async arrive(callId: string, e: Parameters<CallStore["arrive"]>[1]): Promise<Arrival> {
    const c = this.call(callId);
    if (e.holdingFollowUp && c.hold.outstanding) return { kind: "collect" };
    const seq = ++c.lastSeq;
    c.queue.push({ seq, key: e.key, event: e.event, via: e.via, attempts: 0 });
    return { kind: "queued", seq };
  }

  async acquireLease(callId: string, token: string, ttlMs: number): Promise<boolean> {
    const c = this.call(callId);
    if (c.lease && c.lease.expiresAt > Date.now() && c.lease.token !== token) return false;
    c.lease = { token, expiresAt: Date.now() + ttlMs };
    return true;
  }

  async renewLease(callId: string, token: string, ttlMs: number): Promise<{ held: boolean; droppedThrough: number }> {
    const c = this.call(callId);
    if (!this.holds(c, token)) return { held: false, droppedThrough: c.hold.droppedThrough };
    c.lease!.expiresAt = Date.now() + ttlMs;
    return { held: true, droppedThrough: c.hold.droppedThrough };
  }

  async releaseLease(callId: string, token: string): Promise<void> {
    const c = this.calls.get(callId);
    if (c?.lease?.token === token) c.lease = undefined;
  }

  async nextEvent(callId: string, token: string): Promise<{ event?: QueuedEvent; droppedThrough: number; held: boolean }> {
    const c = this.call(callId);
    if (!this.holds(c, token)) return { held: false, droppedThrough: c.hold.droppedThrough };
    const head = c.queue[0];
    if (head) head.attempts++;
    return { event: head ? structuredClone(head) : undefined, droppedThrough: c.hold.droppedThrough, held: true };
  }

  async commit(callId: string, token: string, r: CommitRequest<S>): Promise<CommitResult> {
    const c = this.call(callId);
    if (!this.holds(c, token)) return "lease_lost";
    const head = c.queue[0];
    if (!head || head.seq !== r.seq) throw new Error(`commit of event ${r.seq} for call ${callId}, but the queue head is ${head?.seq}`);
    c.queue.shift();
    c.processed = r.seq;
    if (r.droppable && r.seq <= c.hold.droppedThrough) return "dropped";
    if (r.state === null) {
      c.stateJson = undefined;
      c.ended = true;
      c.outbox = [];
      c.hold = { outstanding: false, count: 0, droppedThrough: c.hold.droppedThrough };
      return "committed";
    }
    if (r.state) {
      c.stateJson = JSON.stringify(r.state);
      c.expiresAt = this.now() + r.ttlSeconds * 1000;
    }
    if (r.entry && r.entry.actions.length) c.outbox.push(structuredClone(r.entry));
    return "committed";
  }

  async progress(callId: string): Promise<Progress> {
    const c = this.calls.get(callId);
    const ready: Record<Transport, number> = { http: 0, ws: 0 };
    if (!c) return { processed: 0, queued: 0, ready, ended: false };
    for (const e of c.outbox) ready[e.via]++;
    return { processed: c.processed, queued: c.lastSeq, ready, ended: c.ended === true };
  }

  async collect(callId: string, r: CollectRequest): Promise<Collected> {
    const c = this.call(callId);
    const mine = (e: OutboxEntry) => e.via === r.via && (r.collecting || e.seq === r.seq);
    const taken = c.outbox.filter(mine);
    if (taken.length) {
      c.outbox = c.outbox.filter((e) => !mine(e));
      if (r.collecting) c.hold = { ...c.hold, outstanding: false, count: 0 };
      return { kind: "actions", actions: taken.sort((a, b) => a.seq - b.seq).flatMap((e): AiFlowAction[] => e.actions) };
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
  }

  async get(callId: string): Promise<CallState<S> | undefined> {
    const c = this.calls.get(callId);
    if (!c?.stateJson) return undefined;
    if (c.expiresAt <= this.now()) {
      c.stateJson = undefined;
      return undefined;
    }
    return JSON.parse(c.stateJson) as CallState<S>;
  }

  async size(): Promise<number> {
    this.sweep();
    let n = 0;
    for (const c of this.calls.values()) if (c.stateJson) n++;
    return n;
  }

  /** Drop expired calls: after a successful transfer sipgate may never send session_end. */
  sweep(): void {
    const t = this.now();
    for (const [id, c] of this.calls) {
      if (c.expiresAt > t) continue;
      c.stateJson = undefined;
      if (c.queue.length === 0 && !(c.lease && c.lease.expiresAt > Date.now())) this.calls.delete(id);
    }
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
  }
}
