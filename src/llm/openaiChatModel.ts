import OpenAI, { APIConnectionError, APIConnectionTimeoutError, APIError, AzureOpenAI, InternalServerError, RateLimitError } from "openai";
import type { ChatCompletionMessageParam, ChatCompletionTool } from "openai/resources/chat/completions";
import { redactUrl } from "../config/modelUrl.js";
import { ModelError, type ChatModel, type ChatRequest, type ChatResponse } from "./chatModel.js";

export interface OpenAIModelOptions {
  apiKey: string;
  baseURL?: string;
  timeoutMs: number;
  maxRetries: number;
  /** Azure OpenAI: `api-version` query parameter; the base URL is the resource endpoint. */
  azureApiVersion?: string;
}

/**
 * Whether an error of the openai client means another attempt could succeed; undefined when it
 * is not one of the client's errors. Asked by class, not by name or message: a refused, reset or
 * dropped connection is an APIConnectionError whose `name` is plain "Error", whose message is
 * "Connection error." and which has no status, so checks on those fields miss it (the socket
 * error is two `cause`s down). APIConnectionTimeoutError is a subclass. A user abort
 * (APIUserAbortError) is not retried here: the resilient wrapper turns its own timeout into a
 * retryable error before asking.
 */
export function isTransientOpenAIError(e: unknown): boolean | undefined {
  if (e instanceof APIConnectionError) return true;
  if (e instanceof RateLimitError || e instanceof InternalServerError) return true;
  // 408 request timeout and 409 conflict (a lock on the provider's side) are worth a second try.
  if (e instanceof APIError) return e.status === 408 || e.status === 409;
  return undefined;
}

/**
 * What lies a few `cause`s below the client's bare "Connection error.": a socket code
 * (ECONNREFUSED, ENOTFOUND, …), else the innermost message ("bad port"), not fetch's "fetch failed".
 */
function connectionDetail(e: unknown): string | undefined {
  let innermost: string | undefined;
  for (let cur = (e as { cause?: unknown })?.cause, depth = 0; cur && typeof cur === "object" && depth < 5; cur = (cur as { cause?: unknown }).cause, depth++) {
    const { code, message } = cur as { code?: unknown; message?: unknown };
    if (typeof code === "string") return code;
    if (typeof message === "string" && message && message !== "fetch failed") innermost = message;
  }
  return innermost;
}

/** Chat Completions over any OpenAI-compatible endpoint (OpenAI, Azure OpenAI, Ollama, vLLM, …). */
export class OpenAIChatModel implements ChatModel {
  private readonly client: OpenAI;
  /** Where requests go, as logs may show it (no credentials, no query). */
  readonly endpoint: string;
  private readonly apiKey: string;

  constructor(opts: OpenAIModelOptions) {
    this.client = opts.azureApiVersion
      ? new AzureOpenAI({ apiKey: opts.apiKey, endpoint: opts.baseURL, apiVersion: opts.azureApiVersion, timeout: opts.timeoutMs, maxRetries: opts.maxRetries })
      : new OpenAI({ apiKey: opts.apiKey, baseURL: opts.baseURL, timeout: opts.timeoutMs, maxRetries: opts.maxRetries });
    this.endpoint = redactUrl(this.client.baseURL);
    this.apiKey = opts.apiKey;
  }

  /**
   * A failure as an operator can act on it: the endpoint, the status or the socket error, and
   * never the key (OpenAI's 401 quotes part of it; a server may echo it whole).
   */
  private failure(what: "request" | "stream", e: unknown): ModelError {
    return new ModelError(`model ${what} to ${this.endpoint} failed: ${this.reason(e)}`, e);
  }

  private reason(e: unknown): string {
    let reason = (e as Error).message;
    if (e instanceof APIConnectionError && !(e instanceof APIConnectionTimeoutError)) {
      const detail = connectionDetail(e);
      if (detail && !reason.includes(detail)) reason = `${reason.replace(/\.$/, "")}: ${detail}`;
    }
    if (this.apiKey.length >= 8) reason = reason.split(this.apiKey).join("[key]");
    return reason.replace(/\bsk-[\w*.-]{4,}/g, "[key]");
  }

  /**
   * Whether the endpoint answers with this client's URL and key: its models list (GET
   * {base}/models, Azure's too), which costs no tokens. Throws why not (status or socket error,
   * never the key), bounded by `timeoutMs`.
   */
  async checkEndpoint(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    try {
      await this.client.models.list({ timeout: timeoutMs, maxRetries: 0, signal });
    } catch (e) {
      throw new ModelError(this.reason(e), e);
    }
  }

  private body(req: ChatRequest) {
    const messages: ChatCompletionMessageParam[] = [{ role: "system", content: req.system }, ...(req.messages as ChatCompletionMessageParam[])];
    const tools: ChatCompletionTool[] = req.tools.map((t) => ({
      type: "function",
      function: { name: t.name, description: t.description, parameters: t.parameters, ...(t.strict ? { strict: true } : {}) },
    }));
    return {
      model: req.model,
      temperature: req.temperature,
      max_tokens: req.maxTokens,
      messages,
      ...(tools.length ? { tools, tool_choice: "auto" as const } : {}),
    };
  }

  async stream(req: ChatRequest, onText: (delta: string) => void): Promise<ChatResponse> {
    let text = "";
    let model = req.model;
    const calls = new Map<number, { id: string; name: string; arguments: string }>();
    let usage = { promptTokens: 0, completionTokens: 0 };
    try {
      const stream = await this.client.chat.completions.create({ ...this.body(req), stream: true, stream_options: { include_usage: true } }, { signal: req.signal });
      for await (const chunk of stream) {
        model = chunk.model ?? model;
        if (chunk.usage) usage = { promptTokens: chunk.usage.prompt_tokens ?? 0, completionTokens: chunk.usage.completion_tokens ?? 0 };
        const delta = chunk.choices?.[0]?.delta;
        if (!delta) continue;
        if (typeof delta.content === "string" && delta.content) {
          text += delta.content;
          onText(delta.content);
        }
        for (const tc of delta.tool_calls ?? []) {
          const c = calls.get(tc.index) ?? { id: "", name: "", arguments: "" };
          if (tc.id) c.id = tc.id;
          if (tc.function?.name) c.name += tc.function.name;
          if (tc.function?.arguments) c.arguments += tc.function.arguments;
          calls.set(tc.index, c);
        }
      }
    } catch (e) {
      throw this.failure("stream", e);
    }
    return { text, toolCalls: [...calls.entries()].sort(([a], [b]) => a - b).map(([, c]) => c), usage, model };
  }

  async complete(req: ChatRequest): Promise<ChatResponse> {
    let completion;
    try {
      completion = await this.client.chat.completions.create(this.body(req), { signal: req.signal });
    } catch (e) {
      throw this.failure("request", e);
    }
    const choice = completion.choices?.[0];
    if (!choice) throw new ModelError("model answered without choices");
    const msg = choice.message;
    const toolCalls = (msg.tool_calls ?? [])
      .filter((c) => c.type === "function")
      .map((c) => ({ id: c.id, name: c.function.name, arguments: c.function.arguments ?? "" }));
    return {
      text: typeof msg.content === "string" ? msg.content : "",
      toolCalls,
      usage: { promptTokens: completion.usage?.prompt_tokens ?? 0, completionTokens: completion.usage?.completion_tokens ?? 0 },
      model: completion.model ?? req.model,
    };
  }
}
