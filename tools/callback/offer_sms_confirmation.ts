import { z } from "zod";
import { defineTool, startTask } from "../../src/engine/define.js";
import { SMS_TASK, SMS_TASK_ENTRY, smsStartOutcome } from "../../src/tasks/sms/start.js";
import { CALLBACK_STEP } from "../../src/agents/callback/stepNames.js";
import type { CallbackContext, CallbackFlowTypes } from "../../src/agents/callback/types.js";
import { missingFields } from "../../src/agents/callback/state.js";

/**
 * Run by code once every detail is confirmed: offer the confirmation SMS through the SMS task
 * (its consent question is the offer). The text is fixed by config (`agents.callback.smsSlots`):
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
    const params = { slots: ctx.services.callback.smsSlots };
    // The task's first line (the offer) comes with the next step, after this one.
    sayRequestTaken(ctx, { questionFollows: smsStartOutcome(ctx, params) === undefined });
    // Back to the wrap-up with the result (at once, when the task ends before it begins).
    return { next: startTask(SMS_TASK, params, { returnTo: CALLBACK_STEP.wrapUp }) };
  },
});

/**
 * "Thank you, Anna Schmidt. Your request is noted …", once per call, before the SMS offer: the
 * request is taken whatever the caller answers, and the offer's outcome ("sent. Anything else?")
 * then ends the caller's turn instead of being followed by the thanks.
 */
function sayRequestTaken(ctx: CallbackContext, { questionFollows }: { questionFollows: boolean }): void {
  const { callback } = ctx.state;
  if (callback.closed) return;
  callback.closed = true;
  const name = callback.details.name?.value;
  ctx.say("callback_done", { name_suffix: name ? `, ${name}` : "", time_window: callback.details.time_window?.value ?? "" }, { expectAnswer: !questionFollows });
}
