import type { Logger } from "pino";
import { KEPT_THROUGH_OUTAGES } from "../../aiflow/eventKinds.js";
import { telemetry } from "../../core/telemetry.js";
import { StoreUnavailableError, type CallStore, type LeaseTake, type TakingArrival } from "../../store/callStore.js";
import type { Clock } from "../clock.js";
import { MAX_WATCH_MS, type Arriving } from "./types.js";

/** What the worker does with an event once it is queued, and how it tracks background work. */
interface ArrivalHooks {
  queued(callId: string, seq: number): void;
  /** The call's kept events are all queued (or given up): its turns may run here again. */
  settled(callId: string): void;
  closing(): boolean;
  background(work: Promise<void>): void;
}

/**
 * Queuing a call's events. A caller's words the store cannot take (an outage) are not dropped:
 * they may be a "no"; nor is the end of the call (it withdraws what never left). They are kept
 * and queued again, in the order they came, once the store answers; until then the call's turns
 * do not run on this instance (`waiting`), so no send this instance delivers can overtake them.
 */
export class Arrivals<S extends object = object> {
  /** Per call: events the store could not take, oldest first. */
  private readonly unqueued = new Map<string, Arriving[]>();
  /** Per call: the drain of its kept events running now (one at a time). */
  private readonly draining = new Map<string, Promise<void>>();

  constructor(
    private readonly store: Pick<CallStore<S>, "arrive" | "arriveAndTake">,
    private readonly timers: Clock,
    private readonly retryMs: number,
    private readonly log: Logger,
    private readonly hooks: ArrivalHooks,
  ) {}

  /** Whether the call has events still waiting to be queued here. */
  waiting(callId: string): boolean {
    return this.unqueued.has(callId);
  }

  /**
   * Queue an event, after the call's kept ones; one the store cannot take is kept if it must not be
   * lost. With `lease`, an event queued straight away takes the call's lease if it is free (`taken`).
   */
  async arrive(callId: string, e: Arriving, lease?: LeaseTake): Promise<TakingArrival<S>> {
    // Traced: the event's span goes with it, for a turn that runs on another instance.
    const trace = telemetry.traceparent();
    if (trace && !e.trace) e = { ...e, trace };
    try {
      // Nothing kept: straight to the store (no ordering to keep).
      if (!this.unqueued.has(callId)) return await (lease ? this.store.arriveAndTake(callId, e, lease) : this.store.arrive(callId, e));
      // Words kept from an outage go first, one drain at a time: the queue keeps the order the caller spoke in.
      return await this.serial(callId, async () => {
        await this.flush(callId);
        return this.store.arrive(callId, e);
      });
    } catch (err) {
      if (err instanceof StoreUnavailableError && KEPT_THROUGH_OUTAGES.has(e.event.type) && !this.hooks.closing()) this.keepForLater(callId, { ...e, holdingFollowUp: false, delayed: true });
      throw err;
    }
  }

  /** Queue the call's kept events, oldest first; stops at the first the store does not take (it stays first). */
  private async flush(callId: string): Promise<void> {
    const kept = this.unqueued.get(callId);
    while (kept?.length) {
      const arrival = await this.store.arrive(callId, kept[0]!);
      kept.shift();
      this.log.info({ sessionId: callId, seq: arrival.kind === "queued" ? arrival.seq : "collect" }, "kept caller event queued");
      if (!kept.length && this.unqueued.get(callId) === kept) this.unqueued.delete(callId);
      if (arrival.kind === "queued") this.hooks.queued(callId, arrival.seq);
    }
  }

  /** Runs `work` after every earlier one for the call (kept events are drained by one at a time). */
  private serial<T>(callId: string, work: () => Promise<T>): Promise<T> {
    const run = (this.draining.get(callId) ?? Promise.resolve()).then(work, work);
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    this.draining.set(callId, tail);
    void tail.then(() => {
      if (this.draining.get(callId) === tail) this.draining.delete(callId);
    });
    return run;
  }

  private keepForLater(callId: string, e: Arriving): void {
    const kept = this.unqueued.get(callId);
    if (kept) {
      kept.push(e);
      return;
    }
    const list = [e];
    this.unqueued.set(callId, list);
    const retry = (async () => {
      const started = this.timers.now();
      while (list.length && this.timers.now() - started < MAX_WATCH_MS) {
        await this.timers.sleep(this.retryMs);
        await this.serial(callId, () => this.flush(callId)).catch(() => undefined); // still down: try again
      }
      if (list.length) this.log.error({ sessionId: callId, events: list.length }, "caller events could not be queued: given up");
      if (this.unqueued.get(callId) === list) this.unqueued.delete(callId);
      this.hooks.settled(callId);
    })();
    this.hooks.background(retry);
  }
}
