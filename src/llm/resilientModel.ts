import { ModelError, type ChatModel, type ChatRequest, type ChatResponse } from "./chatModel.js";
import { isTransientOpenAIError } from "./openaiChatModel.js";
import { telemetry } from "../core/telemetry.js";
import { ConfigError } from "../core/errors.js";

/** One model endpoint the resilient model may use, in order of preference. */
export interface ModelRoute {
  /** Label for logs and metrics (e.g. "primary", "fallback-1"). */
  name: string;
  model: ChatModel;
  /** Model name sent to this endpoint (a fallback may be another model). */
  modelName?: string;
  /** Where the route's requests go, for error messages (no credentials). */
  endpoint?: string;
}

export interface ResilienceOptions {
  /** Per attempt: a request slower than this is aborted and counts as a failure. */
  timeoutMs: number;
  /** Retries per route on 429 / 5xx / timeouts / network errors, before falling back. */
  retries: number;
  backoffInitialMs: number;
  backoffMaxMs: number;
  /** Consecutive failures that open a route's circuit; it is skipped until `cooldownMs` passed. */
  breakerThreshold: number;
  breakerCooldownMs: number;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
  onFallback?: (from: string, to: string, reason: string) => void;
  onError?: (route: string, reason: string) => void;
}

interface Breaker {
  failures: number;
  openUntil: number;
}

/**
 * Network failures below any HTTP answer (Node's socket errors and undici's), by code: a body
 * cut off mid-stream surfaces as a bare `TypeError: terminated` with one of these as its cause.
 */
const NETWORK_ERROR_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EAI_AGAIN",
  "UND_ERR_SOCKET",
  "UND_ERR_CLOSED",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
]);

function networkErrorCode(e: unknown): string | undefined {
  // The code sits a few `cause`s down (e.g. TypeError "terminated" → SocketError); bounded against cycles.
  for (let cur = e, depth = 0; cur && typeof cur === "object" && depth < 5; cur = (cur as { cause?: unknown }).cause, depth++) {
    const code = (cur as { code?: unknown }).code;
    if (typeof code === "string" && NETWORK_ERROR_CODES.has(code)) return code;
  }
  return undefined;
}

/** Whether another attempt could succeed: rate limits, server errors, timeouts, lost connections. */
export function isRetryable(e: unknown): boolean {
  const cause = e instanceof ModelError ? e.causeError : e;
  const byClient = isTransientOpenAIError(cause);
  if (byClient !== undefined) return byClient;
  // Other ChatModel implementations may carry an HTTP status of their own.
  const status = (cause as { status?: unknown } | undefined)?.status;
  if (typeof status === "number") return status === 408 || status === 409 || status === 429 || status >= 500;
  // This wrapper's own per-attempt timeout (see attempt()).
  if ((cause as { name?: unknown } | undefined)?.name === "TimeoutError") return true;
  return networkErrorCode(cause) !== undefined;
}

/**
 * Timeouts, retries with backoff (250 ms doubling to 2 s by default), a fallback list and a
 * circuit breaker per route, so a dead provider costs one fast skip instead of a timeout on
 * every call. Throws ModelError only when every route failed: the engine then apologizes (or
 * transfers, by config) and the call goes on.
 */
export class ResilientModel implements ChatModel {
  private readonly breakers = new Map<string, Breaker>();
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(
    private readonly routes: ModelRoute[],
    private readonly opts: ResilienceOptions,
  ) {
    if (routes.length === 0) throw new ConfigError("ResilientModel needs at least one route (model.endpoints)");
    this.now = opts.now ?? Date.now;
    this.sleep = opts.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
  }

  /** Routes whose circuit is open right now (for health and tests). */
  openCircuits(): string[] {
    const t = this.now();
    return this.routes.filter((r) => (this.breakers.get(r.name)?.openUntil ?? 0) > t).map((r) => r.name);
  }

  complete(req: ChatRequest): Promise<ChatResponse> {
    return this.run(req, (route, r) => route.model.complete(r));
  }

