import { z } from "zod";
import { actions } from "../src/aiflow/actions.js";
import { defineTool } from "../src/engine/define.js";
import { consentVerdict } from "../src/guards/consentRules.js";
import { renderSmsText } from "../src/guards/smsText.js";
import { speakable } from "../src/flow/numbers.js";
import { smsBudget } from "../src/guards/smsBudget.js";

/** Which fixed line explains a refused send to the caller, truthfully. */
function refusalLine(reason: string, standing: number): string {
  if (reason === "sms_limit_per_call") return standing > 0 ? "sms_refused_limit" : "sms_no_more_attempts";
  if (reason === "recipient_rate_limited") return "sms_refused_rate_limited";
  if (reason.endsWith("_rate_limited") || reason === "rate_limiter_unavailable") return "sms_refused_busy";
  return "sms_not_sent";
}

export const sendConfirmationSms = defineTool({
  name: "send_confirmation_sms",
  transitions: ["exit"],
  parameters: () => z.object({}),
  async execute(ctx) {
    const { state, config } = ctx;
    // Defensive re-check; the action gate checks again on its own.
    const consent = consentVerdict(state);
    if (!consent.valid) {
      ctx.guard({ subject: "send_confirmation_sms", allowed: false, reason: `consent_${consent.reason}` });
      ctx.say("sms_not_sent");
      ctx.exitFlow();
      return ctx.note("sms_not_sent_no_consent", { reason: consent.reason });
    }
    const text = renderSmsText(config, state.sms.slots);
    const decision = await ctx.emitChecked(actions.sendSms(ctx.sessionId, consent.number, text));
    ctx.exitFlow();
    if (!decision.allowed) {
      ctx.say(refusalLine(decision.reason, smsBudget(state, config).standing));
      return ctx.note("sms_refused", { reason: decision.reason });
    }
    const spoken = speakable(consent.number, config.homeCountry);
    ctx.say("sms_sent", { number: spoken });
    return ctx.note("sms_sent", { number: spoken });
  },
});
