import { inSmsTask, recordSmsResult, SMS_TASK } from "./result.js";
import { STEP } from "./stepNames.js";
import { evidenceId } from "./evidenceIds.js";
import type { SmsContext } from "./types.js";
import { sayKeptLines, withdrawPending } from "./withdrawnSends.js";
import { askConsentQuestion } from "./consentQuestion.js";

/**
 * Caller events that overtake a send. Answers leave within sipgate's second, so a yes's turn may
 * still be on its way (the caller heard only a holding line) when the caller speaks again. The
 * send waits in the outbox until that event is evaluated (the store holds it back); these decide
 * what the event means for it.
 */

/**
 * The caller spoke before the send of their yes left (and before they heard it announced): to
 * them, the consent question is still open, so their words are evaluated in the consent step.
 * A "no" (record_consent(false), cancel) takes the send back; anything else lets it leave, and
 * the call goes on where it was. Nothing is asked again.
 */
export function overtakenSend(ctx: SmsContext): void {
  const { state } = ctx;
  const { sms } = state;
  // A recheck left over from a turn that failed before its end: the call goes back first.
  if (sms.recheck) restore(ctx, sms.recheck);
  if (sms.declined || state.step === STEP.confirmConsent || ctx.pendingSends().length === 0) return;
  sms.recheck = { step: state.step, stepHistoryStart: state.stepHistoryStart };
  // The task runs again for these words: a "no" finishes it back to where the call was.
  ctx.tasks.reopen(SMS_TASK.name, state.step);
  state.step = STEP.confirmConsent;
  state.stepHistoryStart = state.history.length;
  ctx.log.info({ sessionId: ctx.sessionId, step: state.sms.recheck?.step }, "caller spoke before the send left: their words are the yes's verdict");
}

/**
 * The recheck's turn is over. The yes stands only if the model confirmed it (record_consent(true)):
 * then the send leaves and the call goes back where it was. A "no" already took the send back and
 * left the task. Anything else is no clear yes: a corrected number, another number, an unclear
 * answer: the send is withdrawn and the caller is asked again (unless their words already led to
 * a new question). If no model could judge the words at all, they were never evaluated: a possible
 * "no", handled as one.
 */
export async function recheckDone(ctx: SmsContext): Promise<void> {
  const { state } = ctx;
  const { sms } = state;
  const r = sms.recheck;
  if (!r) return;
  if (r.confirmed || ctx.pendingSends().length === 0) return restore(ctx, r);
  sms.recheck = undefined;
  const requests = ctx.record.llmRequests;
  if (requests.length > 0 && requests.every((x) => x.error !== undefined && x.error !== "cancelled by the caller")) {
    // Still in the reopened task: treatAsNo ends it, back to where the call was.
    await treatAsNo(ctx);
    return;
  }
  const withdrawn = await withdrawPending(ctx, "the caller's words after the yes, before the send left, were no clear yes");
  sayKeptLines(ctx, withdrawn);
  const c = sms.consent;
  const askedNow = c !== undefined && !c.answer && c.askedTurn === state.turn;
  if (state.step === STEP.confirmConsent && !askedNow && sms.number) await askConsentQuestion(ctx);
}

function restore(ctx: SmsContext, r: NonNullable<SmsContext["state"]["sms"]["recheck"]>): void {
  const { state } = ctx;
  state.sms.recheck = undefined;
  // A "no" already finished the reopened task (and the call is back); else it is left as it was.
  if (state.step !== STEP.confirmConsent) return;
  ctx.tasks.abandon(SMS_TASK.name);
  state.step = r.step;
  state.stepHistoryStart = r.stepHistoryStart;
}

/**
 * A caller event that will never be evaluated (its turn crashed instances again and again) may
 * have been a "no". Asymmetry: it is treated as one wherever a "yes" is at stake: a send it
 * overtook is withdrawn, an open offer ends for the call. Nothing is said (the turn never ran).
 */
export async function treatAsNo(ctx: SmsContext): Promise<void> {
  const { state } = ctx;
  const { sms } = state;
  const inTask = inSmsTask(ctx);
  if (sms.declined || (!inTask && ctx.pendingSends().length === 0)) return;
  sms.declined = true;
  const detail = "the caller's words were never evaluated; they count as a no";
  await withdrawPending(ctx, detail);
  const number = sms.consent?.number ?? sms.number;
  const declined = { status: "declined", number } as const;
  recordSmsResult(ctx, declined);
  // Out of the task (if it runs), back to where it returns; its starter hears the result.
  await ctx.tasks.end(SMS_TASK.name, declined);
  await ctx.services.ledger
    .append({ id: evidenceId(ctx, "consent_declined"), kind: "consent_declined", callId: ctx.sessionId, at: ctx.nowIso(), number, outcome: "declined", detail })
    .catch((e: Error) => ctx.log.error({ sessionId: ctx.sessionId, err: e.message }, "ledger could not record an unevaluated event"));
}
