import type { HistoryMessage } from "../core/callState.js";
import { ModelError, type ChatModel, type ChatRequest, type ChatResponse } from "./chatModel.js";
import { ANSWER_HINT, ANSWER_USAGE, readPersonAnswer } from "./personAnswer.js";
import { toolSignature, toolText } from "./toolSpecText.js";

/** Where the person playing the model reads requests and types answers (a terminal, or a test's pipe). */
export interface PersonConsole {
  /** The next line the person types after `prompt`; undefined once the input has ended. */
  ask(prompt: string): Promise<string | undefined>;
  show(text: string): void;
}

/** The prompt the person answers at, so it never reads like the caller's ("caller> "). */
export const MODEL_PROMPT = "model> ";

/**
 * A person at the keyboard plays the model (`npm run chat -- --as-model`): each request shows the
 * step, what happened since the caller last spoke and the step's tools as the model gets them;
 * the typed answer goes back to the engine as a model's would, through the same tool validation,
 * guards and SMS gate. So a flow, its lines and its guards can be tried before any API key exists.
 */
export class PersonModel implements ChatModel {
  private calls = 0;
  /** Steps whose tools were shown in full: later requests list only their signatures. */
  private readonly described = new Set<string>();
  /** The last request's system prompt: what the engine adds to it (a correction after a refusal) is shown. */
  private lastSystem = "";

  constructor(private readonly io: PersonConsole) {}

  async complete(req: ChatRequest): Promise<ChatResponse> {
    const key = `${req.step}:${req.tools.map((t) => t.name).join(",")}`;
    const added = this.lastSystem && req.system.startsWith(this.lastSystem) ? req.system.slice(this.lastSystem.length).trim() : "";
    // Tool descriptions the first time a step asks; the full how-to to answer only on the first request.
    this.io.show(requestText(req, this.described.has(key) ? "short" : "full", this.described.size === 0, added));
    this.lastSystem = req.system;
    this.described.add(key);
    for (;;) {
      if (req.signal?.aborted) throw new ModelError("the request was cancelled before the person answered");
      const line = await this.io.ask(MODEL_PROMPT);
      // The input ended mid-request: no answer, which the engine treats like a model that failed.
      if (line === undefined) {
        this.io.show("  (the input ended before the model answered: the engine treats it as a failed model request)");
        throw new ModelError("the person playing the model gave no answer (end of input)");
      }
      const answer = readPersonAnswer(line, req.tools);
      switch (answer.kind) {
        case "empty":
          continue;
        case "error":
          this.io.show(`  ✗ ${answer.problem} (nothing was sent; ? shows the tools)`);
          continue;
        case "show":
          this.io.show(answer.what === "prompt" ? req.system : answer.what === "history" ? historyText(req.messages) : requestText(req, "full", true, ""));
          continue;
        case "text":
          return this.respond(answer.text, []);
        case "call":
          // Sent all the same: the engine answers a tool it does not offer here as it would a model's call.
          if (!answer.offered) this.io.show(`  (${answer.name} is not offered in step ${req.step ?? "?"}: the engine refuses it as it would a model's call)`);
          return this.respond("", [{ id: `person_${++this.calls}`, name: answer.name, arguments: answer.arguments }]);
      }
    }
  }

  private respond(text: string, toolCalls: ChatResponse["toolCalls"]): ChatResponse {
    return { text, toolCalls, usage: { promptTokens: 0, completionTokens: 0 }, model: "person" };
  }
}

/**
 * The request as the person needs it: the step, this turn so far, the tools and how to answer.
 * `short` (the step's tools were shown before): each tool's signature, without descriptions.
 * `added`: what the engine appended to the step's prompt since the last request (a correction).
 */
export function requestText(req: ChatRequest, detail: "full" | "short", usage: boolean, added: string): string {
  const lines = [`── model request, step ${req.step ?? "(unnamed)"} ──`];
  lines.push(...turnSoFar(req.messages).map((l) => `  ${l}`));
  if (added) lines.push(...added.split("\n").map((l) => `  added to the prompt: ${l}`));
  if (req.tools.length === 0) lines.push("  tools: none in this step");
  else {
    lines.push("  tools:");
    req.tools.forEach((t, i) => {
      const text = detail === "full" ? toolText(t) : [toolSignature(t)];
      lines.push(...text.map((l, j) => (j === 0 ? `  ${i + 1}. ${l}` : `     ${l}`)));
    });
  }
  lines.push(...(usage ? ANSWER_USAGE : [ANSWER_HINT]).map((l) => `  ${l}`));
  return lines.join("\n");
}

/** The caller's last words and what happened after them in this turn (tool calls, their results, a refusal). */
function turnSoFar(messages: readonly HistoryMessage[]): string[] {
  let from = messages.length;
  while (from > 0 && messages[from - 1]!.role !== "user") from--;
  if (from === 0) return ["(the caller has not said anything yet)"];
  const text = messageText(messages);
  return messages.slice(from - 1).map(text);
}

function historyText(messages: readonly HistoryMessage[]): string {
  const text = messageText(messages);
  return messages.length ? messages.map((m) => `  ${text(m)}`).join("\n") : "  (no conversation yet)";
}

/** One message in a line; a tool result is named by the call it answers. */
function messageText(messages: readonly HistoryMessage[]): (m: HistoryMessage) => string {
  const toolOf = new Map(messages.flatMap((m) => (m.role === "assistant" ? (m.tool_calls ?? []).map((c) => [c.id, c.function.name] as const) : [])));
  return (m) => {
    if (m.role === "user") return `caller: ${JSON.stringify(m.content)}`;
    if (m.role === "tool") return `result of ${toolOf.get(m.tool_call_id) ?? "a tool"}: ${m.content}`;
    const calls = (m.tool_calls ?? []).map((c) => `${c.function.name}(${c.function.arguments})`);
    // The engine keeps an answer whose words it refused (a false claim) as an empty one.
    if (!m.content && calls.length === 0) return "answered, but nothing was spoken (the words were refused)";
    return [m.content ? `agent said: ${JSON.stringify(m.content)}` : "", calls.length ? `called: ${calls.join(", ")}` : ""].filter(Boolean).join("; ");
  };
}
