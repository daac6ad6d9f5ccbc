export interface BackoffOptions {
  /** Delay before the first retry, before jitter. */
  initialMs: number;
  /** No delay is longer (a Retry-After header is capped by it too). */
  maxMs: number;
  /** Growth per failed attempt. */
  factor: number;
}

/**
 * Delay before the next post, when the post that just failed had `attempts` failed posts before
 * it (Claim.attempts: 0 for the first post): cap = min(maxMs, initialMs * factor^attempts), then
 * "equal jitter": cap/2 + random * cap/2.
 * Equal rather than full jitter: it spreads instances that failed together (a receiver outage)
 * but never retries at once, which full jitter (random * cap) may do against a receiver that just
 * failed.
 */
export function backoffDelay(attempts: number, b: BackoffOptions, random: () => number = Math.random): number {
  const cap = Math.min(b.maxMs, b.initialMs * b.factor ** Math.max(0, attempts));
  const half = cap / 2;
  return Math.round(half + random() * half);
}

/**
 * A Retry-After header in seconds ("120"), in ms capped at maxMs; undefined for anything else
 * (an HTTP date is not honoured: the receiver's clock is not ours, the normal backoff applies).
 */
export function retryAfterMs(header: string | null, maxMs: number): number | undefined {
  if (header === null || !/^\s*\d+\s*$/.test(header)) return undefined;
  return Math.min(maxMs, Number(header) * 1000);
}
