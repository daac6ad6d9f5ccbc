import { z } from "zod";
import { defineTool } from "../../src/engine/define.js";
import { answerTo } from "../../src/engine/heard.js";
import { CALLBACK_FIELDS, missingFields } from "../../src/agents/callback/state.js";
import { CALLBACK_STEP } from "../../src/agents/callback/stepNames.js";
import { readBack } from "../../src/agents/callback/readBack.js";
import type { CallbackFlowTypes } from "../../src/agents/callback/types.js";

/**
 * The caller's answer to a read-back. A "yes" counts only as an answer to the read-back itself:
 * given in a later turn, with the read-back the last line the caller heard. A "no" always counts
 * (the detail is dropped and asked again): guards stop a wrong "yes", never a "no".
 */
export const confirmCallbackDetail = defineTool<CallbackFlowTypes>()({
  name: "confirm_callback_detail",
  transitions: [CALLBACK_STEP.offerSms],
  parameters: () =>
    z.object({
      field: z.enum(CALLBACK_FIELDS).describe("the detail that was read back"),
      correct: z.boolean().describe("true only if the caller clearly said the read-back is right; false if they corrected or rejected it"),
    }),
  // A "no" runs even after an earlier call of the same batch completed the request and moved on.
  withdraws: ({ correct }) => !correct,
  execute(ctx, { field, correct }) {
    const { state } = ctx;
    const detail = state.callback.details[field];
    if (!detail) return ctx.note("callback_detail_not_noted", { field });
    if (!correct) {
      delete state.callback.details[field];
      return ctx.note("callback_detail_rejected", { field });
    }
    if (detail.confirmed) return ctx.note("callback_detail_confirmed", { field, missing: missingFields(state.callback).join(", ") || "nothing" });
    if (answerTo(ctx, { turn: detail.readBackTurn, spokenIndex: detail.readBackSpoken}) !== "answer") {
      // Not an answer to the read-back (same turn, not heard yet or something else said since, the
      // caller cut into it, nothing understood): read it back again.
      ctx.guard({ subject: "confirm_callback_detail", allowed: false, reason: "read_back_not_answered", detail: field });
      readBack(ctx, field, detail.value);
      return ctx.note("callback_read_back_repeated", { field });
    }
    detail.confirmed = true;
    const missing = missingFields(state.callback);
    if (missing.length > 0) return ctx.note("callback_detail_confirmed", { field, missing: missing.join(", ") });
    if (state.callback.smsOffered) return ctx.note("callback_already_complete");
    return { result: ctx.note("callback_complete"), next: CALLBACK_STEP.offerSms };
  },
});
