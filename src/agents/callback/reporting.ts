import type { Logger } from "pino";
import { ConfigError } from "../../config/load.js";
import type { Metrics } from "../../metrics/metrics.js";
import { MemoryOutbox } from "../../outbox/memoryOutbox.js";
import type { Outbox } from "../../outbox/outbox.js";
import { OutboxPoster } from "../../outbox/webhookPoster.js";
import type { CallbackConfig } from "./config.js";
import { LoggedReports } from "./loggedReports.js";
import { OutboxReports } from "./outboxReports.js";
import type { CallReports } from "./report.js";

export interface ReportingOptions {
  endpoint: CallbackConfig["endpoint"];
  /** "post" (default) to the endpoint through the outbox and its poster; "log": one log line per ended call, no outbox, no poster, no secret (the offline demo). */
  mode?: "post" | "log";
  /** The signing secret (default: the environment variable `endpoint.secretEnv` names). */
  secret?: string;
  outbox?: Outbox;
  startPoster?: boolean;
  logger: Logger;
  metrics: Metrics;
  now: () => number;
}

/** Where the callback agent's reports go, and the poster that delivers them (none when they are only logged). */
export function startReporting(o: ReportingOptions): { reports: CallReports; poster?: OutboxPoster; outbox?: Outbox } {
  if (o.mode === "log") return { reports: new LoggedReports(o.logger.child({ component: "callback-reports" })) };
  const e = o.endpoint;
  const secret = o.secret ?? process.env[e.secretEnv];
  if (!secret) throw new ConfigError(`agents.callback.endpoint.secretEnv: the environment variable ${e.secretEnv} holds no signing secret`);
  const outbox = o.outbox ?? new MemoryOutbox(o.now);
  const poster = new OutboxPoster({
    outbox,
    url: e.url,
    secret,
    timeoutMs: e.timeoutMs,
    maxAttempts: e.maxAttempts,
    backoff: e.backoff,
    pollMs: e.pollMs,
    batch: 20,
    // A claim outlives a post that runs into its timeout; an instance that died leaves its claims this long.
    leaseMs: Math.max(30_000, e.timeoutMs * 3),
    log: o.logger.child({ component: "callback-poster" }),
    now: o.now,
    onCycle: (r) => o.metrics.observeReportPosts(r),
  });
  if (o.startPoster ?? true) poster.start();
  return { reports: new OutboxReports(outbox, o.now), poster, outbox };
}
