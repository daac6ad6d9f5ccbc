import type { Logger } from "pino";
import { KEPT_THROUGH_OUTAGES } from "../../aiflow/eventKinds.js";
import { StoreUnavailableError, type Arrival, type CallStore } from "../../store/callStore.js";
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
export class Arrivals {
  /** Per call: events the store could not take, oldest first. */
  private readonly unqueued = new Map<string, Arriving[]>();

  constructor(
    private readonly store: Pick<CallStore, "arrive">,
    private readonly timers: Clock,
    private readonly retryMs: number,
    private readonly log: Logger,
    private readonly hooks: ArrivalHooks,
  ) {}

  /** Whether the call has events still waiting to be queued here. */
  waiting(callId: string): boolean {
    return this.unqueued.has(callId);
  }

  /** Queue an event, after the call's kept ones; one the store cannot take is kept if it must not be lost. */
  async arrive(callId: string, e: Arriving): Promise<Arrival> {
    try {
      // Words kept from an outage go first: the queue keeps the order the caller spoke in.
      const kept = this.unqueued.get(callId);
      while (kept?.length) {
        const earlier = await this.store.arrive(callId, kept[0]!);
        kept.shift();
        if (!kept.length) this.unqueued.delete(callId);
        if (earlier.kind === "queued") this.hooks.queued(callId, earlier.seq);
      }
      return await this.store.arrive(callId, e);
    } catch (err) {
      if (err instanceof StoreUnavailableError && KEPT_THROUGH_OUTAGES.has(e.event.type) && !this.hooks.closing()) this.keepForLater(callId, { ...e, holdingFollowUp: false });
      throw err;
    }
  }

  private keepForLater(callId: string, e: Arriving): void {
    const kept = this.unqueued.get(callId);
    if (kept) {
      kept.push(e);
      return;
    }
    this.unqueued.set(callId, [e]);
    const retry = (async () => {
      const started = this.timers.now();
      const list = this.unqueued.get(callId)!;
      while (list.length && this.timers.now() - started < MAX_WATCH_MS) {
        await this.timers.sleep(this.retryMs);
        try {
          const arrival = await this.store.arrive(callId, list[0]!);
          list.shift();
          this.log.info({ sessionId: callId, event: arrival.kind === "queued" ? arrival.seq : "collect" }, "caller event queued after the store came back");
          if (arrival.kind === "queued") {
            if (!list.length) this.unqueued.delete(callId);
            this.hooks.queued(callId, arrival.seq);
          }
        } catch {
          // Still down: try again.
        }
      }
      if (list.length) this.log.error({ sessionId: callId, events: list.length }, "caller events could not be queued: given up");
      this.unqueued.delete(callId);
      this.hooks.settled(callId);
    })();
    this.hooks.background(retry);
  }
}
