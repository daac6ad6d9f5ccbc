import type { Redis } from "ioredis";
import { reviewEntrySchema, type ReviewEntry } from "./entries.js";

/**
 * Where the call review keeps its timelines: memory for one instance, Redis when instances share
 * one (`REDIS_URL`), so any instance shows every call. Its own keys (`<prefix>review:v1:…`), apart
 * from the call store's: a call's timeline outlives the call by `review.retentionDays`.
 */
export interface ReviewStore {
  /** Adds entries to a call's timeline (created on first use, its retention renewed). */
  append(callId: string, entries: ReviewEntry[]): Promise<void>;
  /** Call ids, newest call first. */
  recent(limit: number): Promise<string[]>;
  /** A call's timeline in time order; undefined when unknown or expired. */
  get(callId: string): Promise<ReviewEntry[] | undefined>;
}

/** Time order, stable for entries of the same millisecond (appended in order). */
function ordered(entries: ReviewEntry[]): ReviewEntry[] {
  return entries.map((e, i) => [e, i] as const).sort((a, b) => a[0].at - b[0].at || a[1] - b[1]).map(([e]) => e);
}

/** How often an append looks for calls past their retention (reads look every time). */
const EXPIRY_SCAN_EVERY_MS = 1000;

export class MemoryReviewStore implements ReviewStore {
  private readonly calls = new Map<string, { started: number; touched: number; entries: ReviewEntry[] }>();
  /** When an append next looks for expired calls. */
  private nextExpiryScan = -Infinity;

  constructor(
    private readonly retentionMs: number,
    /** Calls kept at most: the oldest go first (one process's memory, unlike Redis). */
    private readonly maxCalls: number,
    private readonly now: () => number = Date.now,
  ) {}

  async append(callId: string, entries: ReviewEntry[]): Promise<void> {
    const t = this.now();
    let call = this.calls.get(callId);
    if (!call) {
      this.calls.set(callId, (call = { started: entries[0]?.at ?? t, touched: t, entries: [] }));
    }
    call.touched = t;
    call.entries.push(...entries);
    // Looking at every call on every append cost a few per cent of the CPU per caller event with a
    // thousand calls live: an append looks for expired calls at most once a second (reads always
    // do, so none is ever shown late), and keeps the cap at once.
    if (t >= this.nextExpiryScan) this.prune(t);
    else this.cap();
  }

  async recent(limit: number): Promise<string[]> {
    this.prune(this.now());
    return [...this.calls.entries()]
      .sort((a, b) => b[1].started - a[1].started)
      .slice(0, limit)
      .map(([id]) => id);
  }

  async get(callId: string): Promise<ReviewEntry[] | undefined> {
    this.prune(this.now());
    const call = this.calls.get(callId);
    return call ? ordered(call.entries) : undefined;
  }

  private prune(t: number): void {
    for (const [id, c] of this.calls) if (t - c.touched > this.retentionMs) this.calls.delete(id);
    this.nextExpiryScan = t + EXPIRY_SCAN_EVERY_MS;
    this.cap();
  }

  private cap(): void {
    // Insertion order is start order: the oldest calls go first.
    while (this.calls.size > this.maxCalls) this.calls.delete(this.calls.keys().next().value!);
  }
}

/** How long appends wait to be written together (one pipeline for every call that had entries). */
const REDIS_BATCH_MS = 20;
/** How often the index drops calls past their retention (each drop is a range delete on the index). */
const INDEX_PRUNE_EVERY_MS = 1000;

/**
 * Redis timelines. Appends are written behind: the entries of every call appended to within
 * `REDIS_BATCH_MS` go in one pipeline (per call one RPUSH, PEXPIRE and ZADD NX), and the index is
 * pruned at most once a second. An event makes several entries (its arrival, its answer, its turn,
 * its ledger records); written one MULTI each, they were six commands and a socket write apiece,
 * a large share of the service's CPU per event with hundreds of calls live. An append's promise
 * settles once its batch is written (the recorder waits for it before reading an ended call), and a
 * call's entries keep their order: batches go out one after another on the one connection.
 */
export class RedisReviewStore implements ReviewStore {
  private buffered = new Map<string, ReviewEntry[]>();
  private waiting: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  private timer: ReturnType<typeof setTimeout> | undefined;
  private nextIndexPrune = -Infinity;

  constructor(
    private readonly redis: Redis,
    private readonly retentionMs: number,
    private readonly prefix = "aiflow:",
    private readonly now: () => number = Date.now,
    private readonly batchMs = REDIS_BATCH_MS,
  ) {}

  private index(): string {
    return `${this.prefix}review:v1:calls`;
  }

  private timeline(callId: string): string {
    return `${this.prefix}review:v1:call:{${callId}}`;
  }

  append(callId: string, entries: ReviewEntry[]): Promise<void> {
    if (!entries.length) return Promise.resolve();
    const list = this.buffered.get(callId);
    if (list) list.push(...entries);
    else this.buffered.set(callId, [...entries]);
    const done = new Promise<void>((resolve, reject) => this.waiting.push({ resolve, reject }));
    this.timer ??= setTimeout(() => this.flush(), this.batchMs);
    return done;
  }

  private flush(): void {
    this.timer = undefined;
    const calls = this.buffered;
    const waiting = this.waiting;
    this.buffered = new Map();
    this.waiting = [];
    const t = this.now();
    const batch = this.redis.pipeline();
    for (const [callId, entries] of calls) {
      batch.rpush(this.timeline(callId), ...entries.map((e) => JSON.stringify(e)));
      batch.pexpire(this.timeline(callId), this.retentionMs);
      // The call's first entry dates it in the list; later appends (another instance) leave that.
      batch.zadd(this.index(), "NX", entries[0]!.at, callId);
    }
    if (t >= this.nextIndexPrune) {
      batch.zremrangebyscore(this.index(), "-inf", t - this.retentionMs);
      this.nextIndexPrune = t + INDEX_PRUNE_EVERY_MS;
    }
    batch.exec().then(
      (replies) => {
        const failed = replies?.find(([e]) => e)?.[0];
        for (const w of waiting) {
          if (failed) w.reject(failed);
          else w.resolve();
        }
      },
      (e: Error) => {
        for (const w of waiting) w.reject(e);
      },
    );
  }

  async recent(limit: number): Promise<string[]> {
    return this.redis.zrevrangebyscore(this.index(), "+inf", this.now() - this.retentionMs, "LIMIT", 0, limit);
  }

  async get(callId: string): Promise<ReviewEntry[] | undefined> {
    const raw = await this.redis.lrange(this.timeline(callId), 0, -1);
    if (!raw.length) return undefined;
    const entries: ReviewEntry[] = [];
    for (const r of raw) {
      // An entry another release wrote in a shape this one does not know is left out, not a crash of the page.
      const parsed = reviewEntrySchema.safeParse(JSON.parse(r));
      if (parsed.success) entries.push(parsed.data);
    }
    return ordered(entries);
  }
}
