import type { AiFlowAction } from "../aiflow/actions.js";
import type { AiFlowEvent } from "../aiflow/events.js";
import type { CallState } from "../core/callState.js";
import { AgentError } from "../core/errors.js";

/**
 * Where a call lives between events, shared by every instance that may receive its events
 * (memory for one instance, Redis for several).
 *
 * A turn is decoupled from the transport answer that asked for it:
 *   - every event of a call is queued in arrival order (`arrive`) and processed one at a time
 *     by whichever instance holds the call's lease (a short lease, renewed while a turn runs);
 *   - the lease holder writes the turn's result with one fenced `commit`: new state, the
 *     actions into the call's outbox, the event off the queue, all or nothing, and nothing at
 *     all when its lease was lost (so two instances can never both act for one call);
 *   - any instance answers an event from the outbox (`collect`), without waiting for the
 *     lease: the actions of a turn that missed its deadline leave with the call's next
 *     collecting event, each exactly once.
 */

export type Transport = "http" | "ws";

/** An event waiting in its call's queue. */
export interface QueuedEvent {
  /** Per-call arrival number, from 1. */
  seq: number;
  /** Identifies the delivery (hash of the raw body): redelivery detection. */
  key: string;
  event: AiFlowEvent;
  via: Transport;
  /** Times a lease holder took it up without finishing it (a turn that kills its instance is not retried forever); a live instance that lost the lease gives its attempt back. */
  attempts: number;
  /**
   * How many of the call's lines had reached the caller when this event arrived (the store's
   * `heard` mark, see OutboxEntry.spokenThrough): the lines the caller could be answering.
   */
  heard: number;
  /**
   * The heard mark when the latest barge-in arrived, up to this event (this one included): a line
   * through this mark may have been cut short by the caller, whatever became of that barge-in's turn.
   */
  barged: number;
  /** The trace of the event's span where it arrived (W3C traceparent), when traced: a turn run on another instance links to it. */
  trace?: string;
}

/** Actions of one processed event, waiting to be collected by an answer. */
export interface OutboxEntry {
  seq: number;
  via: Transport;
  actions: AiFlowAction[];
  /**
   * `CallState.spoken` after the turn that produced it: once the entry is delivered the caller
   * has heard every line through this one, and the store's `heard` mark moves up to it.
   */
  spokenThrough?: number;
}

/** An entry holds a send: it may not leave while a caller event queued after it is unevaluated. */
export function holdsSend(actions: readonly AiFlowAction[]): boolean {
  return actions.some((a) => a.type === "send_sms");
}

/** An event to queue. */
export interface Arriving {
  key: string;
  event: AiFlowEvent;
  via: Transport;
  holdingFollowUp: boolean;
  /**
   * Queued later than it arrived (kept through a store outage): lines delivered meanwhile may
   * have reached the caller only after they said it. Like a barge-in, it marks every line delivered
   * so far as possibly unheard (the barged mark), so a yes in it answers no question asked before.
   */
  delayed?: boolean;
  /** See QueuedEvent.trace. */
  trace?: string;
}

export type Arrival =
  /** Queued for processing with this number. */
  | { kind: "queued"; seq: number }
  /**
   * Not queued: a timeout or speech-ended event caused by a holding line. It only collects
   * what is ready; to the conversation it never happened (it is not caller silence).
   */
  | { kind: "collect" };

export interface CollectRequest {
  via: Transport;
  /** The answering event's own number (undefined for a collect-only event). */
  seq?: number;
  /** True for events whose answer may carry earlier turns' late actions (not assistant_speak). */
  collecting: boolean;
  /** True when nothing ready may be answered with a holding line (else: nothing). */
  mayHold: boolean;
  maxHoldingLines: number;
  /** Take every entry of the transport, sends held for a verdict included (the call ends: all of it is discarded). */
  ignoreVerdicts?: boolean;
}

/**
 * A collect that takes nothing and changes nothing (no own seq, not collecting, no holding line).
 * Sent under the request id of a collect whose reply never came, it gets that collect's reply if
 * the store ran it, and otherwise uses the id up (answered "nothing"): what the lost collect took
 * is known, and a collect that never ran never will under that id.
 */
export function replayCollect(via: Transport): CollectRequest {
  return { via, collecting: false, mayHold: false, maxHoldingLines: 0 };
}

export type Collected =
  /** `entries`: what was taken, in order (put back with `putBack` if the answer never reached sipgate). */
  | { kind: "actions"; actions: AiFlowAction[]; entries: OutboxEntry[]; processed: number }
  /** Nothing ready yet: the caller hears holding line number `count`. */
  | { kind: "hold"; count: number }
  /** Still nothing after the last holding line: apologize; conversational turns through `droppedThrough` are dropped. */
  | { kind: "give_up"; droppedThrough: number }
  | { kind: "nothing" };

