import type { SmsFailureReason } from "../../aiflow/events.js";
import type { AiFlowEvent } from "../../aiflow/events.js";
import { maskNumber, normalizeAiFlowNumber } from "../../phone/number.js";
import { inSmsTask, SMS_TASK, type SmsFailureNotice } from "./result.js";
import { STEP } from "./stepNames.js";
import { recordEvidence, type SmsContext } from "./types.js";

/** Reasons worth one retry (with a new yes); the others are account problems an operator must fix. */
const TRANSIENT_FAILURES: ReadonlySet<SmsFailureReason> = new Set<SmsFailureReason>(["smsc_unavailable", "unknown"]);

export type { SmsFailureNotice } from "./result.js";

/**
 * Bookkeeping for sms_failed, run for every such event, even while the call is hanging up:
 * mark the SMS failed, write the ledger, alert on account problems.
 */
export async function recordSmsFailure(ctx: SmsContext, event: AiFlowEvent): Promise<void> {
  if (event.type !== "sms_failed") return;
  const { state } = ctx;
  const { config } = ctx.services;
  const recipient = normalizeAiFlowNumber(event.recipient);
  // rawReason: what sipgate sent when it is none of the documented reasons (handled as "unknown").
  const logFields = { sessionId: ctx.sessionId, recipient: maskNumber(event.recipient), reason: event.reason, rawReason: event.rawReason, detail: event.message };
  const sent = [...state.sms.sent].reverse().find((s) => !s.failed && (!recipient || s.number === recipient));
  const transient = TRANSIENT_FAILURES.has(event.reason);
  if (!sent) {
    const already = state.sms.sent.some((s) => s.number === recipient && s.failed === event.reason);
    state.sms.lastFailure = { reason: event.reason, matched: false, wasRetry: false, canRetry: false };
    if (already) {
      ctx.log.info(logFields, "sms_failed repeated for an SMS already marked failed");
      return;
    }
    ctx.log.warn(logFields, "sms_failed for an SMS this call did not send");
    await recordEvidence(ctx, { kind: "sms_failed", number: recipient ?? event.recipient, outcome: event.reason, detail: `unmatched: ${event.message}` });
    return;
  }
  sent.failed = event.reason;
  const wasRetry = state.sms.sent.indexOf(sent) >= config.maxPerCall;
  const canRetry = transient && config.retryTransientFailures && state.sms.retryAllowance === 0 && !state.sms.declined;
  state.sms.lastFailure = { reason: event.reason, matched: true, wasRetry, canRetry, number: sent.number };
  if (!transient) ctx.log.error(logFields, "SMS failed: account problem, needs an operator");
  else ctx.log.warn(logFields, "SMS failed: transient");
  await recordEvidence(ctx, { kind: "sms_failed", number: sent.number, outcome: event.reason, detail: event.message, ...(sent.approval ? { ref: sent.approval } : {}) });
}

/**
 * What the caller hears about a failed SMS: one retry (with a new yes) for transient reasons,
 * else the spoken alternative. Returns the notice for the starting flow (none when nothing of
 * ours failed) and whether the task is entered again for the retry.
 */
export function reactToSmsFailure(ctx: SmsContext): SmsFailureNotice | undefined {
  const { state } = ctx;
  const failure = state.sms.lastFailure;
  state.sms.lastFailure = undefined;
  // Nothing of ours failed (another recipient, a repeat): the caller hears nothing.
  if (!failure?.matched || !failure.number) return undefined;
  if (failure.canRetry) {
    // The retry is a new send: the caller is asked the consent question again, then returns to
    // where the call is now (or, mid-task, to where the running task returns).
    state.sms.retryAllowance = 1;
    state.sms.consent = undefined;
    if (!inSmsTask(ctx)) ctx.tasks.reopen(SMS_TASK.name);
    state.sms.number = failure.number;
    ctx.say("sms_failed_notice", {}, { expectAnswer: false });
    return { reason: failure.reason, number: failure.number, retrying: true };
  }
  if (!TRANSIENT_FAILURES.has(failure.reason)) ctx.say("sms_failed_account");
  else ctx.say(failure.wasRetry ? "sms_failed_final" : "sms_failed_no_retry");
  return { reason: failure.reason, number: failure.number, retrying: false };
}

/** The step a retry enters (declared as the task's sms_failed hook transition). */
export const RETRY_STEP = STEP.confirmConsent;
