import { z } from "zod";
import { defineTool } from "../../src/engine/define.js";
import { SMS_TASK_ENTRY, startSmsTask } from "../../src/tasks/sms/start.js";
import { CALLBACK_STEP } from "../../src/tasks/callback/stepNames.js";
import type { CallbackFlowTypes } from "../../src/tasks/callback/types.js";
import { missingFields } from "../../src/tasks/callback/state.js";

/**
 * Run by code once every detail is confirmed: offer the confirmation SMS through the SMS task
 * (its consent question is the offer). The text is fixed by config (`callback.smsSlots`):
 * nothing the caller said goes into an SMS. The task returns to the wrap-up with its result.
 */
export const offerSmsConfirmation = defineTool<CallbackFlowTypes>()({
  name: "offer_sms_confirmation",
  transitions: [...SMS_TASK_ENTRY, CALLBACK_STEP.wrapUp, CALLBACK_STEP.collectDetails],
  parameters: () => z.object({}),
  execute(ctx) {
    const { state } = ctx;
    // A "no" batched after the last "yes" can have taken a detail back: collect it again first.
    const missing = missingFields(state.callback);
    if (missing.length > 0) return { result: ctx.note("callback_detail_confirmed", { field: "-", missing: missing.join(", ") }), next: CALLBACK_STEP.collectDetails };
    state.callback.smsOffered = true;
    const start = startSmsTask(ctx, { slots: ctx.services.config.callback?.smsSlots ?? {}, returnTo: CALLBACK_STEP.wrapUp });
    return { result: start.note, next: start.status === "started" ? start.next : CALLBACK_STEP.wrapUp };
  },
});
