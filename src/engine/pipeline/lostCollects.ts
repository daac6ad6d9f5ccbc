import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import { holdsSend, REPLY_TTL_MS, replayCollect, StoreUnavailableError, type CallStore, type Collected, type CollectRequest, type OutboxEntry, type RequestId, type Transport } from "../../store/callStore.js";
import { Stop, type Clock } from "../clock.js";
import type { FlowTypes } from "../define.js";
import type { ActionOutcomes } from "./outcomes.js";
import type { Arrivals } from "./arrivals.js";
import { RETRY_MS, untilAnswered } from "./resend.js";

/** What a collect took does not leave with this answer (see LostCollects.take): it went back to the outbox. */
export const HELD_BACK = Symbol("held back");

/**
 * A store round trip takes about a millisecond. A reply that took longer than this needed a
 * reconnect (the first reply was lost, the request was sent again): what it decided is that old.
 */
export const STORE_ROUND_TRIP_MS = 50;

/**
 * Outbox entries an answer took and never delivered. An answer that could not be written puts its
 * entries back (`putBack`). So does a collect whose reply never came: the store ran it (the entries
 * are out of the outbox) but the client saw an error (the connection dropped and its resend failed).
 * Every collect carries a request id; after such an error the id is asked again, with a request
 * that takes nothing (`replayCollect`), until the store answers: what the lost collect took goes
 * back like a lost answer's entries, and a collect that never ran never will.
 *
 * The store holds a send back while a caller event queued after it is unevaluated, but it decides
 * when the collect runs. A reply that comes after the answer's deadline is left behind, and a send
 * in a reply that may have been overtaken (it came late, or caller words wait on this instance to be
 * queued) does not leave now: both go back, to leave with a later answer once the store has judged
 * again (`take`).
 */
