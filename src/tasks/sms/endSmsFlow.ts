import type { LedgerRecordInput } from "../../ledger/ledger.js";
import type { TaskFinish } from "../../engine/define.js";
import { finishSms } from "./result.js";
import { recordEvidence, type SmsContext } from "./types.js";
import { sayKeptLines, withdrawPending } from "./withdrawnSends.js";

/**
 * The caller said no (a declined consent, a cancelled SMS): the SMS flow ends for the whole call.
 *
 * A "no" needs no proof. The checks that protect a "yes" (same turn as the question, question
 * interrupted or not the last line heard, empty reply, not asked for this number) exist to stop
 * a wrong send; none of them may turn a "no" into a re-ask. So this runs whatever the consent
 * state, takes effect before the ledger is written, and holds when the ledger is down: losing a
 * "no" could lead to a send, losing its record only costs evidence.
 */
export async function endSmsFlow(
  ctx: SmsContext,
  line: "sms_declined" | "sms_cancelled",
  evidence: Omit<LedgerRecordInput, "callId" | "at" | "id">,
): Promise<TaskFinish> {
  ctx.state.sms.declined = true;
  // A send this "no" overtook never leaves (the caller never heard it announced either).
  const withdrawn = await withdrawPending(ctx, "the caller's no arrived before the send left");
  const finished = finishSms(ctx, { status: line === "sms_declined" ? "declined" : "cancelled", number: evidence.number });
  ctx.say(line);
  sayKeptLines(ctx, withdrawn);
  await recordEvidence(ctx, evidence).catch((e: Error) => ctx.log.error({ sessionId: ctx.sessionId, err: e.message, kind: evidence.kind }, "ledger could not record a decline"));
  // Back to the step that started the SMS task, with the result.
  return finished;
}
