/**
 * Time for answer deadlines, injected so tests and evals do not depend on machine speed:
 * production uses the system clock; tests and evals a manual clock that moves only when told.
 */
export interface Clock {
  now(): number;
  /** Resolves after `ms` of this clock's time, or at once when `signal` aborts. */
  sleep(ms: number, signal?: StopSignal): Promise<void>;
}

/** What a sleep needs of a signal: an AbortSignal has it, and so has the cheaper `Stop`. */
export interface StopSignal {
  readonly aborted: boolean;
  addEventListener(type: "abort", listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: "abort", listener: () => void): void;
}

/**
 * A one-shot stop for the pipeline's own sleeps and waits. An AbortController costs an EventTarget,
 * an Event per abort and, without a reason, a DOMException with its stack trace: measured on the
 * Redis bench, several per caller event were about a tenth of the service's CPU. This is a flag and
 * a list. As an AbortSignal, a listener added after the stop is never called (check `aborted`).
 */
export class Stop implements StopSignal {
  private stopped = false;
  private listeners: Array<() => void> | undefined;

  get aborted(): boolean {
    return this.stopped;
  }

  /** Itself: what a sleep takes (as AbortController.signal). */
  get signal(): StopSignal {
    return this;
  }

  addEventListener(_type: "abort", listener: () => void): void {
    if (this.stopped) return;
    (this.listeners ??= []).push(listener);
  }

  removeEventListener(_type: "abort", listener: () => void): void {
    const i = this.listeners?.indexOf(listener) ?? -1;
    if (i >= 0) this.listeners!.splice(i, 1);
  }

  /** Stops once: every listener is called once, in the order added. */
  abort(): void {
    if (this.stopped) return;
    this.stopped = true;
    const listeners = this.listeners;
    this.listeners = undefined;
    if (listeners) for (const l of listeners) l();
  }
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

  sleep(ms: number, signal?: StopSignal): Promise<void> {
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