export interface CommitRequest<S extends object = object> {
  seq: number;
  /** New state; null: the call ended (session_end), its state, outbox and holding record go; undefined: state unchanged. */
  state: CallState<S> | null | undefined;
  ttlSeconds: number;
  /** Actions to put in the outbox (none: nothing to deliver). */
  entry?: OutboxEntry;
  /** A conversational turn: dropped instead of committed if an answer gave up on it meanwhile. */
  droppable: boolean;
  /**
   * Outbox entries (by seq) this turn took back: pending sends the caller's "no" overtook. They
   * are removed with the commit, never delivered (the caller's event kept them from leaving).
   */
  withdraw?: number[];
  /**
   * Seqs of `NextEvent.notSent` entries this turn's state was made true for (it no longer counts
   * their sends): the store forgets them with the commit. Only with a state written.
   */
  notSentSeen?: number[];
}

export interface NextEvent<S extends object = object> {
  event?: QueuedEvent;
  droppedThrough: number;
  held: boolean;
  pendingSends?: OutboxEntry[];
  /** Committed entries that never reached sipgate, noted after their commit (`markNotSent`): the turn makes its state true for them. */
  notSent?: NotedEntry[];
  /** The call's state as last committed, read with the event (set whenever `event` is): the turn needs no `get`. */
  current?: { state: CallState<S> | undefined };
}

/** A committed entry noted as never sent (see CallStore.markNotSent): the event that produced it, and its actions. */
export type NotedEntry = Pick<OutboxEntry, "seq" | "actions">;

export type CommitResult = "committed" | "dropped" | "lease_lost";

/** The lease an arrival takes for the instance that queues it, when nobody holds it. */
export interface LeaseTake {
  token: string;
  ttlMs: number;
}

/** `taken`: the lease was free and is now `token`'s; the call's next event, as `nextEvent` gives it. */
export type TakingArrival<S extends object = object> = Arrival & { taken?: NextEvent<S> };

/**
 * What a commit that goes on does next, in the same request: the call's next event (as `nextEvent`
 * gives it) when one is queued, else the lease is released (`released`, with the highest seq queued
 * then: an event queued later finds the lease free).
 */
export interface CommitThen<S extends object = object> {
  result: CommitResult;
  next?: NextEvent<S>;
  released?: { queued: number };
}

export interface Progress {
  /** Highest seq taken off the queue (processed, dropped or skipped). */
  processed: number;
  /** Highest seq queued. */
  queued: number;
  /** Outbox entries waiting, by transport. */
  ready: Record<Transport, number>;
  /** The call ended (session_end): a late or redelivered event starts no new conversation. */
  ended: boolean;
}

/**
 * A store request that changes the call (count, queue, take) carries a request id as its last
 * argument (every argument before it is required). A client may send the same request again when
 * the first reply was lost (ioredis resends it after a reconnect): a request id the store has
 * answered before gets that first reply again, and nothing changes a second time. Without one the
 * store makes a fresh id (the request cannot be resent). Replies are kept REPLY_KEEP runs per
 * call, REPLY_TTL_MS after the call's last run.
 */
export type RequestId = string;

/**
 * How long, and how many of a call's latest replies, a store keeps for a resent request: ioredis
 * resends within its retry delay (at most 2 s by default); a pipeline that retries with the same
 * id does so within MAX_WATCH_MS at most, but usually within a second.
 */
export const REPLY_TTL_MS = 300_000;
export const REPLY_KEEP = 64;

/** A store request (method), as a client sends it. */
export type StoreRequest = Exclude<keyof CallStore, "shared" | "close" | "subscribe">;

/**
 * Why each request is safe to send twice (what a client that resends after a lost reply does):
 *   request_id  changes the call; the store answers a known id with its first reply (see RequestId);
 *   safe_twice  changes the call, but a second run changes nothing more: acquire (already ours:
 *               refreshed), renew (extends again), release (compare-and-delete);
 *   read        changes nothing.
 * A request with no entry here could not be resent safely; the type makes a new one choose.
 */
export const RESEND_SAFETY = {
  arrive: "request_id",
  arriveAndTake: "request_id",
  commitAndNext: "request_id",
  nextEvent: "request_id",
  yieldEvent: "request_id",
  commit: "request_id",
  collect: "request_id",
  putBack: "request_id",
  markNotSent: "request_id",
  acquireLease: "safe_twice",
  renewLease: "safe_twice",
  releaseLease: "safe_twice",
  progress: "read",
  get: "read",
  size: "read",
} as const satisfies Record<StoreRequest, "request_id" | "safe_twice" | "read">;

/** A subscription to a call's changes (see CallStore.subscribe). */
export interface Subscription {
  /** Settles once notices flow (a read after it misses no change); also when subscribing failed (waits look again after a lease's time). */
  ready: Promise<void>;
  close(): void;
}

