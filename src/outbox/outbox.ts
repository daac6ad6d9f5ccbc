import { AgentError, InvalidArgumentError } from "../core/errors.js";
/**
 * A durable queue of webhook posts, one entry per key (a call id), shared by every instance
 * that may post it (memory for one instance, Redis for several).
 *
 * Life of an entry:
 *   - `put` stores or replaces the body to post and when it is due. The agent puts a non-final
 *     snapshot on every committed turn (due when the call's state would expire, so a call whose
 *     session_end never arrives is still posted) and the final body on session_end (due now).
 *   - a poster `claimDue`s what is due: a claim is a lease; no other poster gets the entry until
 *     the lease ends, and if the claimer dies the entry simply becomes due again then.
 *   - the claimer settles the claim with `delivered`, `retryLater` or `deadLetter`. Each is fenced
 *     by the claim's token (a claimer whose lease was taken over changes nothing) and by the
 *     body's version (a body replaced while its predecessor was in flight stays due).
 *   - a delivered or dead-lettered key is tombstoned: later puts for it are ignored, so a late
 *     snapshot cannot post a call twice.
 *
 * Delivery is at least once: a claimer that posts and dies before `delivered` leaves the entry to
 * be posted again after its lease, with the same Idempotency-Key, which receivers dedupe on.
 */

export type PutResult =
  /** Inserted, or replaced the body and due time of the waiting entry (the same put again changes nothing). */
  | "stored"
  /** A final body is waiting: a non-final snapshot must not replace it. */
  | "ignored_final"
  /** The key was delivered or dead-lettered within the tombstone period. */
  | "ignored_delivered"
  /** A non-final body older (lower revision) than the waiting one: the newer stays. */
  | "ignored_older";

export interface PutOptions {
  /** The call's last word (session_end): later non-final puts for the key are ignored. */
  final?: boolean;
  /**
   * Orders non-final bodies written by several instances (a call's event sequence number): a
   * non-final put with a lower revision than the waiting entry's is ignored, so a late write from an
   * instance that has since lost the call cannot replace a newer snapshot. Default 0.
   */
  revision?: number;
}

/** An entry handed to one poster until `leaseUntil`. */
export interface Claim {
  key: string;
  /** Raw JSON text, posted byte for byte. */
  body: string;
  final: boolean;
  /** Posts of this entry that failed before (0 on the first post). */
  attempts: number;
  /** Changes with every stored put: a settle for an older version keeps the newer body due. */
  version: number;
  /** Identifies this claim: settling with a token that is no longer the entry's changes nothing. */
  token: string;
  /** Ms epoch at which the entry becomes claimable again if this claim is not settled. */
  leaseUntil: number;
}

export type SettleResult =
  /** Done as asked. */
  | "settled"
  /** The body was replaced while the claim was in flight: the claim is released, the newer body stays due (see each method). */
  | "replaced"
  /** The claim is no longer the entry's (taken over after its lease ended, or already settled): nothing changed. */
  | "stale";

/** A body given up on, kept for inspection until its retention ends. */
export interface DeadLetter {
  key: string;
  body: string;
  final: boolean;
  /** Posts made in all. */
  attempts: number;
  /** Why it was given up (the poster's short description; never the body). */
  error: string;
  /** Ms epoch when it was dead-lettered. */
  at: number;
}

export interface Outbox {
  /** Insert or replace the key's entry (latest body and due time win), unless ignored as described by PutResult. */
  put(key: string, body: string, dueAt: number, opts?: PutOptions): Promise<PutResult>;
  /**
   * Claim up to `limit` entries due at `now` (earliest first), each leased until `now + leaseMs`.
   * Atomic: two concurrent claimers never get the same entry while its lease runs.
   */
  claimDue(now: number, limit: number, leaseMs: number): Promise<Claim[]>;
  /** Posted: remove the entry and tombstone the key. "replaced": the newer body stays due as put. */
  delivered(claim: Claim): Promise<SettleResult>;
  /** Failed for now: attempts + 1, due again at `dueAt` (for "replaced": the later of `dueAt` and the newer put's). */
  retryLater(claim: Claim, dueAt: number, error: string): Promise<SettleResult>;
  /**
   * Given up: move the entry to the dead letters and tombstone the key. "replaced": the newer body
   * (not the one given up on) stays due as put, with attempts + 1, and no dead letter is written.
   */
  deadLetter(claim: Claim, error: string): Promise<SettleResult>;
  /** Dead letters still retained, oldest first. */
  deadLetters(): Promise<DeadLetter[]>;
  /**
   * An operator's second chance for a dead letter (the receiver is fixed): its body is due again
   * at `dueAt` with its attempts reset, the letter and the key's tombstone are gone. Ignored
   * ("no_dead_letter") when the key has no retained dead letter.
   */
  redrive(key: string, dueAt: number): Promise<"requeued" | "no_dead_letter">;
  /** Entries not yet delivered or dead-lettered (claimed ones included). */
  pending(): Promise<number>;
  close(): Promise<void>;
}

export interface OutboxOptions {
  /** How long a delivered or dead-lettered key ignores puts (default 7 days). */
  tombstoneMs?: number;
  /** How long a dead letter is kept for inspection (default 7 days; it holds personal data). */
  deadLetterMs?: number;
}

export const DEFAULT_RETENTION_MS = 7 * 24 * 3_600_000;

/** The outbox's store could not be reached: nothing was changed that the caller can rely on. */
export class OutboxUnavailableError extends AgentError {
  readonly code = "outbox_unavailable";
}

/** A time or duration both implementations store identically: whole ms, finite. */
export function wholeMs(n: number, what: string): number {
  if (!Number.isFinite(n)) throw new InvalidArgumentError(`outbox: ${what} must be a finite number of ms, got ${n}`);
  return Math.floor(n);
}

/** The retention periods of OutboxOptions with their defaults, at least 1 ms each (Redis refuses a TTL of 0). */
export function retention(opts: OutboxOptions): { tombstoneMs: number; deadLetterMs: number } {
  return {
    tombstoneMs: Math.max(1, wholeMs(opts.tombstoneMs ?? DEFAULT_RETENTION_MS, "tombstoneMs")),
    deadLetterMs: Math.max(1, wholeMs(opts.deadLetterMs ?? DEFAULT_RETENTION_MS, "deadLetterMs")),
  };
}

export function checkLimit(limit: number, leaseMs: number): void {
  if (!Number.isInteger(limit) || limit < 1) throw new InvalidArgumentError(`outbox: claim limit must be a positive integer, got ${limit}`);
  if (!(leaseMs > 0)) throw new InvalidArgumentError(`outbox: lease must be positive, got ${leaseMs}`);
}
