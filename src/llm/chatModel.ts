import type { HistoryMessage } from "../core/callState.js";
import { AgentError } from "../core/errors.js";

/** A tool as the model sees it: the JSON schema is derived from the tool's zod schema. */
export interface ToolSpec {
  name: string;
  description: string;
  parameters: Record<string, unknown>;
  strict: boolean;
}

export interface ChatRequest {
  model: string;
  temperature: number;
  maxTokens: number;
  system: string;
  messages: HistoryMessage[];
  tools: ToolSpec[];
  /** The flow step asking (for a person playing the model, and logs); never sent to a model. */
  step?: string;
  signal?: AbortSignal;
}

export interface ModelToolCall {
  id: string;
  name: string;
  /** Raw JSON text as the model sent it; may be broken. */
  arguments: string;
}

export interface ChatResponse {
  text: string;
  toolCalls: ModelToolCall[];
  usage: { promptTokens: number; completionTokens: number };
  model: string;
}

/** Anything that answers a chat request with text and/or tool calls (OpenAI-compatible server, scripted model). */
export interface ChatModel {
  complete(req: ChatRequest): Promise<ChatResponse>;
  /**
   * The same request, with the text passed to `onText` piece by piece as it is generated
   * (WebSocket transport: speech starts after the first sentence). Optional.
   */
  stream?(req: ChatRequest, onText: (delta: string) => void): Promise<ChatResponse>;
}

/** No model could answer (after retries and fallbacks, or for good): the caller hears an apology. */
export class ModelError extends AgentError {
  readonly code = "model_unavailable";
  constructor(
    message: string,
    readonly causeError?: unknown,
  ) {
    super(message, { cause: causeError });
  }
}
