import type { AiFlowAction } from "../aiflow/actions.js";

/** One caller turn as tests, evals and logs see it: event in, an ordered record out. */

export interface GuardDecision<R extends string = string> {
  /** What was checked: an action type, a tool name, or a model utterance. */
  subject: string;
  allowed: boolean;
  /** A typed reason code (the engine's, or the flow's own). */
  reason: R;
  detail?: string;
}

export interface ToolCallRecord {
  name: string;
  arguments: unknown;
  ok: boolean;
  result: string;
  /** "model" when the model asked for it, "code" when a code step or hook ran it, "rule" when a step's rule decided it (no model request). */
  origin: "model" | "code" | "rule";
  /** For origin "rule": which rule (`yes:ja gerne`). */
  rule?: string;
}

export interface LlmRequestRecord {
  step: string;
  model: string;
  tools: string[];
  ms: number;
  promptTokens: number;
  completionTokens: number;
  /** Size of the whole call's history at this request, sent or not (benchmarks compare prompt designs with it). */
  callHistoryChars?: number;
  error?: string;
  /** What the model answered (the call review keeps it with transcripts on: a reviewed call's replay). */
  answer?: { text: string; toolCalls: Array<{ name: string; arguments: string }> };
}

export interface TurnRecord {
  sessionId: string;
  event: string;
  stepBefore: string;
  stepAfter: string;
  /** Every step entered during the turn, in order (code steps included). */
  stepsEntered: string[];
  actions: AiFlowAction[];
  toolCalls: ToolCallRecord[];
  guardDecisions: GuardDecision[];
  llmRequests: LlmRequestRecord[];
  timings: { totalMs: number; modelMs: number; engineMs: number };
  /** The event was a redelivery of the previous one and was answered from the cache. */
  duplicate: boolean;
  /** A tool that takes something back (the caller's "no") ran: such a turn is never dropped. */
  withdrawal?: boolean;
}

export function emptyTurnRecord(sessionId: string, event: string): TurnRecord {
  return {
    sessionId,
    event,
    stepBefore: "",
    stepAfter: "",
    stepsEntered: [],
    actions: [],
    toolCalls: [],
    guardDecisions: [],
    llmRequests: [],
    timings: { totalMs: 0, modelMs: 0, engineMs: 0 },
    duplicate: false,
  };
}