  /**
   * Streaming with the same retries and fallbacks, as long as nothing was said yet: once text
   * has reached the caller, a failure is final for this request (repeating would double speech).
   */
  stream(req: ChatRequest, onText: (delta: string) => void): Promise<ChatResponse> {
    let started = false;
    const forward = (d: string) => {
      started = true;
      onText(d);
    };
    return this.run(req, (route, r) => (route.model.stream ? route.model.stream(r, forward) : route.model.complete(r).then((res) => (res.text && forward(res.text), res))), () => started);
  }

  private async run(req: ChatRequest, call: (route: ModelRoute, req: ChatRequest) => Promise<ChatResponse>, committed: () => boolean = () => false): Promise<ChatResponse> {
    const errors: string[] = [];
    let previous: string | undefined;
    let attempts = 0;
    for (const route of this.routes) {
      const breaker = this.breakers.get(route.name) ?? { failures: 0, openUntil: 0 };
      this.breakers.set(route.name, breaker);
      if (breaker.openUntil > this.now()) {
        telemetry.event("circuit_open", { "aiflow.llm.route": route.name });
        errors.push(`${route.name}: circuit open`);
        continue;
      }
      if (previous) this.opts.onFallback?.(previous, route.name, errors.at(-1) ?? "");
      // On the model request's span: which route answered, after how many retries, falling back from which.
      if (previous) telemetry.note({ "aiflow.llm.fallback_from": previous });
      previous = route.name;
      let delay = this.opts.backoffInitialMs;
      for (let attempt = 0; attempt <= this.opts.retries; attempt++) {
        try {
          const res = await telemetry.span("aiflow.llm.attempt", () => ({ "aiflow.llm.route": route.name, "aiflow.llm.attempt": attempt + 1, "gen_ai.request.model": route.modelName ?? req.model }), () => this.attempt(route, req, call), "client");
          telemetry.note(() => ({ "aiflow.llm.route": route.name, "aiflow.llm.retries": attempts, "aiflow.llm.fallback": previous !== this.routes[0]!.name }));
          breaker.failures = 0;
          return res;
        } catch (e) {
          if (req.signal?.aborted) throw e;
          if (committed()) throw new ModelError(`model failed mid-answer: ${(e as Error).message}`, e);
          attempts++;
          telemetry.note(() => ({ "aiflow.llm.retries": attempts }));
          const reason = (e as Error).message;
          this.opts.onError?.(route.name, reason);
          errors.push(`${route.name}: ${reason}`);
          breaker.failures++;
          if (breaker.failures >= this.opts.breakerThreshold) {
            breaker.openUntil = this.now() + this.opts.breakerCooldownMs;
            break;
          }
          if (!isRetryable(e) || attempt === this.opts.retries) break;
          await this.sleep(delay);
          delay = Math.min(delay * 2, this.opts.backoffMaxMs);
        }
      }
    }
    throw new ModelError(`every model failed: ${errors.join("; ")}`);
  }

  private async attempt(route: ModelRoute, req: ChatRequest, call: (route: ModelRoute, req: ChatRequest) => Promise<ChatResponse>): Promise<ChatResponse> {
    const controller = new AbortController();
    const onOuterAbort = () => controller.abort();
    req.signal?.addEventListener("abort", onOuterAbort);
    const timer = setTimeout(() => controller.abort(), this.opts.timeoutMs);
    try {
      return await call(route, { ...req, model: route.modelName ?? req.model, signal: controller.signal });
    } catch (e) {
      if (controller.signal.aborted && !req.signal?.aborted) {
        throw new ModelError(`timed out after ${this.opts.timeoutMs} ms${route.endpoint ? ` at ${route.endpoint}` : ""}`, Object.assign(new Error("timeout"), { name: "TimeoutError" }));
      }
      throw e;
    } finally {
      clearTimeout(timer);
      req.signal?.removeEventListener("abort", onOuterAbort);
    }
  }
}
