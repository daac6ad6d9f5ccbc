import { z } from "zod";
import { defineTool } from "../../src/engine/define.js";
import { optOutOfSms } from "../../src/tasks/sms/optOut.js";
import type { SmsFlowTypes } from "../../src/tasks/sms/types.js";

/** Same room as collect_phone_number: a number said in words and passed on verbatim. */
const MAX_SPOKEN_NUMBER_CHARS = 200;

/**
 * The caller never wants SMS from us again: the number goes on the do-not-text list (checked on
 * every later send, in every call), and no SMS leaves in this call. Offered in every LLM step of
 * every flow with the SMS task (its `tools`), since a caller may say it anywhere.
 */
export const optOutSms = defineTool<SmsFlowTypes>()({
  name: "opt_out_sms",
  transitions: ["exit"],
  parameters: () =>
    z.object({
      number: z
        .string()
        .min(1)
        .max(MAX_SPOKEN_NUMBER_CHARS)
        // Described before .optional(): strict schemas (anyOf string|null) keep the description only so.
        .describe("Only when the caller names another number that must get no SMS: that number exactly as said. Leave empty for the caller's own number.")
        .optional(),
    }),
  // A "no" to every SMS: it runs even when an earlier call in the same batch moved the flow.
  withdraws: () => true,
  execute: (ctx, { number }) => optOutOfSms(ctx, number),
});
