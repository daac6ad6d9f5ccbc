import { z } from "zod";
import { defineTool, startTask } from "../../src/engine/define.js";
import { SMS_TASK, SMS_TASK_ENTRY } from "../../src/tasks/sms/start.js";
import type { SmsFlowTypes, SmsServices } from "../../src/tasks/sms/types.js";

/** One enum parameter per configured SMS slot: the model chooses what to send, never writes it. */
function slotParameters({ config }: SmsServices) {
  const shape: Record<string, z.ZodTypeAny> = {};
  for (const [name, slot] of Object.entries(config.slots)) {
    const keys = Object.keys(slot.options) as [string, ...string[]];
    shape[name] = z.enum(keys).describe(slot.description);
  }
  return z.object(shape);
}

/** The ready-made way for a model to start the SMS task: it picks the slots; the caller's own number is offered first. */
export const startSmsFlow = defineTool<SmsFlowTypes>()({
  name: "start_sms_flow",
  transitions: [...SMS_TASK_ENTRY],
  parameters: slotParameters,
  execute: (_ctx, slots) => ({ next: startTask(SMS_TASK, { slots: slots as Record<string, string> }) }),
});
