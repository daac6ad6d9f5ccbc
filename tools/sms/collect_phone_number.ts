import { z } from "zod";
import { defineTool } from "../../src/engine/define.js";
import { speakable } from "../../src/tasks/sms/numbers.js";
import { STEP } from "../../src/tasks/sms/stepNames.js";
import type { SmsFlowTypes, SmsLineKey } from "../../src/tasks/sms/types.js";
import { maskNumber, parseCallerNumber } from "../../src/phone/number.js";
import { checkRecipient, type RecipientRefusal } from "../../src/phone/policy.js";

const REFUSAL_LINE: Record<RecipientRefusal, SmsLineKey> = {
  invalid_number: "number_invalid",
  country_not_allowed: "number_country_not_allowed",
  number_type_not_allowed: "number_type_not_allowed",
  number_blocked: "number_blocked",
};

/**
 * Room for a number said in words and passed on verbatim ("Meine Handynummer ist null eins fünf
 * eins, zwölf, vierunddreißig, …" is about 100 characters): the parser reads words, pairs and
 * corrections, so the limit only keeps out what no caller says.
 */
const MAX_SPOKEN_NUMBER_CHARS = 200;

export const collectPhoneNumber = defineTool<SmsFlowTypes>()({
  name: "collect_phone_number",
  transitions: [STEP.confirmConsent],
  parameters: () =>
    z.object({
      phone_number: z
        .string()
        .min(1)
        .max(MAX_SPOKEN_NUMBER_CHARS)
        .describe("The number exactly as the caller said or keyed it, e.g. '0151 1234 5678' or 'plus 49 151 ...'. Digits or spoken digit words."),
    }),
  execute(ctx, { phone_number }) {
    const { state } = ctx;
    const { config } = ctx.services;
    if (state.sms.declined) return ctx.note("sms_declined_earlier");
    const parsed = parseCallerNumber(phone_number, config.homeCountry);
    const verdict = checkRecipient(parsed, config.recipients);
    if (!verdict.ok) {
      ctx.guard({ subject: "collect_phone_number", allowed: false, reason: `recipient_${verdict.reason}`, detail: verdict.detail });
      ctx.say(REFUSAL_LINE[verdict.reason]);
      return ctx.note("number_refused", { reason: verdict.detail });
    }
    const number = parsed!.aiflow;
    if (state.sms.number && state.sms.number !== number) {
      ctx.log.info({ sessionId: ctx.sessionId, from: maskNumber(state.sms.number), to: maskNumber(number) }, "number changed; earlier consent void");
    }
    // Any (re)collected number needs its own consent question, even the same digits again.
    state.sms.number = number;
    state.sms.consent = undefined;
    state.dtmf = "";
    return { result: ctx.note("number_noted", { number: speakable(number, config.homeCountry) }), next: STEP.confirmConsent };
  },
});
