import type { ActionOutcome, NotSentReason, RerunReason } from "../../engine/recovery.js";
import type { SmsNotSentReason } from "../../ledger/ledger.js";
import { approvalPrefix, approvedSends } from "./evidenceIds.js";
import { answeredApprovals, recordHandedOver, recordNotSent } from "./sendRecords.js";
import type { SmsCallState } from "./state.js";
import type { SmsServices } from "./types.js";
import { forgetNotedSends, forgetWithdrawnSends, releaseLimits } from "./withdrawnSends.js";

/** The transport's reasons as the ledger names them (SmsNotSentReason). */
const LEDGER_REASON: Record<NotSentReason | RerunReason, SmsNotSentReason> = {
  dropped: "turn_given_up",
  lease_lost: "lease_lost",
  commit_failed: "commit_failed",
  call_ended: "call_ended",
  not_written: "connection_failed",
  instance_stopped: "instance_stopped",
};

const DETAIL: Record<NotSentReason | RerunReason, string> = {
  dropped: "the caller was told it took too long; the late answer was dropped",
  lease_lost: "this instance lost the call's lease; the turn wrote nothing",
  commit_failed: "the turn's commit failed; the send never left",
  call_ended: "the call ended before the answer carrying it was collected",
  not_written: "the answer carrying it could not be written to sipgate",
  instance_stopped: "approved by an instance that stopped before the send left",
};

/**
 * What became of the task's sends, as the transport reports it (RecoveryHooks.onOutcome):
 * - handed over: one sms_handed_over per send, naming its approval;
 * - not sent: one sms_not_sent with the reason, the rate-limit hits back and, where the outcome is
 *   known inside a turn (the call ended), the state stops saying it was sent;
 * - not sent by an attempt whose event runs again: only the hits go back; the evidence waits for
 *   the event's last attempt (it may approve the same send again, under the same id);
 * - that event done: see settleRerun;
 * - noted not sent after its commit (an answer lost): its record and hits were settled when that was
 *   found out; the state, which still counts the send, stops saying it was sent (see forgetNotedSends).
 */
export async function recordSendOutcome(outcome: ActionOutcome, services: SmsServices, state: SmsCallState | undefined, now: number): Promise<void> {
  const { ledger } = services;
  const at = new Date(now).toISOString();
  if (outcome.status === "rerun_done") return settleRerun(outcome, services, state, at);
  const sends = approvedSends(outcome.callId, outcome.entries);
  if (outcome.status === "not_sent_noted") return state && forgetNotedSends(state, sends);
  if (outcome.status === "handed_over") return recordHandedOver(ledger, outcome.callId, sends, at);
  if (outcome.rerun) return releaseLimits(services, outcome.callId, outcome.actions);
  if (state) forgetWithdrawnSends(state, sends);
  const named = sends.map((s) => ({ approval: s.approval, number: s.send.phone_number }));
  const done = await Promise.allSettled([
    recordNotSent(ledger, outcome.callId, named, LEDGER_REASON[outcome.reason], DETAIL[outcome.reason], at),
    releaseLimits(services, outcome.callId, outcome.actions),
  ]);
  for (const d of done) if (d.status === "rejected") throw d.reason;
}

/**
 * An event that an earlier attempt left uncommitted is done. Each send that attempt approved (known
 * from its entries, or, when its instance stopped, from the ledger's approvals of that event) stands
 * if the event's final result carries it (the committed state lists that approval: its outcome comes
 * from the transport) or already has its outcome; otherwise it never left, and gets its
 * sms_not_sent now. Its rate-limit hits went back when the attempt ended.
 */
async function settleRerun(outcome: Extract<ActionOutcome, { status: "rerun_done" }>, { ledger }: Pick<SmsServices, "ledger" | "limiter">, state: SmsCallState | undefined, at: string): Promise<void> {
  const carried = new Set((state?.sms.sent ?? []).map((s) => s.approval).filter((a): a is string => a !== undefined));
  const records = await ledger.recordsOf?.(outcome.callId);
  const candidates = outcome.entries
    ? approvedSends(outcome.callId, outcome.entries).map((s) => ({ approval: s.approval, number: s.send.phone_number }))
    : [...new Set((records ?? []).filter((r) => r.kind === "sms_approved" && r.id?.startsWith(approvalPrefix(outcome.callId, outcome.seq))).map((r) => r.id!))].map((approval) => ({ approval }));
  const answered = answeredApprovals(records ?? []);
  const left = candidates.filter((c) => !carried.has(c.approval) && !answered.has(c.approval));
  await recordNotSent(ledger, outcome.callId, left, LEDGER_REASON[outcome.reason], DETAIL[outcome.reason], at);
}
