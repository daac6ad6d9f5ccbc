import { ConfigError } from "../config/load.js";
import { modelUrlProblem } from "../config/modelUrl.js";
import type { BaseConfig } from "../config/schema.js";
import { EndpointMonitor, MODEL_CHECK_INTERVAL_MS, MODEL_CHECK_TIMEOUT_MS } from "./endpointMonitor.js";
import { OpenAIChatModel } from "./openaiChatModel.js";
import { ResilientModel, type ModelRoute, type ResilienceOptions } from "./resilientModel.js";

/** The client for one endpoint, as every route uses it. */
function endpointClient(config: BaseConfig, baseURL: string | undefined, apiKey: string | undefined): OpenAIChatModel {
  return new OpenAIChatModel({
    // Local servers (Ollama, vLLM) ignore the key, but the client needs one.
    apiKey: apiKey || "unused",
    baseURL: baseURL || undefined,
    // Timeouts and retries are the resilient wrapper's job, so they are counted and bounded once.
    timeoutMs: config.llm.timeoutMs * 2,
    maxRetries: 0,
    azureApiVersion: config.llm.azureApiVersion,
  });
}

/**
 * OPENAI_BASE_URL must be an http(s) URL: "localhost:11434/v1" or "htp://…" would start and
 * fail every call. (The config file's endpoints are checked by its schema.)
 */
function checkBaseUrl(env: NodeJS.ProcessEnv): void {
  const problem = env.OPENAI_BASE_URL ? modelUrlProblem(env.OPENAI_BASE_URL) : undefined;
  if (problem) throw new ConfigError(`OPENAI_BASE_URL: ${problem}`);
}

/**
 * The production model: the configured model on OPENAI_BASE_URL / OPENAI_API_KEY, then the
 * configured fallbacks (each may have its own endpoint and key variable), behind timeouts,
 * retries with backoff and a circuit breaker.
 */
export function createModel(config: BaseConfig, env: NodeJS.ProcessEnv, hooks: Pick<ResilienceOptions, "onFallback" | "onError"> = {}): ResilientModel {
  checkBaseUrl(env);
  const primary = endpointClient(config, env.OPENAI_BASE_URL, env.OPENAI_API_KEY);
  const routes: ModelRoute[] = [{ name: config.llm.model, model: primary, endpoint: primary.endpoint }];
  config.llm.fallbacks.forEach((f) => {
    const client = endpointClient(config, f.baseURL ?? env.OPENAI_BASE_URL, f.apiKeyEnv ? env[f.apiKeyEnv] : env.OPENAI_API_KEY);
    routes.push({ name: f.model, modelName: f.model, model: client, endpoint: client.endpoint });
  });
  return new ResilientModel(routes, {
    timeoutMs: config.llm.timeoutMs,
    retries: config.llm.maxRetries,
    backoffInitialMs: config.llm.backoffInitialMs,
    backoffMaxMs: config.llm.backoffMaxMs,
    breakerThreshold: config.llm.circuitBreaker.failureThreshold,
    breakerCooldownMs: config.llm.circuitBreaker.cooldownMs,
    ...hooks,
  });
}

/**
 * Watches the endpoint every call tries first (OPENAI_BASE_URL, or OpenAI's own) with its models
 * list: at start-up, bounded by a few seconds, then every 30 s, for /healthz and the log.
 */
export function createEndpointMonitor(config: BaseConfig, env: NodeJS.ProcessEnv): EndpointMonitor {
  checkBaseUrl(env);
  const client = endpointClient(config, env.OPENAI_BASE_URL, env.OPENAI_API_KEY);
  return new EndpointMonitor({
    url: client.endpoint,
    check: (timeoutMs, signal) => client.checkEndpoint(timeoutMs, signal),
    timeoutMs: MODEL_CHECK_TIMEOUT_MS,
    intervalMs: MODEL_CHECK_INTERVAL_MS,
  });
}
