import { z } from "zod";
import { defineTool } from "../src/engine/define.js";

export const cancelSms = defineTool({
  name: "cancel_sms",
  parameters: () => z.object({}),
  async execute(ctx) {
    const { sms } = ctx.state;
    // Like a declined consent, this is final for the call: no re-asking.
    await ctx.ledger({ kind: "sms_cancelled", number: sms.number, reply: ctx.userText, outcome: "cancelled" });
    sms.declined = true;
    ctx.say("sms_cancelled");
    ctx.exitFlow();
    return ctx.note("sms_cancelled");
  },
});
