import { z } from "zod";
import { defineTool } from "../src/engine/define.js";

export const cancelSms = defineTool({
  name: "cancel_sms",
  transitions: ["exit"],
  parameters: () => z.object({}),
  async execute(ctx) {
    const { sms } = ctx.state;
    // Like a declined consent, this is final for the call (no re-asking), and it holds even if the ledger is down.
    sms.declined = true;
    ctx.say("sms_cancelled");
    ctx.exitFlow();
    await ctx
      .ledger({ kind: "sms_cancelled", number: sms.number, reply: ctx.userText, outcome: "cancelled" })
      .catch((e: Error) => ctx.log.error({ sessionId: ctx.sessionId, err: e.message }, "ledger could not record a cancellation"));
    return ctx.note("sms_cancelled");
  },
});
