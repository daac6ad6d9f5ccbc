import { randomUUID } from "node:crypto";
import { checkLimit, retention, wholeMs, type Claim, type DeadLetter, type Outbox, type OutboxOptions, type PutOptions, type PutResult, type SettleResult } from "./outbox.js";

interface Entry {
  body: string;
  final: boolean;
  attempts: number;
  version: number;
  /** The due time the last put (or retry) asked for. */
  due: number;
  /** When the entry is claimable: `due`, or while claimed the later of the lease end and `due` (the Redis ZSET score). */
  score: number;
  /** The current claim's token ("" when unclaimed). */
  token: string;
  /** The revision of the body (PutOptions.revision). */
  revision: number;
}

/**
 * Single-instance outbox. Every method runs to completion without awaiting, so each is atomic
 * like the Redis outbox's scripts; the semantics are the same (test/outbox.contract.ts runs
 * against both).
 */
export class MemoryOutbox implements Outbox {
  private readonly entries = new Map<string, Entry>();
  /** key -> ms epoch until which puts are ignored. Insertion order is expiry order (constant period). */
  private readonly tombstones = new Map<string, number>();
  /** key -> dead letter and the end of its retention; insertion order is expiry order too. */
  private readonly dead = new Map<string, { letter: DeadLetter; until: number }>();
  private readonly tombstoneMs: number;
  private readonly deadLetterMs: number;

  constructor(
    private readonly now: () => number = Date.now,
    opts: OutboxOptions = {},
  ) {
    ({ tombstoneMs: this.tombstoneMs, deadLetterMs: this.deadLetterMs } = retention(opts));
  }

  async put(key: string, body: string, dueAt: number, opts: PutOptions = {}): Promise<PutResult> {
    const due = wholeMs(dueAt, "dueAt");
    const now = this.now();
    this.sweep(now);
    if ((this.tombstones.get(key) ?? -Infinity) > now) return "ignored_delivered";
    const final = opts.final === true;
    const revision = opts.revision ?? 0;
    const e = this.entries.get(key);
    if (!e) {
      this.entries.set(key, { body, final, attempts: 0, version: 1, due, score: due, token: "", revision });
      return "stored";
    }
    if (e.final && !final) return "ignored_final";
    if (!final && revision < e.revision) return "ignored_older";
    // The same put again changes nothing (as a resent put in the Redis outbox).
    if (e.final === final && e.body === body && e.revision === revision && e.due === due) return "stored";
    e.revision = revision;
    e.body = body;
    e.final = final;
    e.version += 1;
    e.due = due;
    // A claim in flight keeps the entry until its lease ends: one post per key at a time.
    e.score = e.token !== "" && e.score > now ? Math.max(e.score, due) : due;
    return "stored";
  }

  async claimDue(now: number, limit: number, leaseMs: number): Promise<Claim[]> {
    checkLimit(limit, leaseMs);
    const at = wholeMs(now, "now");
    const leaseUntil = at + wholeMs(leaseMs, "leaseMs");
    // Earliest first, ties by key: the order of ZRANGEBYSCORE.
    const due = [...this.entries].filter(([, e]) => e.score <= at).sort(([ka, a], [kb, b]) => a.score - b.score || (ka < kb ? -1 : ka > kb ? 1 : 0));
    const batch = randomUUID();
    return due.slice(0, limit).map(([key, e]) => {
      e.token = `${batch}:${key}`;
      e.score = leaseUntil;
      return { key, body: e.body, final: e.final, attempts: e.attempts, version: e.version, token: e.token, leaseUntil };
    });
  }

  async delivered(claim: Claim): Promise<SettleResult> {
    const e = this.held(claim);
    if (!e) return "stale";
    if (e.version !== claim.version) return this.release(e, e.due);
    this.finish(claim.key);
    return "settled";
  }

  async retryLater(claim: Claim, dueAt: number, _error: string): Promise<SettleResult> {
    const due = wholeMs(dueAt, "dueAt");
    const e = this.held(claim);
    if (!e) return "stale";
    e.attempts += 1;
    if (e.version !== claim.version) return this.release(e, Math.max(e.due, due));
    e.due = due;
    e.token = "";
    e.score = due;
    return "settled";
  }

  async deadLetter(claim: Claim, error: string): Promise<SettleResult> {
    const e = this.held(claim);
    if (!e) return "stale";
    e.attempts += 1;
    if (e.version !== claim.version) return this.release(e, e.due);
    const now = this.now();
    this.dead.delete(claim.key); // re-inserted at the end: insertion order stays expiry order
    this.dead.set(claim.key, { letter: { key: claim.key, body: e.body, final: e.final, attempts: e.attempts, error, at: now }, until: now + this.deadLetterMs });
    this.finish(claim.key);
    return "settled";
  }

  async deadLetters(): Promise<DeadLetter[]> {
    this.sweep(this.now());
    return [...this.dead.values()].map((d) => ({ ...d.letter })).sort((a, b) => a.at - b.at);
  }

  async redrive(key: string, dueAt: number): Promise<"requeued" | "no_dead_letter"> {
    const due = wholeMs(dueAt, "dueAt");
    this.sweep(this.now());
    const d = this.dead.get(key);
    if (!d) return "no_dead_letter";
    this.dead.delete(key);
    this.tombstones.delete(key);
    this.entries.delete(key);
    return (await this.put(key, d.letter.body, due, { final: d.letter.final })) === "stored" ? "requeued" : "no_dead_letter";
  }

  async pending(): Promise<number> {
    return this.entries.size;
  }

  async close(): Promise<void> {
    // Nothing to release: no timers, no connections.
  }

  private held(claim: Claim): Entry | undefined {
    const e = this.entries.get(claim.key);
    return e && e.token !== "" && e.token === claim.token ? e : undefined;
  }

  /** The claim's body was replaced: release the claim, the newer body is due at `due`. */
  private release(e: Entry, due: number): SettleResult {
    e.due = due;
    e.token = "";
    e.score = due;
    return "replaced";
  }

  private finish(key: string): void {
    this.entries.delete(key);
    this.tombstones.delete(key);
    this.tombstones.set(key, this.now() + this.tombstoneMs);
  }

  /** Forget expired tombstones and dead letters (both maps are in expiry order: stop at the first live one). */
  private sweep(now: number): void {
    for (const [key, until] of this.tombstones) {
      if (until > now) break;
      this.tombstones.delete(key);
    }
    for (const [key, d] of this.dead) {
      if (d.until > now) break;
      this.dead.delete(key);
    }
  }
}
