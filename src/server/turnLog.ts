import type { AiFlowAction } from "../aiflow/actions.js";
import type { AiFlowEvent } from "../aiflow/events.js";
import type { TurnRecord } from "../core/turnRecord.js";
import { maskNumber } from "../phone/number.js";

/** For logs: what an action did, without message bodies or full numbers. */
function describeAction(a: AiFlowAction): string {
  if (a.type === "send_sms") return `send_sms(${maskNumber(a.phone_number)})`;
  if (a.type === "transfer") return `transfer(${maskNumber(a.target_phone_number)})`;
  return a.type;
}

/** The fields of the one "event handled" log line per event, the same for every transport. */
export function turnLogFields(turn: TurnRecord, event: AiFlowEvent, transport: "http" | "ws") {
  return {
    sessionId: turn.sessionId,
    transport,
    event: turn.event,
    // Absent rather than "" when there is no step: a session_end (or late event) of a call with no state.
    step: turn.stepAfter || undefined,
    stepBefore: turn.stepBefore || undefined,
    caller: maskNumber(event.session.from_phone_number),
    actions: turn.actions.map(describeAction),
    refusals: turn.guardDecisions.filter((d) => !d.allowed).map((d) => `${d.subject}:${d.reason}`),
    toolCalls: turn.toolCalls.map((t) => `${t.name}${t.ok ? "" : "!"}`),
    duplicate: turn.duplicate || undefined,
    modelMs: Math.round(turn.timings.modelMs),
    engineMs: Math.round(turn.timings.engineMs * 10) / 10,
    llmRequests: turn.llmRequests.length,
    promptTokens: turn.llmRequests.reduce((a, r) => a + r.promptTokens, 0),
    completionTokens: turn.llmRequests.reduce((a, r) => a + r.completionTokens, 0),
  };
}
