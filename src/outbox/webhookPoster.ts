import type { Logger } from "pino";
import { backoffDelay, retryAfterMs, type BackoffOptions } from "./backoff.js";
import type { Claim, Outbox, SettleResult } from "./outbox.js";
import { IDEMPOTENCY_KEY_HEADER, SIGNATURE_HEADER, SIGNATURE_TIMESTAMP_HEADER, signBody } from "./signing.js";
import { InvalidArgumentError } from "../core/errors.js";

export interface OutboxPosterOptions {
  outbox: Outbox;
  /** The receiver's endpoint (the company's configured HTTPS URL). Redirects are not followed. */
  url: string;
  /** HMAC key of the X-Signature header. Never logged. */
  secret: string;
  /** One post, headers and all, is aborted after this long (then retried). Must be below leaseMs. */
  timeoutMs: number;
  /** Posts per entry in all before it is dead-lettered (at least 1). */
  maxAttempts: number;
  backoff: BackoffOptions;
  /** Pause between cycles that found less than a full batch. */
  pollMs: number;
  /** Entries claimed per cycle, posted concurrently. */
  batch: number;
  /** How long a claim keeps other posters away; a poster that dies leaves its entries for this long. */
  leaseMs: number;
  /** Its lines carry `component`: "outbox-poster", unless this logger names one already. */
  log: Logger;
  now?: () => number;
  fetch?: typeof globalThis.fetch;
  /** Jitter source in [0, 1) (tests pin it). */
  random?: () => number;
  /** Every cycle's report (metrics); its errors are the observer's own and never stop the poster. */
  onCycle?: (report: CycleReport) => void;
}

/** What one cycle did, by outcome (tests and metrics). */
export interface CycleReport {
  claimed: number;
  delivered: number;
  retried: number;
  deadLettered: number;
  /** Settled, but the body had been replaced meanwhile: the newer body stays due. */
  replaced: number;
  /** Settled too late: another poster had taken the claim over. */
  stale: number;
  /** The outbox could not be reached (claiming or recording a result). */
  failed: number;
}

type PostOutcome =
  | { kind: "ok"; status: number }
  /** The receiver refused this payload (400, 413, 415, 422): it will refuse it again. */
  | { kind: "rejected"; status: number; error: string }
  /** Worth another try later: 5xx, other 4xx, a timeout, a network error. */
  | { kind: "failed"; status?: number; error: string; retryAfterMs?: number };

/**
 * Posts due outbox entries to the receiver, signed, with the entry's key as Idempotency-Key.
 * One cycle: claim a batch, post each, record each result. Cycles never overlap and never throw:
 * an unreachable outbox (Redis down) is logged and the next cycle tries again.
 *
 * Log lines carry the key, attempt number, HTTP status and an error class, never the body
 * (personal data), the secret or the URL (it may carry a token).
 */
/**
 * Statuses that say the receiver refuses this payload itself (malformed, too large, wrong type,
 * invalid): it will refuse it again, so it is dead-lettered at once. Every other 4xx is about the
 * receiver's set-up (authentication, path) and may be fixed while the report waits.
 */
const PAYLOAD_REJECTED = new Set([400, 413, 415, 422]);

export class OutboxPoster {
  private readonly o: OutboxPosterOptions;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly fetch: typeof globalThis.fetch;
  private readonly random: () => number;
  private running = false;
  private timer: NodeJS.Timeout | undefined;
  private cycle: Promise<CycleReport> | undefined;

  constructor(opts: OutboxPosterOptions) {
    if (!opts.secret) throw new InvalidArgumentError("OutboxPoster: secret must not be empty");
    if (!(opts.leaseMs > opts.timeoutMs)) throw new InvalidArgumentError(`OutboxPoster: leaseMs (${opts.leaseMs}) must exceed timeoutMs (${opts.timeoutMs}), or a slow post's entry is claimed and posted again meanwhile`);
    if (!Number.isInteger(opts.maxAttempts) || opts.maxAttempts < 1) throw new InvalidArgumentError(`OutboxPoster: maxAttempts must be a positive integer, got ${opts.maxAttempts}`);
    if (!Number.isInteger(opts.batch) || opts.batch < 1) throw new InvalidArgumentError(`OutboxPoster: batch must be a positive integer, got ${opts.batch}`);
    this.o = opts;
    // A caller that names the component (the service: "callback-poster") keeps its name; a second
    // binding would write the key twice in every line, which strict JSON log pipelines reject.
    this.log = "component" in opts.log.bindings() ? opts.log : opts.log.child({ component: "outbox-poster" });
    this.now = opts.now ?? Date.now;
    this.fetch = opts.fetch ?? globalThis.fetch;
    this.random = opts.random ?? Math.random;
  }

