import type { AiFlowAction } from "../../aiflow/actions.js";
import type { ConsentLedger, LedgerRecord, SmsNotSentReason } from "../../ledger/ledger.js";
import { outcomeId } from "./evidenceIds.js";

/**
 * The ledger's account of a call's sends. A send has two records: `sms_approved` (the gate, before
 * the action can leave) and its one outcome, `sms_handed_over` (written into an answer or a frame)
 * or `sms_not_sent` with the reason, each naming its approval in `ref`. An approval without an
 * outcome is one whose instance stopped in between: nobody can say whether it left.
 *
 * Calls that began before these records existed have `sms_sent` (an approval) and `sms_withdrawn`
 * (it never left), without ids; so do records of a ledger that keeps no ids. Those are counted
 * pairwise, as before.
 */

/** The legacy sms_withdrawn the gate wrote for its own refusal (no sms_sent preceded it): it takes nothing back. */
export const LEGACY_SUPERSEDED_DETAIL = "the turn's answer can no longer leave (lease lost or answer given up)";

const isApproval = (r: LedgerRecord) => r.kind === "sms_approved" || r.kind === "sms_sent";
const isOutcome = (r: LedgerRecord) => r.kind === "sms_handed_over" || r.kind === "sms_not_sent";

/** Approval ids that have an outcome (handed over or not sent). */
export function answeredApprovals(records: readonly LedgerRecord[]): Set<string> {
  return new Set(records.filter((r) => isOutcome(r) && r.ref).map((r) => r.ref!));
}

/** Approval ids the ledger says never left. */
function notSentApprovals(records: readonly LedgerRecord[]): Set<string> {
  return new Set(records.filter((r) => r.kind === "sms_not_sent" && r.ref).map((r) => r.ref!));
}

/** Approvals without ids (legacy sms_sent, or a ledger that keeps none) less the records without ids that take one back. */
export function standingWithoutIds(records: readonly LedgerRecord[]): number {
  const approvals = records.filter((r) => isApproval(r) && !r.id).length;
  const takenBack = records.filter((r) => (r.kind === "sms_withdrawn" && r.detail !== LEGACY_SUPERSEDED_DETAIL) || (r.kind === "sms_not_sent" && !r.ref)).length;
  return approvals - takenBack;
}

/**
 * Sends of a call the ledger says may have left: approvals not recorded as not sent (handed over,
 * or with no outcome), each counted once however often it was written.
 */
export function standingSends(records: readonly LedgerRecord[]): number {
  const notSent = notSentApprovals(records);
  const withIds = new Set(records.filter((r) => isApproval(r) && r.id && !notSent.has(r.id)).map((r) => r.id!));
  return withIds.size + standingWithoutIds(records);
}

/** Whether every approval of the call carries its id (then ids answer everything; otherwise counts do). */
export function keepsIds(records: readonly LedgerRecord[]): boolean {
  return records.filter(isApproval).every((r) => r.id !== undefined);
}

/** One send and the id of its approval (see evidenceIds.ts `approvedSends`). */
export interface NamedSend {
  approval: string;
  send: AiFlowAction & { type: "send_sms" };
}

/** The transport wrote these sends into an answer or a frame: one sms_handed_over each. */
export async function recordHandedOver(ledger: ConsentLedger, callId: string, sends: readonly NamedSend[], at: string): Promise<void> {
  for (const { approval, send } of sends) {
    await ledger.append({ id: outcomeId(approval, "sms_handed_over"), kind: "sms_handed_over", callId, at, number: send.phone_number, outcome: "handed_over", ref: approval });
  }
}

/** These approved sends never left: one sms_not_sent each, with the reason. */
export async function recordNotSent(
  ledger: ConsentLedger,
  callId: string,
  sends: ReadonlyArray<{ approval: string; number?: string }>,
  reason: SmsNotSentReason,
  detail: string,
  at: string,
): Promise<void> {
  for (const { approval, number } of sends) {
    await ledger.append({ id: outcomeId(approval, "sms_not_sent"), kind: "sms_not_sent", callId, at, ...(number ? { number } : {}), outcome: "not_sent", reason, detail, ref: approval });
  }
}
