import type { AiFlowAction } from "../../aiflow/actions.js";
import type { ConsentLedger } from "../../ledger/ledger.js";
import type { SmsCallState } from "./state.js";

/**
 * A send_sms the gate approved that never left (the caller's "no" overtook it, the call ended
 * first, or its answer was dropped): the state stops saying it was sent (the send and a
 * `handed_over` result for it), so the result and the host's bookkeeping (a callback report)
 * are true. The ledger's sms_withdrawn record is written by `recordWithdrawn`.
 */
export function forgetWithdrawnSends(state: SmsCallState, actions: readonly AiFlowAction[]): void {
  for (const a of actions) {
    if (a.type !== "send_sms") continue;
    const i = state.sms.sent.findLastIndex((s) => !s.failed && s.number === a.phone_number && s.message === a.message);
    if (i >= 0) state.sms.sent.splice(i, 1);
    const r = state.sms.result?.value;
    if (r?.status === "handed_over" && r.number === a.phone_number) state.sms.result = { value: { status: "refused", reason: "turn_superseded", number: r.number }, settled: true };
  }
}

/** The evidence for sends that never left: one sms_withdrawn record each. */
export async function recordWithdrawn(ledger: ConsentLedger, callId: string, actions: readonly AiFlowAction[], detail: string): Promise<void> {
  for (const a of actions) {
    if (a.type !== "send_sms") continue;
    await ledger.append({ kind: "sms_withdrawn", callId, at: new Date().toISOString(), number: a.phone_number, outcome: "not_sent", detail });
  }
}
