import type { ChatModel, ChatRequest, ChatResponse } from "../../src/llm/chatModel.js";

/**
 * Tells "this model is bad" from "this model was never reached". The engine turns every model
 * failure into an apology line, so an endpoint that refuses connections, does not resolve, or
 * rejects the key or model name would show as a 0% pass rate, as if the model had answered badly.
 * The watch sees every failed attempt (through createModel's onError hook) and every answer, and
 * calls a model unreachable only when nothing ever came back and every failure was one of those.
 */

/**
 * Failures that mean the request never reached a model: no connection (refused, DNS; the openai
 * client says "Connection error: ECONNREFUSED"), or the endpoint turned it away (401/403 key, 404 URL or model).
 * Timeouts and 5xx are left out: the endpoint is there, and the report should show them as such.
 */
const UNREACHABLE = /^model (?:request|stream)(?: to \S+)? failed: (?:Connection error\b|(?:401|403|404)\b|.*\b(?:ECONNREFUSED|ENOTFOUND|EAI_AGAIN|getaddrinfo)\b)/;
/** The client's prefix, which names the endpoint the report names already. */
const PREFIX = /^model (?:request|stream)(?: to \S+)? failed: /;

export function isUnreachableFailure(reason: string): boolean {
  return UNREACHABLE.test(reason);
}

export class EndpointWatch {
  private answers = 0;
  private readonly failures: string[] = [];

  /** For createModel's hooks: called once per failed attempt, retries included. */
  readonly onError = (_route: string, reason: string): void => {
    this.failures.push(reason);
  };

  /** Counts the answers of `model`; its failures come through `onError`. */
  wrap(model: ChatModel): ChatModel {
    const count = <T>(p: Promise<T>): Promise<T> => p.then((r) => (this.answers++, r));
    const inner = model;
    const watched: ChatModel = { complete: (req: ChatRequest): Promise<ChatResponse> => count(inner.complete(req)) };
    // Only offer streaming when the model has it: the engine checks for the method.
    if (inner.stream) watched.stream = (req, onText) => count(inner.stream!(req, onText));
    return watched;
  }

  /** Why the endpoint could not be reached (the first such failure, without our prefix), or undefined when it was, or cannot be told. */
  unreachable(): string | undefined {
    if (this.answers > 0 || this.failures.length === 0 || !this.failures.every(isUnreachableFailure)) return undefined;
    return this.failures[0]!.replace(PREFIX, "");
  }
}
