import type { CallStore, Subscription } from "../../store/callStore.js";
import { Stop, type Clock, type StopSignal } from "../clock.js";

/** A poll still out at the deadline. */
const LATE = Symbol("late");
/** A poll not answered yet (raced against this, an answer already there wins). */
const NOT_YET = Symbol("not yet");
const notYet = Promise.resolve(NOT_YET);

/**
 * How a wait for a queued event's turn ended: the turn is done; the store no longer knows the
 * event (the call's keys expired or were lost, so nobody will ever process it); or nobody
 * finished it within the wait's limit.
 */
export type TurnWait = "done" | "vanished" | "timed_out";

/** Longest a wait waits for its subscription to be confirmed (a round trip takes about a millisecond). */
const SUBSCRIBE_WAIT_MS = 50;

/** Calls whose last event processed here is remembered (beyond it the oldest is forgotten: a wait then asks the store). */
const MAX_REMEMBERED = 100_000;

/**
 * Waiting for a call's progress. This instance's own progress wakes a wait at once (`notify`), and
 * what its own pump processed is known without asking the store (`processed`). Another instance's
 * progress on a shared store is announced by the store (`subscribe`: Redis pub/sub), never polled;
 * as the notice is a hint, such a wait looks again after `recheckMs` (a lease's time: how long a
 * dead holder keeps a call anyway). While this instance's own pump runs the call, a wait neither
 * asks the store nor subscribes: the pump notifies, also when it stops. Every wait is bounded.
 */
export class CallProgress {
  private readonly listeners = new Map<string, Set<() => void>>();
  /** Per call: the highest seq this instance's pump took off the queue (insertion order: oldest first). */
  private readonly processedHere = new Map<string, number>();

  constructor(
    private readonly store: Pick<CallStore, "progress" | "shared" | "subscribe">,
    private readonly clock: Clock,
    private readonly timers: Clock,
    private readonly recheckMs: number,
    private readonly pumping: (callId: string) => boolean,
  ) {}

  notify(callId: string): void {
    for (const l of this.listeners.get(callId) ?? []) l();
  }

  /** This instance's pump took event `seq` off the call's queue (committed or dropped it). */
  processed(callId: string, seq: number): void {
    const before = this.processedHere.get(callId) ?? 0;
    this.processedHere.delete(callId);
    this.processedHere.set(callId, Math.max(before, seq));
    if (this.processedHere.size > MAX_REMEMBERED) this.processedHere.delete(this.processedHere.keys().next().value!);
  }

  /**
   * Event `seq` was queued. A number not above what was processed here means the store counts the
   * call's events from 1 again (it lost the call's keys): what is remembered of it no longer holds.
   */
  queued(callId: string, seq: number): void {
    if ((this.processedHere.get(callId) ?? 0) >= seq) this.processedHere.delete(callId);
  }

  /** Whether event `seq` is known done here, without asking the store. */
  doneHere(callId: string, seq: number): boolean {
    return (this.processedHere.get(callId) ?? 0) >= seq;
  }

  /** Waits until the call changes (here or, on a shared store, anywhere), `ms` pass, or the signal aborts. */
  async change(callId: string, ms: number, signal?: StopSignal): Promise<void> {
    await this.until(callId, async () => false, undefined, signal, this.timers.now() + ms);
  }

  /**
   * Wait for queued event `seq`'s turn until `deadline` (the clock's; undefined: none); undefined
   * when the deadline came first. Never past `until` (timers' time: "timed_out"), and not at all
   * once the store no longer knows the event ("vanished": its arrival count fell below the event's
   * own number, the call's keys are gone and the event with them, so nobody will ever process it).
   */
  async forTurn(callId: string, seq: number, deadline: number | undefined, until: number): Promise<TurnWait | undefined> {
    let result: TurnWait | undefined;
    const settled = async () => {
      // Done here, or running here (the pump notifies): nothing to ask the store.
      if (this.doneHere(callId, seq)) result = "done";
      else if (this.pumping(callId)) {
        if (this.timers.now() >= until) result = "timed_out";
        return result !== undefined;
      }
      if (result) return true;
      const p = await this.store.progress(callId);
      if (p.processed >= seq) result = "done";
      else if (p.queued < seq) result = "vanished";
      else if (this.timers.now() >= until) result = "timed_out";
      return result !== undefined;
    };
    await this.until(callId, settled, deadline, undefined, until);
    return result;
  }

