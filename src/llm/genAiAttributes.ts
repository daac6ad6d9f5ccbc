import type { ChatRequest, ChatResponse } from "./chatModel.js";
import type { Attrs } from "../core/telemetry.js";

/**
 * A model request's span attributes by OpenTelemetry's GenAI semantic conventions (gen_ai.*):
 * never the prompt, the history or the answer's text (they hold what the caller said).
 */
export function genAiRequest(req: ChatRequest): Attrs {
  return {
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": req.model,
    "gen_ai.request.temperature": req.temperature,
    "gen_ai.request.max_tokens": req.maxTokens,
    "aiflow.step": req.step,
    "aiflow.llm.tools": req.tools.map((t) => t.name),
  };
}

export function genAiResponse(res: ChatResponse, ms: number): Attrs {
  return {
    "gen_ai.response.model": res.model,
    "gen_ai.usage.input_tokens": res.usage.promptTokens,
    "gen_ai.usage.output_tokens": res.usage.completionTokens,
    "gen_ai.response.finish_reasons": [res.toolCalls.length ? "tool_calls" : "stop"],
    "aiflow.llm.tool_calls": res.toolCalls.map((c) => c.name),
    "aiflow.llm.latency_ms": Math.round(ms),
  };
}
