import type { AppConfig } from "../config/schema.js";
import { OpenAIChatModel } from "./openaiChatModel.js";
import { ResilientModel, type ModelRoute, type ResilienceOptions } from "./resilientModel.js";

/**
 * The production model: the configured model on OPENAI_BASE_URL / OPENAI_API_KEY, then the
 * configured fallbacks (each may have its own endpoint and key variable), behind timeouts,
 * retries with backoff and a circuit breaker.
 */
export function createModel(config: AppConfig, env: NodeJS.ProcessEnv, hooks: Pick<ResilienceOptions, "onFallback" | "onError"> = {}): ResilientModel {
  const client = (baseURL: string | undefined, apiKey: string | undefined) =>
    new OpenAIChatModel({
      // Local servers (Ollama, vLLM) ignore the key, but the client needs one.
      apiKey: apiKey || "unused",
      baseURL: baseURL || undefined,
      // Timeouts and retries are the resilient wrapper's job, so they are counted and bounded once.
      timeoutMs: config.llm.timeoutMs * 2,
      maxRetries: 0,
      azureApiVersion: config.llm.azureApiVersion,
    });
  const routes: ModelRoute[] = [{ name: config.llm.model, model: client(env.OPENAI_BASE_URL, env.OPENAI_API_KEY) }];
  config.llm.fallbacks.forEach((f) => {
    routes.push({
      name: f.model,
      modelName: f.model,
      model: client(f.baseURL ?? env.OPENAI_BASE_URL, f.apiKeyEnv ? env[f.apiKeyEnv] : env.OPENAI_API_KEY),
    });
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
