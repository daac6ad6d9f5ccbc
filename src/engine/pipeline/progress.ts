import type { CallStore } from "../../store/callStore.js";
import type { Clock } from "../clock.js";

/** Why a wait is woken: a constant, since abort() without a reason builds a DOMException (with a stack trace) every time. */
const WOKEN = "woken";
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

/**
 * Waiting for a call's progress. This instance's own progress wakes a wait at once (`notify`);
 * another instance's is seen by polling a shared store, except while this instance's own pump runs
 * the call (it notifies, also when it stops). Every wait is bounded.
 */
export class CallProgress {
  private readonly listeners = new Map<string, Set<() => void>>();

  constructor(
    private readonly store: Pick<CallStore, "progress" | "shared">,
    private readonly clock: Clock,
    private readonly timers: Clock,
    private readonly pollMs: number,
    private readonly pumping: (callId: string) => boolean,
  ) {}

  notify(callId: string): void {
    for (const l of this.listeners.get(callId) ?? []) l();
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
  async until(callId: string, ready: () => Promise<boolean>, deadline: number | undefined, signal?: AbortSignal, until?: number): Promise<boolean> {
    const { clock, timers } = this;
    for (;;) {
      const polled = deadline === undefined ? await ready() : await this.pollBy(ready, deadline);
      if (polled === LATE) return false;
      if (polled) return true;
      if (signal?.aborted) return false;
      if (deadline !== undefined && clock.now() >= deadline) return false;
      if (until !== undefined && timers.now() >= until) return false;
      const wake = new AbortController();
      const onProgress = () => wake.abort(WOKEN);
      let set = this.listeners.get(callId);
      if (!set) this.listeners.set(callId, (set = new Set()));
      set.add(onProgress);
      signal?.addEventListener("abort", onProgress, { once: true });
      try {
        const waits: Array<Promise<unknown>> = [new Promise((r) => wake.signal.addEventListener("abort", r, { once: true }))];
        if (deadline !== undefined) waits.push(clock.sleep(deadline - clock.now(), wake.signal));
        if (this.store.shared && !this.pumping(callId)) waits.push(timers.sleep(this.pollMs, wake.signal));
        if (until !== undefined) waits.push(timers.sleep(Math.max(0, until - timers.now()), wake.signal));
        await Promise.race(waits);
      } finally {
        wake.abort(WOKEN);
        set.delete(onProgress);
        if (set.size === 0) this.listeners.delete(callId);
        signal?.removeEventListener("abort", onProgress);
      }
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
    const timer = new AbortController();
    try {
      return await Promise.race([poll, this.clock.sleep(Math.max(0, deadline - this.clock.now()), timer.signal).then((): typeof LATE => LATE)]);
    } finally {
      timer.abort(WOKEN);
      // Left behind: its failure is nobody's business any more.
      poll.catch(() => undefined);
    }
  }
}
