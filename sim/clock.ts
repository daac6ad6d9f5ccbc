import type { Clock } from "../src/engine/clock.js";

interface Timer {
  at: number;
  order: number;
  fire: () => void;
}

/**
 * Virtual time for a whole simulated world: the pipeline's deadlines, lease renewals and polls,
 * the store's leases, the model's latency, sipgate's playback and the caller's pauses all wait on
 * it. Time moves only when the scheduler advances it to the next timer; timers due at the same
 * moment fire in the order they were set, so a run is a function of its seed.
 */
export class SimClock implements Clock {
  private t = 0;
  private order = 0;
  private timers: Timer[] = [];

  now(): number {
    return this.t;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      if (signal?.aborted) return resolve();
      const timer: Timer = { at: this.t + Math.max(0, ms), order: this.order++, fire: () => done() };
      const done = () => {
        const i = this.timers.indexOf(timer);
        if (i >= 0) this.timers.splice(i, 1);
        signal?.removeEventListener("abort", done);
        resolve();
      };
      this.timers.push(timer);
      signal?.addEventListener("abort", done, { once: true });
    });
  }

  /** Run `fn` at virtual time `at` (a simulated actor's next move). */
  at(at: number, fn: () => void): void {
    this.timers.push({ at: Math.max(at, this.t), order: this.order++, fire: fn });
  }

  /** The earliest pending timer's time, if any. */
  nextAt(): number | undefined {
    let min: number | undefined;
    for (const x of this.timers) if (min === undefined || x.at < min) min = x.at;
    return min;
  }

  /** Move to `at` and fire every timer due by then, in (time, order) order. */
  advanceTo(at: number): void {
    this.t = Math.max(this.t, at);
    const due = this.timers.filter((x) => x.at <= this.t).sort((a, b) => a.at - b.at || a.order - b.order);
    this.timers = this.timers.filter((x) => x.at > this.t);
    for (const x of due) x.fire();
  }

  get pending(): number {
    return this.timers.length;
  }
}
