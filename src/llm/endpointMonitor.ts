import { ModelError } from "./chatModel.js";
/**
 * Whether the model endpoint answers, checked at start-up and again in the background, for
 * /healthz and the log.
 *
 * An unreachable model is no reason to take an instance out: it is shared by every instance, so
 * a load balancer that drained on it would take them all out, while each can still answer calls
 * (with an apology, or a transfer by `llm.onAllModelsFailed`). So /healthz stays 200 and says
 * what the model's state is and since when; the log says it once per change.
 */

/** What /healthz shows under `model`. Never the key: `url` has no credentials, `error` is scrubbed. */
export interface ModelEndpointStatus {
  reachable: boolean;
  /** When the endpoint was first seen in this state (ISO time). */
  since: string;
  url: string;
  /** Why not, when not reachable. */
  error?: string;
}

export interface EndpointMonitorOptions {
  url: string;
  /** Resolves when the endpoint answered; rejects with the reason. Must stop when `signal` aborts. */
  check: (timeoutMs: number, signal: AbortSignal) => Promise<void>;
  /** One check's bound; start-up waits no longer than this. */
  timeoutMs: number;
  /** Pause between the end of one check and the start of the next. */
  intervalMs: number;
  now?: () => number;
}

/** A few seconds: start-up never waits longer for a model it does not need yet. */
export const MODEL_CHECK_TIMEOUT_MS = 3000;
/** Not more often than this: a check is a request to a (possibly paid, possibly rate-limited) endpoint. */
export const MODEL_CHECK_INTERVAL_MS = 30_000;

export class EndpointMonitor {
  private current: ModelEndpointStatus | undefined;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: AbortController | undefined;
  private stopped = false;
  private readonly listeners: Array<(status: ModelEndpointStatus) => void> = [];
  private readonly now: () => number;

  constructor(private readonly opts: EndpointMonitorOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** Checks once (bounded by `timeoutMs`), then again every `intervalMs` until `stop()`. */
  async start(): Promise<ModelEndpointStatus> {
    const first = await this.checkOnce();
    this.schedule();
    return first;
  }

  /** The state as of the last check (before the first one ends: unknown, so not reachable). */
  status(): ModelEndpointStatus {
    return this.current ?? { reachable: false, since: new Date(this.now()).toISOString(), url: this.opts.url, error: "not checked yet" };
  }

  /** Called when a background check finds the state changed (not for the first check: start() returns that). */
  onChange(listener: (status: ModelEndpointStatus) => void): void {
    this.listeners.push(listener);
  }

  /** No more checks; one in flight is abandoned. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.inFlight?.abort();
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.checkOnce().then(() => this.schedule()), this.opts.intervalMs);
    // A pending check never keeps the process alive.
    this.timer.unref();
  }

  private async checkOnce(): Promise<ModelEndpointStatus> {
    const controller = new AbortController();
    this.inFlight = controller;
    let bound: NodeJS.Timeout | undefined;
    let error: string | undefined;
    try {
      // The bound holds even for a check that ignores its signal.
      const deadline = new Promise<never>((_, reject) => {
        bound = setTimeout(() => {
          controller.abort();
          reject(new ModelError(`no answer within ${this.opts.timeoutMs} ms`));
        }, this.opts.timeoutMs);
      });
      await Promise.race([this.opts.check(this.opts.timeoutMs, controller.signal), deadline]);
    } catch (e) {
      error = (e as Error).message || String(e);
    } finally {
      clearTimeout(bound);
      if (this.inFlight === controller) this.inFlight = undefined;
    }
    if (this.stopped) return this.status();
    const reachable = error === undefined;
    const previous = this.current;
    const changed = previous !== undefined && previous.reachable !== reachable;
    this.current = {
      reachable,
      since: previous && !changed ? previous.since : new Date(this.now()).toISOString(),
      url: this.opts.url,
      ...(error !== undefined ? { error } : {}),
    };
    if (changed) {
      for (const l of this.listeners) {
        try {
          l(this.current);
        } catch {
          // a listener's bug (a log line) must not stop the checks
        }
      }
    }
    return this.current;
  }
}
