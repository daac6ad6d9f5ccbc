/** Counts events per key in a sliding window; shared across calls (and, with Redis, instances). */
export interface RateLimiter {
  /** Records one hit if under `max` in the window; returns whether it was allowed. */
  hit(key: string, max: number, windowMs: number): Promise<boolean>;
}

export class MemoryRateLimiter implements RateLimiter {
  private readonly hits = new Map<string, number[]>();
  constructor(private readonly now: () => number = Date.now) {}

  async hit(key: string, max: number, windowMs: number): Promise<boolean> {
    const t = this.now();
    const recent = (this.hits.get(key) ?? []).filter((at) => at > t - windowMs);
    if (recent.length >= max) {
      this.hits.set(key, recent);
      return false;
    }
    recent.push(t);
    this.hits.set(key, recent);
    return true;
  }
}
