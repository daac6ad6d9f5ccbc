import { CALLER_TURNS } from "../aiflow/eventKinds.js";
import type { ReviewEntry } from "./entries.js";

/** What a call came to, one label each (a call may have several: an SMS handed over, then transferred). */
export type CallOutcome =
  | "sms_handed_over"
  | "sms_declined"
  | "sms_failed"
  | "sms_refused"
  | "transferred"
  | "agent_hung_up"
  | "caller_hung_up"
  | "apology";

/** One call as the review list shows it, worked out from its timeline. */
export interface CallSummary {
  callId: string;
  startedAt: number;
  durationMs: number;
  agent?: string;
  /** Masked. */
  caller?: string;
  outcomes: CallOutcome[];
  /** Reasons behind sms_failed / sms_refused ("insufficient_balance", "rate_limited"). */
  smsReasons: string[];
  consent?: "given" | "declined";
  modelMs: number;
  modelRequests: number;
  holdingLines: number;
  /** Per caller turn: how long the caller waited until the holding line, and until the real answer (ms). */
  waitsUntilHolding: number[];
  waitsUntilAnswer: number[];
  maxWaitUntilHoldingMs?: number;
  maxWaitUntilAnswerMs?: number;
  errors: string[];
  ended: boolean;
}

/** Answers that are an apology rather than the call's own answer. */
const APOLOGY_ANSWERS = new Set(["gave_up", "store_unavailable"]);
/** Guard reasons that make the caller hear an apology (a failed model, a failed turn). */
const APOLOGY_REASONS = new Set(["internal_error", "request_cap_reached", "store_unavailable"]);

export function summarize(callId: string, entries: ReviewEntry[]): CallSummary {
  const s: CallSummary = {
    callId,
    startedAt: entries[0]?.at ?? 0,
    durationMs: entries.length ? entries.at(-1)!.at - entries[0]!.at : 0,
    outcomes: [],
    smsReasons: [],
    modelMs: 0,
    modelRequests: 0,
    holdingLines: 0,
    waitsUntilHolding: [],
    waitsUntilAnswer: [],
    errors: [],
    ended: false,
  };
  const outcomes = new Set<CallOutcome>();
  /** The caller's latest turn still waiting for its answer. */
  let waiting: { at: number; held: boolean } | undefined;
  let agentHungUp = false;
  for (const e of entries) {
    switch (e.kind) {
      case "arrival":
        if (e.agent) s.agent = e.agent;
        if (e.caller) s.caller = e.caller;
        if (callerTurn(e.event)) waiting = { at: e.at, held: false };
        if (e.event === "session_end") {
          s.ended = true;
          if (!agentHungUp) outcomes.add("caller_hung_up");
        }
        if (e.event === "sms_failed") {
          outcomes.add("sms_failed");
          if (e.reason) s.smsReasons.push(e.reason);
        }
        break;
      case "answer": {
        if (e.answer === "holding") {
          s.holdingLines++;
          if (waiting && !waiting.held) {
            s.waitsUntilHolding.push(e.at - waiting.at);
            waiting.held = true;
          }
          break;
        }
        if (APOLOGY_ANSWERS.has(e.answer)) outcomes.add("apology");
        if (waiting && e.actions.some((a) => a.type === "speak")) {
          s.waitsUntilAnswer.push(e.at - waiting.at);
          waiting = undefined;
        }
        for (const a of e.actions) {
          if (a.type === "transfer") outcomes.add("transferred");
          if (a.type === "hangup") {
            outcomes.add("agent_hung_up");
            agentHungUp = true;
          }
        }
        break;
      }
      case "turn":
        s.modelMs += e.modelMs;
        s.modelRequests += e.model.length;
        for (const m of e.model) if (m.error) s.errors.push(`model ${m.model} (${m.step}): ${m.error}`);
        for (const r of e.refusals) {
          if (r.subject === "send_sms") {
            outcomes.add("sms_refused");
            s.smsReasons.push(r.reason);
          }
          if (APOLOGY_REASONS.has(r.reason)) {
            outcomes.add("apology");
            s.errors.push(`${r.subject}: ${r.reason}${r.detail ? ` (${r.detail})` : ""}`);
          }
        }
        // Every model request of the turn failed: the caller heard the model_unavailable apology.
        if (e.model.length && e.model.every((m) => m.error && m.error !== "cancelled by the caller")) outcomes.add("apology");
        break;
      case "ledger":
        if (e.record === "sms_handed_over") outcomes.add("sms_handed_over");
        if (e.record === "consent_given") s.consent = "given";
        if (e.record === "consent_declined") {
          s.consent = "declined";
          outcomes.add("sms_declined");
        }
        break;
    }
  }
  s.outcomes = [...outcomes];
  s.smsReasons = [...new Set(s.smsReasons)];
  if (s.waitsUntilHolding.length) s.maxWaitUntilHoldingMs = Math.max(...s.waitsUntilHolding);
  if (s.waitsUntilAnswer.length) s.maxWaitUntilAnswerMs = Math.max(...s.waitsUntilAnswer);
  return s;
}

/** A review entry's event (a string: the review also records what it could not parse) is one of the caller's turns. */
function callerTurn(event: string): boolean {
  const turns: ReadonlySet<string> = CALLER_TURNS;
  return turns.has(event);
}
