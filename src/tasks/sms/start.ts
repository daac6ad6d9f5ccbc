import { maskNumber, parseCallerNumber } from "../../phone/number.js";
import { checkRecipient } from "../../phone/policy.js";
import { ownNumberCandidate, speakable } from "./numbers.js";
import { setSmsResult, type SmsTaskResult } from "./result.js";
import { smsBudget } from "./smsBudget.js";
import { renderSmsText, SmsSlotError } from "./smsText.js";
import { STEP } from "./stepNames.js";
import type { SmsContext } from "./types.js";

/** What a flow starts the SMS task with. */
export interface SmsTaskParams {
  /** What the SMS says: for each configured slot (`sms.slots`), the option key to send. */
  slots: Record<string, string>;
  /**
   * The number the consent question offers first, as the caller said it or in AI Flow format.
   * Default: the caller's own number when it may receive an SMS. `null`: ask for a number.
   * A number the recipient policy refuses is not offered; the caller is asked instead.
   */
  offerNumber?: string | null;
  /** The step the task returns to with its result. Default: the step that started it. */
  returnTo?: string;
}

/** The steps a tool that starts the task moves the flow to: declare them in its `transitions`. */
export const SMS_TASK_ENTRY = [STEP.confirmConsent, STEP.collectNumber] as const;
export type SmsTaskEntry = (typeof SMS_TASK_ENTRY)[number];

/**
 * What starting gave: the task runs (the tool returns `next` and `note`), or it is over at once
 * with its result (an earlier "no" makes every later start `declined`; no SMS left is `refused`).
 * Either way the result also reaches the task's `onResult` at the end of the turn.
 */
export type SmsTaskStart = { status: "started"; next: SmsTaskEntry; note: string } | { status: "finished"; result: SmsTaskResult; note: string };

/** Start the SMS consent-and-send task from any step of any flow that includes it. */
export function startSmsTask(ctx: SmsContext, params: SmsTaskParams): SmsTaskStart {
  const { state } = ctx;
  const { config } = ctx.services;
  const finished = (result: SmsTaskResult, note: string): SmsTaskStart => {
    setSmsResult(ctx, result);
    state.sms.startedBy = state.step;
    return { status: "finished", result, note };
  };
  // A "no" is final for the call: asking again would turn it into a re-ask.
  if (state.sms.declined) return finished({ status: "declined", number: state.sms.number }, ctx.note("sms_declined_earlier"));
  const budget = smsBudget(state, config);
  if (!budget.canSend) return finished({ status: "refused", reason: "no_sms_left" }, ctx.note(budget.standing > 0 ? "sms_already_sent" : "sms_no_more_attempts"));
  try {
    renderSmsText(config, params.slots);
  } catch (e) {
    if (!(e instanceof SmsSlotError)) throw e;
    return finished({ status: "refused", reason: "template_slots_invalid" }, ctx.note("sms_refused", { reason: e.message }));
  }
  state.sms.slots = { ...params.slots };
  // A new start is a new question: no earlier yes carries over to it.
  state.sms.consent = undefined;
  state.sms.startedBy = state.step;
  state.returnStep = params.returnTo ?? state.step;
  const offered = offeredNumber(ctx, params.offerNumber);
  if (offered) {
    // The consent question names this number; the caller can still ask for another one.
    state.sms.number = offered;
    state.sms.consent = undefined;
    const note = offered === state.callerNumber ? "sms_flow_started_own_number" : "sms_flow_started_offered_number";
    return { status: "started", next: STEP.confirmConsent, note: ctx.note(note, { number: speakable(offered, config.homeCountry) }) };
  }
  return { status: "started", next: STEP.collectNumber, note: ctx.note("sms_flow_started") };
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
