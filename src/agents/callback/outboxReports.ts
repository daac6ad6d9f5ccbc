import type { Outbox } from "../../outbox/outbox.js";
import type { CallbackReport, CallReports } from "./report.js";

/** After a call's state expires, its snapshot is posted this much later (the store's TTL is not to the millisecond). */
const EXPIRY_GRACE_MS = 60_000;

/**
 * Callback reports kept in the durable outbox (Redis when instances share one): one entry per
 * call, keyed by the call id (the post's Idempotency-Key). A snapshot waits until the call's
 * state would have expired; the final report (session_end) is due at once and is never replaced
 * by a snapshot. The outbox's posters send it in the background, never in a call's turn.
 */
export class OutboxReports implements CallReports {
  constructor(
    private readonly outbox: Outbox,
    private readonly now: () => number,
  ) {}

  async save(report: CallbackReport, opts: { final: boolean; expiresAt: number; revision?: number }): Promise<void> {
    const dueAt = opts.final ? this.now() : opts.expiresAt + EXPIRY_GRACE_MS;
    await this.outbox.put(report.callId, JSON.stringify(report), dueAt, { final: opts.final, revision: opts.revision });
  }
}