export class LostCollects {
  constructor(
    private readonly store: CallStore,
    private readonly worker: { outcomes: Pick<ActionOutcomes<FlowTypes>, "notSent" | "settling">; background: (work: Promise<void>) => void; arrivals: Pick<Arrivals, "waiting"> },
    private readonly timers: Clock,
    /** The answer deadlines' clock. */
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  /** Collect with a request id; on a store error, what the collect may have taken is settled in the background (the error is thrown on). */
  collect(callId: string, r: CollectRequest): Promise<Collected> {
    const requestId = randomUUID();
    return this.store.collect(callId, r, requestId).catch((e: unknown) => {
      if (e instanceof StoreUnavailableError) this.worker.background(this.settle(callId, r.via, requestId));
      throw e;
    });
  }

  /**
   * Collect for an answer, as `collect` does. HELD_BACK when what it took does not leave with this
   * answer: the reply is not back by the deadline (it goes back when it comes; with no time left at
   * all, a clock that jumped past the deadline, the reply is awaited as it always was), or it holds
   * a send that a caller's words may have overtaken (it goes back now).
   */
  async take(callId: string, r: CollectRequest, deadline?: number): Promise<Collected | typeof HELD_BACK> {
    const sentAt = this.clock.now();
    const collecting = this.collect(callId, r);
    const left = deadline === undefined ? 0 : deadline - sentAt;
    let first: Collected | typeof HELD_BACK;
    if (left <= 0) first = await collecting;
    else {
      const timer = new Stop();
      first = await Promise.race([collecting, this.clock.sleep(left, timer).then((): typeof HELD_BACK => HELD_BACK)]).finally(() => timer.abort());
    }
    if (first === HELD_BACK) {
      this.log.warn({ sessionId: callId, via: r.via }, "collect not back by the deadline: the answer leaves without it; what it takes goes back");
      this.worker.background(
        collecting.then(
          (late) => (late.kind === "actions" ? this.putBack(callId, late.entries, late.processed) : undefined),
          // A "hold" or "give_up" it decided is the store's own bookkeeping; a failure is settled by its request id (see collect).
          () => undefined,
        ),
      );
      return HELD_BACK;
    }
    if (first.kind === "actions" && holdsSend(first.actions) && this.mayBeOvertaken(callId, sentAt)) {
      this.log.warn({ sessionId: callId, via: r.via }, "a send in a late collect reply may have been overtaken by the caller's words: it goes back");
      await this.putBack(callId, first.entries, first.processed);
      return HELD_BACK;
    }
    return first;
  }

  /**
   * Whether a caller event may have arrived since the store decided (it would have held a send
   * back for it): the reply took a reconnect, or the call's caller words wait on this instance to
   * be queued (the store does not know them yet).
   */
  private mayBeOvertaken(callId: string, sentAt: number): boolean {
    return this.clock.now() - sentAt > STORE_ROUND_TRIP_MS || this.worker.arrivals.waiting(callId);
  }

  /**
   * Entries that never reached sipgate go back to the outbox; what the store refuses to take back
   * (the call ended, or an event was processed since that never saw a send) is recorded as not
   * sent. While the store does not answer, whether they went back is unknown (a try may have run
   * with its reply lost: then they are in the outbox and may still leave): the same request id is
   * asked again in the background until the store answers; only if it never does are they all
   * recorded as not sent.
   */
  putBack(callId: string, entries: OutboxEntry[], processedAtCollect: number): Promise<void> {
    return this.worker.outcomes.settling(callId, this.putBackNow(callId, entries, processedAtCollect));
  }

  private async putBackNow(callId: string, entries: OutboxEntry[], processedAtCollect: number): Promise<void> {
    this.log.warn({ sessionId: callId, entries: entries.length }, "actions taken for an answer that never left: they go back to the outbox");
    const ask = (rid: RequestId) => this.store.putBack(callId, entries, processedAtCollect, rid);
    const requestId = randomUUID();
    let lost: OutboxEntry[];
    try {
      lost = await untilAnswered(this.timers, ask, requestId);
    } catch (e) {
      this.log.error({ sessionId: callId, err: (e as Error).message }, "putting actions back got no answer: asked again in the background");
      this.worker.background(this.worker.outcomes.settling(callId, this.settlePutBack(callId, entries, ask, requestId)));
      return;
    }
    await this.worker.outcomes.notSent(callId, lost, "not_written", "answer_lost");
  }

  /** A putBack without an answer: its request id asked again (while the store keeps the reply) until the store says what it refused. */
  private async settlePutBack(callId: string, entries: OutboxEntry[], ask: (rid: RequestId) => Promise<OutboxEntry[]>, requestId: RequestId): Promise<void> {
    const until = this.timers.now() + REPLY_TTL_MS / 2;
    while (this.timers.now() < until) {
      await this.timers.sleep(RETRY_MS);
      let lost: OutboxEntry[];
      try {
        lost = await ask(requestId);
      } catch {
        continue; // still down: ask again
      }
      return this.worker.outcomes.notSent(callId, lost, "not_written", "answer_lost");
    }
    this.log.error({ sessionId: callId }, "putting actions back never got an answer: recorded as not delivered");
    await this.worker.outcomes.notSent(callId, entries, "not_written", "answer_lost");
  }

  /** Ask the lost collect's request id again until the store answers (while it still keeps the reply). */
  private async settle(callId: string, via: Transport, requestId: RequestId): Promise<void> {
    const until = this.timers.now() + REPLY_TTL_MS / 2;
    while (this.timers.now() < until) {
      await this.timers.sleep(RETRY_MS);
      let first: Collected;
      try {
        first = await this.store.collect(callId, replayCollect(via), requestId);
      } catch {
        continue; // still down: ask again
      }
      if (first.kind === "actions") await this.putBack(callId, first.entries, first.processed);
      return;
    }
    this.log.error({ sessionId: callId, via }, "a collect whose reply was lost could not be settled: what it took (if anything) is lost");
  }
}
