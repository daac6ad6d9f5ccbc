import type { Logger } from "pino";
import type { z } from "zod";
import type { BaseConfig } from "../../src/config/schema.js";
import type { FlowTypes } from "../../src/engine/define.js";
import type { ComposedFlow } from "../../src/engine/defineFlow.js";
import type { ConsentLedger } from "../../src/ledger/ledger.js";
import type { NumberHasher } from "../../src/ledger/numberHash.js";
import type { Metrics } from "../../src/metrics/metrics.js";
import type { Outbox } from "../../src/outbox/outbox.js";
import type { OutboxPoster } from "../../src/outbox/webhookPoster.js";
import type { RateLimiter } from "../../src/store/rateLimiter.js";

/**
 * What an agent brings to the one registry (src/registry.ts): its flow, the schema of its own
 * settings (`agents.<name>` in the config file) and how the service starts it. The service, the
 * config check (`agent:`), `npm run flow:diagram` and the evals read the registry; adding an
 * agent is its folders and one registry line.
 */
export interface AgentDef<F extends FlowTypes, C, Tasks> {
  flow: ComposedFlow<F>;
  /** Its settings under `agents.<name>` (a schema with defaults when the agent needs none set). */
  config: z.ZodType<C, z.ZodTypeDef, unknown>;
  /** Set when the section must be written for this agent to run: the config error's message when `agent:` picks it without one. */
  required?: string;
  /** Top-level keys its settings had before they moved under `agents.<name>`, with their new place. */
  replaces?: Readonly<Record<string, string>>;
  /** Problems only the whole config shows, paths relative to `agents.<name>`; `picked`: `agent:` names this agent. */
  check?(own: C, tasks: Tasks, picked: boolean): Array<{ path: string[]; message: string }>;
  /** Its environment overrides (applied after the file is validated, then validated again); problems name the variable. */
  env?(own: C, env: NodeJS.ProcessEnv): { config: C } | { problems: string[] };
  /** The flow's services, and what else the agent runs beside the calls (the callback agent's report poster). */
  start(host: AgentHost<Tasks>, own: C): AgentStarted<F["services"]>;
}

/** What the service hands the agent it starts. */
export interface AgentHost<Tasks> {
  app: BaseConfig;
  /** Every task's parsed settings (`tasks.<name>`). */
  tasks: Tasks;
  ledger: ConsentLedger;
  limiter: RateLimiter;
  hasher: NumberHasher;
  logger: Logger;
  metrics: Metrics;
  now: () => number;
  /** Options of the service (ServiceOptions) that only an agent reads. */
  run: AgentRunOptions;
}

/** The callback agent's options, given to createService by tests and the offline demo. */
export interface AgentRunOptions {
  /** The durable outbox (Redis when instances share one; default in memory). */
  outbox?: Outbox;
  /** The signing secret (default: the environment variable `agents.callback.endpoint.secretEnv` names). */
  callbackSecret?: string;
  /** Post due reports in the background (default true; tests drive the poster themselves). */
  startPoster?: boolean;
  /** "post" (default) through the outbox and its poster; "log": one log line per ended call (the offline demo). */
  callbackReports?: "post" | "log";
}

export interface AgentStarted<S> {
  services: S;
  poster?: OutboxPoster;
  outbox?: Outbox;
}

/** Typed identity: checks an agent's parts fit each other (its services are its flow's). */
export function defineAgent<F extends FlowTypes, C, Tasks>(def: AgentDef<F, C, Tasks>): AgentDef<F, C, Tasks> {
  return def;
}
