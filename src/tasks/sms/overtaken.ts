import { setSmsResult } from "./result.js";
import { STEP, TASK_STEPS } from "./stepNames.js";
import type { SmsContext } from "./types.js";
import { forgetWithdrawnSends, recordWithdrawn } from "./withdrawnSends.js";

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
  recheckDone(ctx);
  if (sms.declined || state.step === STEP.confirmConsent || ctx.pendingSends().length === 0) return;
  sms.recheck = { step: state.step, returnStep: state.returnStep, stepHistoryStart: state.stepHistoryStart };
  // A "no" exits the task to where the call was.
  state.returnStep = state.step;
  state.step = STEP.confirmConsent;
  state.stepHistoryStart = state.history.length;
  ctx.log.info({ sessionId: ctx.sessionId, step: sms.recheck.step }, "caller spoke before the send left: their words are the yes's verdict");
}

/** The recheck's turn is over: back where the call was, unless the words were a "no" (which already left the task). */
export function recheckDone(ctx: SmsContext): void {
  const { state } = ctx;
  const r = state.sms.recheck;
  if (!r) return;
  state.sms.recheck = undefined;
  if (state.step !== STEP.confirmConsent) return;
  state.step = r.step;
  state.returnStep = r.returnStep;
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
  const inTask = TASK_STEPS.includes(state.step);
  if (sms.declined || (!inTask && ctx.pendingSends().length === 0)) return;
  sms.declined = true;
  const withdrawn = ctx.withdrawPendingSends();
  forgetWithdrawnSends(state, withdrawn);
  const number = sms.consent?.number ?? sms.number;
  if (!withdrawn.length || state.sms.result?.value.status !== "refused") setSmsResult(ctx, { status: "declined", number });
  if (inTask) {
    // Out of the task, back to where it was started.
    state.step = state.returnStep ?? state.sms.startedBy ?? state.step;
    state.returnStep = undefined;
    state.stepHistoryStart = state.history.length;
  }
  const detail = "the caller's event was never evaluated (its turn failed repeatedly); it counts as a no";
  await ctx.services.ledger
    .append({ kind: "consent_declined", callId: ctx.sessionId, at: ctx.nowIso(), number, outcome: "declined", detail })
    .catch((e: Error) => ctx.log.error({ sessionId: ctx.sessionId, err: e.message }, "ledger could not record an unevaluated event"));
  await recordWithdrawn(ctx.services.ledger, ctx.sessionId, withdrawn, detail).catch((e: Error) => ctx.log.error({ sessionId: ctx.sessionId, err: e.message }, "ledger could not record a withdrawn send"));
}
