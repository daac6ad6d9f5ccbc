import type { BaseConfig } from "../config/schema.js";
import { NO_TRACING, type Tracing } from "../core/telemetry.js";
import { tracingWanted } from "./wanted.js";

export { tracingWanted };

/**
 * The tracer `npm start` runs with: NO_TRACING unless an OTLP endpoint is set. The SDK is loaded
 * only then (its modules take about a second to load on a small machine; a service without
 * tracing does not pay that at start-up). See tracingFromEnv for the variables.
 */
export async function startTracing(config: BaseConfig, env: NodeJS.ProcessEnv, secrets: ReadonlyArray<string | undefined>): Promise<Tracing> {
  if (!tracingWanted(env)) return NO_TRACING;
  const { tracingFromEnv } = await import("./otelTracing.js");
  return tracingFromEnv(config, env, secrets);
}
