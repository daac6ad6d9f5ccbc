import { z } from "zod";
import { defineTool } from "../src/engine/define.js";
import { STEP } from "../src/flow/stepNames.js";

export const askForOtherNumber = defineTool({
  name: "ask_for_other_number",
  transitions: ["collect_number"],
  parameters: () => z.object({}),
  execute(ctx) {
    const { sms } = ctx.state;
    if (sms.declined) return ctx.note("sms_declined_earlier");
    // A different recipient: the current number and any consent for it are off the table.
    sms.number = undefined;
    sms.consent = undefined;
    ctx.gotoStep(STEP.collectNumber);
    return ctx.note("other_number_requested");
  },
});
