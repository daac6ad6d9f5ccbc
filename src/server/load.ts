import { monitorEventLoopDelay, type IntervalHistogram } from "node:perf_hooks";

/** The limits an instance is measured against (server.overload; 0 turns one off). */
export interface LoadLimits {
  maxEventLoopDelayMs: number;
  maxCpuCores: number;
  maxInFlightTurns: number;
  maxNewCallsPerSecond: number;
}

export type OverloadReason = "event_loop_delay" | "cpu" | "in_flight_turns" | "new_calls";

/** How often the load is sampled: each sample covers the time since the last one. */
const SAMPLE_MS = 1000;

/**
 * This instance's load: event-loop delay (p99) and CPU over the last second, the turns running
 * now, and the calls taken on in the last second. Delay and CPU are sampled once a second off
 * the request path; they see a burst only after it has been taken on, so the new calls a second
 * are what stops a burst at its start (each call taken on brings the work of a whole call).
 */
export class LoadMonitor {
  private readonly delay: IntervalHistogram;
  private readonly timer: NodeJS.Timeout;
  private lastCpu = process.cpuUsage();
  private lastAt = performance.now();
  private sampled: OverloadReason | undefined;
  /** Set by tests (force): wins over every measurement until cleared. */
  private forced: OverloadReason | undefined;
  /** When each of the calls taken on in the last second was taken on (oldest first). */
  private readonly taken: number[] = [];
  /** The latest sample, for /healthz. */
  last = { eventLoopDelayP99Ms: 0, cpuCores: 0 };

  constructor(
    private readonly limits: LoadLimits,
    /** Turns running on this instance now. */
    private readonly inFlightTurns: () => number,
  ) {
    this.delay = monitorEventLoopDelay({ resolution: 10 });
    this.delay.enable();
    this.timer = setInterval(() => this.sample(), SAMPLE_MS);
    this.timer.unref();
  }

  /** Why the instance is over its limits now (undefined: it is not). */
  over(): OverloadReason | undefined {
    if (this.forced) return this.forced;
    const { maxInFlightTurns, maxNewCallsPerSecond } = this.limits;
    if (maxInFlightTurns > 0 && this.inFlightTurns() > maxInFlightTurns) return "in_flight_turns";
    if (maxNewCallsPerSecond > 0 && this.takenInLastSecond() >= maxNewCallsPerSecond) return "new_calls";
    return this.sampled;
  }

  /** A new call was taken on (admission let its session_start through). */
  took(): void {
    if (this.limits.maxNewCallsPerSecond > 0) this.taken.push(performance.now());
  }

  private takenInLastSecond(): number {
    const since = performance.now() - 1000;
    let old = 0;
    while (old < this.taken.length && this.taken[old]! <= since) old++;
    if (old > 0) this.taken.splice(0, old);
    return this.taken.length;
  }

  private sample(): void {
    const now = performance.now();
    const cpu = process.cpuUsage(this.lastCpu);
    const cores = (cpu.user + cpu.system) / 1000 / Math.max(1, now - this.lastAt);
    this.lastCpu = process.cpuUsage();
    this.lastAt = now;
    // The histogram counts whole timer intervals: the delay is what exceeds the resolution.
    const p99 = Math.max(0, this.delay.percentile(99) / 1e6 - 10);
    this.delay.reset();
    this.last = { eventLoopDelayP99Ms: Math.round(p99), cpuCores: Math.round(cores * 100) / 100 };
    const { maxEventLoopDelayMs, maxCpuCores } = this.limits;
    this.sampled = maxEventLoopDelayMs > 0 && p99 > maxEventLoopDelayMs ? "event_loop_delay" : maxCpuCores > 0 && cores > maxCpuCores ? "cpu" : undefined;
  }

  /** Tests: force a state until cleared (undefined: measured again). The once-a-second sample does not undo it. */
  force(reason: OverloadReason | undefined): void {
    this.forced = reason;
  }

  close(): void {
    clearInterval(this.timer);
    this.delay.disable();
  }
}