  /** Run cycles in the background until stop(): at once after a full batch (a backlog), else every pollMs. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.schedule(0);
  }

  /** No further cycles; resolves once the cycle in flight (its posts and their results) is done. */
  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.cycle;
  }

  /** One cycle. If one is already running (the background loop's), waits for it and returns its report. */
  runOnce(): Promise<CycleReport> {
    this.cycle ??= this.runCycle()
      .then((report) => {
        try {
          this.o.onCycle?.(report);
        } catch (e) {
          this.log.error({ err: errorClass(e) }, "outbox: the cycle observer failed");
        }
        return report;
      })
      .finally(() => {
        this.cycle = undefined;
      });
    return this.cycle;
  }

  private schedule(ms: number): void {
    // At most one timer: a start() soon after stop() must not leave a second loop running
    // beside the one its cycle in flight reschedules.
    clearTimeout(this.timer);
    // unref: a poster waiting for its next cycle does not keep the process alive.
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (!this.running) return;
      void this.runOnce().then((r) => {
        if (this.running) this.schedule(r.claimed >= this.o.batch ? 0 : this.o.pollMs);
      });
    }, ms);
    this.timer.unref();
  }

  private async runCycle(): Promise<CycleReport> {
    const report: CycleReport = { claimed: 0, delivered: 0, retried: 0, deadLettered: 0, replaced: 0, stale: 0, failed: 0 };
    let claims: Claim[];
    try {
      claims = await this.o.outbox.claimDue(this.now(), this.o.batch, this.o.leaseMs);
    } catch (e) {
      this.log.warn({ err: errorClass(e) }, "outbox: claiming due entries failed; the next cycle tries again");
      report.failed++;
      return report;
    }
    report.claimed = claims.length;
    await Promise.all(claims.map((c) => this.deliver(c, report)));
    return report;
  }

  private async deliver(claim: Claim, report: CycleReport): Promise<void> {
    const attempt = claim.attempts + 1;
    const ctx = { key: claim.key, attempt };
    try {
      const outcome = await this.post(claim);
      let settled: SettleResult;
      if (outcome.kind === "ok") {
        settled = await this.o.outbox.delivered(claim);
        if (settled === "settled") {
          report.delivered++;
          this.log.info({ ...ctx, status: outcome.status }, "outbox: delivered");
        }
      } else if (outcome.kind === "rejected") {
        settled = await this.o.outbox.deadLetter(claim, outcome.error);
        if (settled === "settled") {
          report.deadLettered++;
          this.log.error({ ...ctx, status: outcome.status }, "outbox: the receiver rejected the payload; dead-lettered without retrying");
        }
      } else if (attempt >= this.o.maxAttempts) {
        settled = await this.o.outbox.deadLetter(claim, outcome.error);
        if (settled === "settled") {
          report.deadLettered++;
          this.log.error({ ...ctx, status: outcome.status, err: outcome.error }, "outbox: giving up after the last attempt; dead-lettered");
        }
      } else {
        const delay = outcome.retryAfterMs ?? backoffDelay(claim.attempts, this.o.backoff, this.random);
        settled = await this.o.outbox.retryLater(claim, this.now() + delay, outcome.error);
        if (settled === "settled") {
          report.retried++;
          this.log.warn({ ...ctx, status: outcome.status, err: outcome.error, retryInMs: delay }, "outbox: post failed; retrying later");
        }
      }
      if (settled === "replaced") {
        report.replaced++;
        this.log.info({ ...ctx, outcome: outcome.kind }, "outbox: the body was replaced while it was posted; the newer body stays due");
      } else if (settled === "stale") {
        report.stale++;
        this.log.warn({ ...ctx, outcome: outcome.kind }, "outbox: the claim's lease had ended and another poster took the entry over; its result stands");
      }
    } catch (e) {
      // The post's result could not be recorded: the entry comes due again when the lease ends
      // and is posted again (same Idempotency-Key).
      report.failed++;
      this.log.error({ ...ctx, err: errorClass(e) }, "outbox: recording the post's result failed; the entry is posted again after its lease");
    }
  }

  private async post(claim: Claim): Promise<PostOutcome> {
    const timestamp = Math.floor(this.now() / 1000);
    let res: Response;
    try {
      res = await this.fetch(this.o.url, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          [SIGNATURE_TIMESTAMP_HEADER]: String(timestamp),
          [SIGNATURE_HEADER]: signBody(this.o.secret, timestamp, claim.body),
          [IDEMPOTENCY_KEY_HEADER]: claim.key,
        },
        body: claim.body,
        // The body is personal data: it goes to the configured URL only, never where a redirect points.
        redirect: "manual",
        signal: AbortSignal.timeout(this.o.timeoutMs),
      });
    } catch (e) {
      return { kind: "failed", error: errorClass(e) };
    }
    // The answer's body is not needed (and not trusted): drop it and its connection.
    await res.body?.cancel().catch(() => undefined);
    const status = res.status;
    if (status >= 200 && status < 300) return { kind: "ok", status };
    const error = `http ${status}`;
    if (PAYLOAD_REJECTED.has(status)) return { kind: "rejected", status, error };
    // 5xx, 408, 429, the other 4xx (401/403 a secret or token the operator fixes, 404 a path being
    // deployed: retried until fixed or given up), and the unexpected (1xx, 3xx: a moved endpoint).
    const retryAfter = status === 429 || status === 503 ? retryAfterMs(res.headers.get("retry-after"), this.o.backoff.maxMs) : undefined;
    return { kind: "failed", status, error, retryAfterMs: retryAfter };
  }
}

/**
 * A short class of a failure for logs and the outbox's error field: "timeout", a network error
 * code (ECONNREFUSED, ECONNRESET, UND_ERR_SOCKET...) or the error's name. Never its message,
 * which may quote the URL.
 */
export function errorClass(e: unknown): string {
  if (!(e instanceof Error)) return typeof e;
  if (e.name === "TimeoutError" || e.name === "AbortError") return "timeout";
  const cause = (e as { cause?: unknown }).cause;
  const code = (cause as { code?: unknown } | undefined)?.code ?? (e as { code?: unknown }).code;
  if (typeof code === "string" && code) return code;
  if (cause instanceof Error) return errorClass(cause);
  return e.name;
}
