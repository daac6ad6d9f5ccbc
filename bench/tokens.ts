import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import type { TranscriptEntry } from "../evals/harness/runTrial.js";
import type { ChatModel, ChatRequest, ChatResponse } from "../src/llm/chatModel.js";
import { PEER_DIR, ensurePeerDeps } from "./peerDeps.js";

/** Token counting with a real tokenizer of the model family (o200k_base: GPT-4o, GPT-4.1, GPT-5). */
export interface Tokenizer {
  readonly encoding: string;
  count(text: string): number;
}

export async function loadTokenizer(): Promise<Tokenizer> {
  await ensurePeerDeps();
  // Resolved from bench/peer (node resolution walks up, so a copy in the main project would do too).
  const path = createRequire(`${PEER_DIR}package.json`).resolve("gpt-tokenizer/encoding/o200k_base");
  const mod = (await import(pathToFileURL(path).href)) as { countTokens?: (t: string) => number; default?: { countTokens: (t: string) => number } };
  const countTokens = mod.countTokens ?? mod.default?.countTokens;
  if (!countTokens) throw new Error("gpt-tokenizer: no countTokens in encoding/o200k_base");
  return { encoding: "o200k_base", count: (text) => countTokens(text) };
}

/**
 * A chat request's prompt tokens, counted the same way for every design: the tokens of the
 * messages (system prompt included) and the tool definitions as JSON, as they go on the wire.
 */
export function promptTokens(tok: Tokenizer, messages: unknown, tools: unknown): number {
  return tok.count(JSON.stringify([messages, tools ?? []]));
}

/** A request's messages and tools as the OpenAI client puts them on the wire (system prompt first). */
export function wireRequest(req: ChatRequest): { messages: unknown[]; tools: unknown[] } {
  return {
    messages: [{ role: "system", content: req.system }, ...req.messages],
    tools: req.tools.map((t) => ({ type: "function", function: { name: t.name, description: t.description, parameters: t.parameters, ...(t.strict ? { strict: true } : {}) } })),
  };
}

/** A model whose reported prompt tokens are counted by the tokenizer (the scripted model reports 4 characters a token). */
export function tokenCounted(inner: ChatModel, tok: Tokenizer): ChatModel {
  return {
    async complete(req: ChatRequest): Promise<ChatResponse> {
      const res = await inner.complete(req);
      const wire = wireRequest(req);
      return { ...res, usage: { ...res.usage, promptTokens: promptTokens(tok, wire.messages, wire.tools) } };
    },
  };
}

/**
 * The whole call's history up to caller turn `index` (its words included), rebuilt from the
 * transcript as a monolithic agent keeps it: the caller's lines, every tool call the model made
 * with its result, every line spoken. The naive baseline of row (b) sends all of it every time.
 */
export function callHistoryTokens(tok: Tokenizer, transcript: TranscriptEntry[], index: number): number {
  const messages: unknown[] = [];
  transcript.slice(0, index + 1).forEach((t, i) => {
    if (t.events.includes("user_speak")) messages.push({ role: "user", content: t.caller });
    if (i === index) return;
    for (const c of t.toolCalls.filter((c) => c.origin === "model")) {
      messages.push({ role: "assistant", content: null, tool_calls: [{ id: "call", type: "function", function: { name: c.name, arguments: JSON.stringify(c.arguments) } }] });
      messages.push({ role: "tool", tool_call_id: "call", content: c.result });
    }
    for (const a of t.actions) if (a.type === "speak" && a.text) messages.push({ role: "assistant", content: a.text });
  });
  return tok.count(JSON.stringify(messages));
}
