import type { TaskEntry } from "../../engine/define.js";
import { maskNumber, parseCallerNumber } from "../../phone/number.js";
import { checkRecipient } from "../../phone/policy.js";
import { ownNumberCandidate, speakable } from "./numbers.js";
import { recordSmsResult, type SmsTaskParams, type SmsTaskResult } from "./result.js";
import { smsBudget } from "./smsBudget.js";
import { renderSmsText, SmsSlotError } from "./smsText.js";
import { STEP } from "./stepNames.js";
import type { SmsContext } from "./types.js";

export { SMS_TASK, type SmsTaskParams, type SmsTaskResult } from "./result.js";

/** The steps the task begins at: a tool that starts it declares them in its `transitions`. */
export const SMS_TASK_ENTRY = [STEP.confirmConsent, STEP.collectNumber] as const;

/**
 * Whether starting the task now would end it at once, and with what (an earlier "no" makes every
 * later start `declined`; no SMS left or slots the config lacks are `refused`). Changes nothing: a
 * starting tool that must know whether a question follows asks this first.
 */
export function smsStartOutcome(ctx: SmsContext, params: SmsTaskParams): { result: SmsTaskResult; note: string } | undefined {
  const { state } = ctx;
  const { config } = ctx.services;
  // A "no" is final for the call: asking again would turn it into a re-ask.
  if (state.sms.declined) return { result: { status: "declined", number: state.sms.number }, note: ctx.note("sms_declined_earlier") };
  const budget = smsBudget(state, config);
  if (!budget.canSend) return { result: { status: "refused", reason: "no_sms_left" }, note: ctx.note(budget.standing > 0 ? "sms_already_sent" : "sms_no_more_attempts") };
  try {
    renderSmsText(config, params.slots);
  } catch (e) {
    if (!(e instanceof SmsSlotError)) throw e;
    return { result: { status: "refused", reason: "template_slots_invalid" }, note: ctx.note("sms_refused", { reason: e.message }) };
  }
  return undefined;
}

/** The SMS task's start (TaskDef.start): where it begins for these parameters, or its result at once. */
export function startSms(ctx: SmsContext, params: SmsTaskParams): TaskEntry<SmsTaskResult> {
  const { state } = ctx;
  const { config } = ctx.services;
  const atOnce = smsStartOutcome(ctx, params);
  if (atOnce) {
    recordSmsResult(ctx, atOnce.result);
    return atOnce;
  }
  state.sms.slots = { ...params.slots };
  // A new start is a new question: no earlier yes carries over to it.
  state.sms.consent = undefined;
  const offered = offeredNumber(ctx, params.offerNumber);
  if (offered) {
    // The consent question names this number; the caller can still ask for another one.
    state.sms.number = offered;
    const note = offered === state.callerNumber ? "sms_flow_started_own_number" : "sms_flow_started_offered_number";
    return { step: STEP.confirmConsent, note: ctx.note(note, { number: speakable(offered, config.homeCountry) }) };
  }
  return { step: STEP.collectNumber, note: ctx.note("sms_flow_started") };
}

function offeredNumber(ctx: SmsContext, offer: string | null | undefined): string | undefined {
  if (offer === null) return undefined;
  if (offer === undefined) return ownNumberCandidate(ctx);
  const { config } = ctx.services;
  const parsed = parseCallerNumber(offer, config.homeCountry);
  const verdict = checkRecipient(parsed, config.recipients);
  if (verdict.ok) return parsed!.aiflow;
  ctx.log.info({ sessionId: ctx.sessionId, offered: maskNumber(offer), reason: verdict.reason }, "offered number not allowed: asking the caller");
  return undefined;
}
