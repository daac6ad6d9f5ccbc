import { monitorEventLoopDelay, type IntervalHistogram } from "node:perf_hooks";

/** The limits an instance is measured against (server.overload; 0 turns one off). */
export interface LoadLimits {
  maxEventLoopDelayMs: number;
  maxCpuCores: number;
  maxInFlightTurns: number;
}

export type OverloadReason = "event_loop_delay" | "cpu" | "in_flight_turns";

/** How often the load is sampled: each sample covers the time since the last one. */
const SAMPLE_MS = 1000;

/**
 * This instance's load: event-loop delay (p99) and CPU over the last second, and the turns
 * running now. Sampled once a second off the request path; `over()` is a field read.
 */
export class LoadMonitor {
  private readonly delay: IntervalHistogram;
  private readonly timer: NodeJS.Timeout;
  private lastCpu = process.cpuUsage();
  private lastAt = performance.now();
  private sampled: OverloadReason | undefined;
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
    const { maxInFlightTurns } = this.limits;
    if (maxInFlightTurns > 0 && this.inFlightTurns() > maxInFlightTurns) return "in_flight_turns";
    return this.sampled;
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

  /** Tests: force a state (undefined: measured again from the next sample). */
  force(reason: OverloadReason | undefined): void {
    this.sampled = reason;
  }

  close(): void {
    clearInterval(this.timer);
    this.delay.disable();
  }
}
