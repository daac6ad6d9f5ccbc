import type { SpeakOptions } from "../aiflow/actions.js";
import type { Language } from "../core/callState.js";

/**
 * What the engine itself needs to know, and nothing of any flow: the composition root derives
 * it from the app config, so the engine never sees SMS templates, recipients or ledgers.
 */
export interface EngineOptions {
  language: Language;
  /** The first line of every call (with the AI disclosure when the greeting lacks it). */
  openingLine: string;
  llm: {
    model: string;
    temperature: number;
    maxTokens: number;
    strictTools: boolean;
    steps: Record<string, { model?: string; temperature?: number; maxTokens?: number }>;
    onAllModelsFailed: { action: "apologize" | "transfer"; transferTo?: string; callerIdName: string; timeoutSeconds: number };
  };
  limits: {
    maxLlmRequestsPerTurn: number;
    maxInputTimeouts: number;
    historyMessages: number;
    sessionTtlSeconds: number;
    duplicateWindowSeconds: number;
  };
  speech: {
    tts?: SpeakOptions["tts"];
    bargeIn?: SpeakOptions["barge_in"];
    vad?: SpeakOptions["vad"];
    userInputTimeoutSeconds: number;
    streamSentences: boolean;
  };
  answer: {
    withinMs: number;
    maxHoldingLines: number;
    holdingTimeoutSeconds: number;
    leaseMs: number;
  };
}