  /** Wait until `ready()` or the deadline (undefined: no deadline), and never past `until` (timers' time; undefined: no limit). */
  async until(callId: string, ready: () => Promise<boolean>, deadline: number | undefined, signal?: StopSignal, until?: number): Promise<boolean> {
    const { clock, timers } = this;
    /** A change came while looking: look again at once. */
    let changed = false;
    let wakeNow: (() => void) | undefined;
    const onChange = () => {
      changed = true;
      wakeNow?.();
    };
    // Listening before the first look, for the whole wait: no notice falls between a look and the wait.
    let set = this.listeners.get(callId);
    if (!set) this.listeners.set(callId, (set = new Set()));
    set.add(onChange);
    signal?.addEventListener("abort", onChange);
    /** Another instance's progress, announced by the store (subscribed before looking, for the same reason). */
    let subscription: Subscription | undefined;
    try {
      for (;;) {
        if (!subscription && this.store.shared && !this.pumping(callId)) {
          subscription = this.store.subscribe(callId, onChange);
          // Bounded: a subscriber still connecting must not eat the answer's deadline (the recheck covers it).
          const settle = new Stop();
          await Promise.race([subscription.ready, timers.sleep(SUBSCRIBE_WAIT_MS, settle)]);
          settle.abort();
        }
        changed = false;
        const polled = deadline === undefined ? await ready() : await this.pollBy(ready, deadline);
        if (polled === LATE) return false;
        if (polled) return true;
        if (signal?.aborted) return false;
        if (deadline !== undefined && clock.now() >= deadline) return false;
        if (until !== undefined && timers.now() >= until) return false;
        if (changed) continue;
        const wake = new Stop();
        wakeNow = () => wake.abort();
        try {
          const waits: Array<Promise<unknown>> = [new Promise<void>((r) => wake.addEventListener("abort", r))];
          if (deadline !== undefined) waits.push(clock.sleep(deadline - clock.now(), wake));
          // Waiting on another instance: its notice is a hint, so look again after a while.
          if (subscription) waits.push(timers.sleep(this.recheckMs, wake));
          if (until !== undefined) waits.push(timers.sleep(Math.max(0, until - timers.now()), wake));
          await Promise.race(waits);
        } finally {
          wakeNow = undefined;
          wake.abort();
        }
      }
    } finally {
      subscription?.close();
      set.delete(onChange);
      if (set.size === 0 && this.listeners.get(callId) === set) this.listeners.delete(callId);
      signal?.removeEventListener("abort", onChange);
    }
  }

  /**
   * A poll is a read: one still out at the deadline (its reply lost, the client reconnecting) is
   * left behind, since the answer cannot wait for it. The last poll, at the deadline itself, gets
   * until the clock's next tick.
   */
  private async pollBy(ready: () => Promise<boolean>, deadline: number): Promise<boolean | typeof LATE> {
    const poll = ready();
    // Answered at once (most are; a store in memory always): no timer needed.
    const now = await Promise.race([poll, notYet]);
    if (now !== NOT_YET) return now;
    const timer = new Stop();
    try {
      return await Promise.race([poll, this.clock.sleep(Math.max(0, deadline - this.clock.now()), timer).then((): typeof LATE => LATE)]);
    } finally {
      timer.abort();
      // Left behind: its failure is nobody's business any more.
      poll.catch(() => undefined);
    }
  }
}
