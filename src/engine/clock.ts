/**
 * Time for answer deadlines, injected so tests and evals do not depend on machine speed:
 * production uses the system clock; tests and evals a manual clock that moves only when told.
 */
export interface Clock {
  now(): number;
  /** Resolves after `ms` of this clock's time, or at once when `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** Monotonic (performance.now): a wall clock set back or forward never moves a deadline or a lease wait. */
export const systemClock: Clock = {
  now: () => performance.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve) => {
      if (signal?.aborted) return resolve();
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        signal?.removeEventListener("abort", done);
        resolve();
      }
      signal?.addEventListener("abort", done, { once: true });
    }),
};

/** A clock that moves only by `advance`: a deadline fires exactly when a test says so, never by accident. */
export class ManualClock implements Clock {
  private timers: Array<{ at: number; fire: () => void }> = [];
  constructor(private t = 0) {}

  now(): number {
    return this.t;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      if (signal?.aborted) return resolve();
      const timer = { at: this.t + ms, fire: () => done() };
      const done = () => {
        this.timers = this.timers.filter((x) => x !== timer);
        signal?.removeEventListener("abort", done);
        resolve();
      };
      this.timers.push(timer);
      signal?.addEventListener("abort", done, { once: true });
    });
  }

  /** Move time forward, firing every timer that falls due. */
  advance(ms: number): void {
    this.t += ms;
    for (const timer of this.timers.filter((x) => x.at <= this.t)) timer.fire();
  }

  /** Timers waiting (tests wait for a deadline to be armed before advancing). */
  get pending(): number {
    return this.timers.length;
  }
}
