import { z } from "zod";
import { defineTool } from "../../src/engine/define.js";
import { ownNumberCandidate, speakable } from "../../src/tasks/sms/numbers.js";
import { smsBudget } from "../../src/tasks/sms/smsBudget.js";
import { STEP } from "../../src/tasks/sms/stepNames.js";
import type { SmsFlowTypes, SmsServices } from "../../src/tasks/sms/types.js";

/** One enum parameter per configured SMS slot: the model chooses what to send, never writes it. */
function slotParameters({ config }: SmsServices) {
  const shape: Record<string, z.ZodTypeAny> = {};
  for (const [name, slot] of Object.entries(config.sms.slots)) {
    const keys = Object.keys(slot.options) as [string, ...string[]];
    shape[name] = z.enum(keys).describe(slot.description);
  }
  return z.object(shape);
}

export const startSmsFlow = defineTool<SmsFlowTypes>()({
  name: "start_sms_flow",
  transitions: [STEP.confirmConsent, STEP.collectNumber],
  parameters: slotParameters,
  execute(ctx, slots) {
    const { state } = ctx;
    const { config } = ctx.services;
    if (state.sms.declined) return ctx.note("sms_declined_earlier");
    const budget = smsBudget(state, config);
    if (!budget.canSend) return ctx.note(budget.standing > 0 ? "sms_already_sent" : "sms_no_more_attempts");
    state.sms.slots = slots as Record<string, string>;
    state.returnStep = state.step;
    const own = ownNumberCandidate(ctx);
    if (own) {
      // Offer the caller's own number as the default: the consent question names it.
      state.sms.number = own;
      state.sms.consent = undefined;
      return { result: ctx.note("sms_flow_started_own_number", { number: speakable(own, config.homeCountry) }), next: STEP.confirmConsent };
    }
    return { result: ctx.note("sms_flow_started"), next: STEP.collectNumber };
  },
});
