import { recordEvidence, type SmsContext } from "./types.js";
import { speakable } from "./numbers.js";
import { InvariantError } from "../../core/errors.js";

/**
 * Put the configured consent question, naming the current number, to the caller and
 * remember exactly what was asked and in which turn. A new question replaces any earlier one.
 */
export async function askConsentQuestion(ctx: SmsContext): Promise<void> {
  const { state } = ctx;
  const { config } = ctx.services;
  const number = state.sms.number;
  if (!number) throw new InvariantError("askConsentQuestion without a number");
  // Defence in depth: after a "no" the question is never put again, whoever asks for it.
  if (state.sms.declined) {
    ctx.guard({ subject: "consent_question", allowed: false, reason: "declined" });
    return;
  }
  const question = config.consent.question
    .replaceAll("{number}", speakable(number, config.homeCountry))
    .replaceAll("{business_name}", config.business.name);
  const askedId = await recordEvidence(ctx, { kind: "consent_asked", number, question });
  ctx.speak(question);
  state.sms.consent = { number, question, askedTurn: state.turn, askedAt: ctx.nowIso(), spokenIndex: state.spoken, interrupted: false, askedId };
}