/** `S`: the flows' slice of call state, carried through untouched. */
export interface CallStore<S extends object = object> {
  /** Queue an event (or recognise a collect-only event while a holding line is outstanding). */
  arrive(callId: string, e: Arriving, requestId?: RequestId): Promise<Arrival>;
  /**
   * `arrive`, and when the event is queued and nobody holds the call's lease, take it for `lease`
   * and the call's next event with it (attempts counted), all in one request: an instance whose
   * event finds the call idle runs its turn without asking again.
   */
  arriveAndTake(callId: string, e: Arriving, lease: LeaseTake, requestId?: RequestId): Promise<TakingArrival<S>>;
  /** Take the call's lease with `token` if nobody holds it. */
  acquireLease(callId: string, token: string, ttlMs: number): Promise<boolean>;
  /** Extend our lease; `held: false` if it was lost. Also tells how far answers gave up (to abort a dropped turn early). */
  renewLease(callId: string, token: string, ttlMs: number): Promise<{ held: boolean; droppedThrough: number }>;
  releaseLease(callId: string, token: string): Promise<void>;
  /**
   * The oldest queued event (its attempts counted), if `token` holds the lease, with the
   * undelivered outbox entries of earlier events that hold a send (`pendingSends`): this event
   * overtook them, so they wait for its verdict.
   */
  nextEvent(callId: string, token: string, requestId?: RequestId): Promise<NextEvent<S>>;
  /** A live instance lost the lease mid-turn: the attempt it counted for event `seq` is given back (unfenced; only while `seq` is still the head). */
  yieldEvent(callId: string, seq: number, requestId?: RequestId): Promise<void>;
  /** Fenced: only while `token` holds the lease. */
  commit(callId: string, token: string, c: CommitRequest<S>, requestId?: RequestId): Promise<CommitResult>;
  /**
   * `commit`, then, when it committed or dropped the event, the call's next event or (none queued)
   * the lease released, in one request (see CommitThen). A lost lease: `{ result: "lease_lost" }`.
   */
  commitAndNext(callId: string, token: string, c: CommitRequest<S>, requestId?: RequestId): Promise<CommitThen<S>>;
  progress(callId: string): Promise<Progress>;
  /**
   * Tell `listener` whenever a commit or put-back changes the call, whichever instance made it
   * (Redis: pub/sub; memory: in process), so a wait for another instance's progress needs no
   * polling. A hint, not a guarantee (a message may be lost while a subscriber reconnects): waits
   * still read `progress` when woken, and look again after a lease's time.
   */
  subscribe(callId: string, listener: () => void): Subscription;
  /**
   * Answer an event from the outbox, or decide on a holding line / giving up. Atomic. Entries are
   * taken in seq order up to the first one that holds a send while a caller event queued after
   * it is still unevaluated (CALLER_VERDICTS): that one and everything after it wait. Delivered
   * entries move the call's `heard` mark to their `spokenThrough`.
   */
  collect(callId: string, r: CollectRequest, requestId?: RequestId): Promise<Collected>;
  /**
   * An answer carrying these collected entries never reached sipgate (its write failed): they go
   * back to the front of the outbox, to leave with the call's next answer (or be withdrawn at its
   * end), and whatever had been delivered may not have been heard (the barged mark moves up to
   * the heard mark: a question asked before is asked again before a yes counts). Not put back, and
   * returned: everything when the call ended or its session_end is queued, and an entry holding a send when an event was
   * processed since the collect (`processedAtCollect`): that event never saw the send, so its "no"
   * could not stop it. The caller records what comes back as not delivered.
   */
  putBack(callId: string, entries: OutboxEntry[], processedAtCollect: number, requestId?: RequestId): Promise<OutboxEntry[]>;
  /**
   * Committed entries whose actions never reached sipgate, found out outside any turn (their answer
   * could not be written, and they could not go back): the call's state as committed still counts
   * them (an SMS "sent"). Every later `nextEvent` returns them (`notSent`) until a commit that wrote
   * a state names them in `notSentSeen`. Nothing for a call that ended or has no state. An entry
   * already noted (its seq) is not noted twice.
   */
  markNotSent(callId: string, entries: NotedEntry[], requestId?: RequestId): Promise<void>;
  /** The call's state as last committed (read-only; tests, health). */
  get(callId: string): Promise<CallState<S> | undefined>;
  /** Number of live calls (for health and metrics). */
  size(): Promise<number>;
  /** True when every instance shares this store (then others' progress must be polled). */
  readonly shared: boolean;
  close(): Promise<void>;
}

/** The store could not be reached: the event cannot be processed safely (no state, no send). */
export class StoreUnavailableError extends AgentError {
  readonly code = "store_unavailable";
}
