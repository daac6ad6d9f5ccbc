import OpenAI, { AzureOpenAI } from "openai";
import type { ChatCompletionMessageParam, ChatCompletionTool } from "openai/resources/chat/completions";
import { ModelError, type ChatModel, type ChatRequest, type ChatResponse } from "./chatModel.js";

export interface OpenAIModelOptions {
  apiKey: string;
  baseURL?: string;
  timeoutMs: number;
  maxRetries: number;
  /** Azure OpenAI: `api-version` query parameter; the base URL is the resource endpoint. */
  azureApiVersion?: string;
}

/** Chat Completions over any OpenAI-compatible endpoint (OpenAI, Azure OpenAI, Ollama, vLLM, …). */
export class OpenAIChatModel implements ChatModel {
  private readonly client: OpenAI;

  constructor(opts: OpenAIModelOptions) {
    this.client = opts.azureApiVersion
      ? new AzureOpenAI({ apiKey: opts.apiKey, endpoint: opts.baseURL, apiVersion: opts.azureApiVersion, timeout: opts.timeoutMs, maxRetries: opts.maxRetries })
      : new OpenAI({ apiKey: opts.apiKey, baseURL: opts.baseURL, timeout: opts.timeoutMs, maxRetries: opts.maxRetries });
  }

  async complete(req: ChatRequest): Promise<ChatResponse> {
    const messages: ChatCompletionMessageParam[] = [{ role: "system", content: req.system }, ...(req.messages as ChatCompletionMessageParam[])];
    const tools: ChatCompletionTool[] = req.tools.map((t) => ({
      type: "function",
      function: { name: t.name, description: t.description, parameters: t.parameters, ...(t.strict ? { strict: true } : {}) },
    }));
    let completion;
    try {
      completion = await this.client.chat.completions.create(
        {
          model: req.model,
          temperature: req.temperature,
          max_tokens: req.maxTokens,
          messages,
          ...(tools.length ? { tools, tool_choice: "auto" as const } : {}),
        },
        { signal: req.signal },
      );
    } catch (e) {
      throw new ModelError(`model request failed: ${(e as Error).message}`, e);
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
