import { z } from "zod";
import { defineTool } from "../../src/engine/define.js";
import { STEP } from "../../src/tasks/sms/stepNames.js";
import type { SmsFlowTypes } from "../../src/tasks/sms/types.js";

export const askForOtherNumber = defineTool<SmsFlowTypes>()({
  name: "ask_for_other_number",
  transitions: [STEP.collectNumber],
  parameters: () => z.object({}),
  execute(ctx) {
    const { sms } = ctx.state;
    if (sms.declined) return ctx.note("sms_declined_earlier");
    // A different recipient: the current number and any consent for it are off the table.
    sms.number = undefined;
    sms.consent = undefined;
    return { result: ctx.note("other_number_requested"), next: STEP.collectNumber };
  },
});
