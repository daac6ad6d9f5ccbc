import { z } from "zod";
import { actions } from "../../src/aiflow/actions.js";
import { defineTool, type Decision } from "../../src/engine/define.js";
import { consentVerdict } from "../../src/tasks/sms/consentRules.js";
import { renderSmsText } from "../../src/tasks/sms/smsText.js";
import { speakable } from "../../src/tasks/sms/numbers.js";
import { smsBudget } from "../../src/tasks/sms/smsBudget.js";
import { finishSms, type SmsTaskRefusal } from "../../src/tasks/sms/result.js";
import type { SendRefusal, SmsFlowTypes, SmsLineKey } from "../../src/tasks/sms/types.js";

/** Which fixed line explains a refused send to the caller, truthfully: one entry per refusal, checked by the compiler. */
const REFUSAL_LINE: Record<SendRefusal, SmsLineKey | ((standing: number) => SmsLineKey)> = {
  sms_limit_per_call: (standing) => (standing > 0 ? "sms_refused_limit" : "sms_no_more_attempts"),
  recipient_rate_limited: "sms_refused_rate_limited",
  caller_rate_limited: "sms_refused_busy",
  prefix_rate_limited: "sms_refused_busy",
  country_rate_limited: "sms_refused_busy",
  global_rate_limited: "sms_refused_busy",
  rate_limiter_unavailable: "sms_refused_busy",
  consent_declined: "sms_not_sent",
  consent_no_number: "sms_not_sent",
  consent_not_asked: "sms_not_sent",
  consent_number_changed: "sms_not_sent",
  consent_not_answered: "sms_not_sent",
  consent_same_turn: "sms_not_sent",
  consent_question_not_last: "sms_not_sent",
  consent_question_interrupted: "sms_not_sent",
  consent_already_used: "sms_not_sent",
  template_slots_invalid: "sms_not_sent",
  message_not_from_template: "sms_not_sent",
  recipient_invalid_number: "sms_not_sent",
  recipient_country_not_allowed: "sms_not_sent",
  recipient_number_type_not_allowed: "sms_not_sent",
  recipient_number_blocked: "sms_not_sent",
  recipient_opted_out: "sms_refused_opted_out",
  opt_out_list_unavailable: "sms_not_sent",
  turn_superseded: "sms_not_sent",
  ledger_unavailable: "sms_not_sent",
};

/** Whether a guard decision's reason is one of the gate's send refusals (every SendRefusal has a line above). */
function isSendRefusal(reason: Decision<SmsFlowTypes>["reason"] | SmsTaskRefusal): reason is SendRefusal {
  return Object.hasOwn(REFUSAL_LINE, reason);
}

/** The gate's reason as a typed refusal: anything but a send refusal is a malformed action. */
function asRefusal(reason: Decision<SmsFlowTypes>["reason"]): SmsTaskRefusal {
  return isSendRefusal(reason) ? reason : "invalid_action";
}

function refusalLine(refusal: SmsTaskRefusal, standing: number): SmsLineKey {
  if (!isSendRefusal(refusal)) return "sms_not_sent";
  const line = REFUSAL_LINE[refusal];
  return typeof line === "function" ? line(standing) : line;
}

export const sendConfirmationSms = defineTool<SmsFlowTypes>()({
  name: "send_confirmation_sms",
  transitions: ["exit"],
  parameters: () => z.object({}),
  async execute(ctx) {
    const { state } = ctx;
    const { config } = ctx.services;
    // Defensive re-check; the action gate checks again on its own.
    const consent = consentVerdict(state);
    if (!consent.valid) {
      ctx.guard({ subject: "send_confirmation_sms", allowed: false, reason: `consent_${consent.reason}` });
      const next = finishSms(ctx, { status: "refused", reason: `consent_${consent.reason}`, number: state.sms.number });
      ctx.say("sms_not_sent");
      return { result: ctx.note("sms_not_sent_no_consent", { reason: consent.reason }), next };
    }
    const text = renderSmsText(config, state.sms.slots);
    const decision = await ctx.emitChecked(actions.sendSms(ctx.sessionId, consent.number, text));
    if (!decision.allowed) {
      const refusal = asRefusal(decision.reason);
      const next = finishSms(ctx, { status: "refused", reason: refusal, number: consent.number });
      ctx.say(refusalLine(refusal, smsBudget(state, config).standing));
      return { result: ctx.note("sms_refused", { reason: decision.reason }), next };
    }
    const next = finishSms(ctx, { status: "handed_over", number: consent.number });
    const spoken = speakable(consent.number, config.homeCountry);
    ctx.say("sms_sent", { number: spoken });
    return { result: ctx.note("sms_sent", { number: spoken }), next };
  },
});
