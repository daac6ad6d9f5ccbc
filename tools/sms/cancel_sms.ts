import { z } from "zod";
import { defineTool } from "../../src/engine/define.js";
import { endSmsFlow } from "../../src/tasks/sms/endSmsFlow.js";
import type { SmsFlowTypes } from "../../src/tasks/sms/types.js";

export const cancelSms = defineTool<SmsFlowTypes>()({
  name: "cancel_sms",
  transitions: ["exit"],
  parameters: () => z.object({}),
  // Like a declined consent: final for the call, and never dropped from a batch.
  withdraws: () => true,
  async execute(ctx) {
    const { sms } = ctx.state;
    if (sms.declined) return ctx.note("sms_declined_earlier");
    const next = await endSmsFlow(ctx, "sms_cancelled", { kind: "sms_cancelled", number: sms.number, reply: ctx.userText, outcome: "cancelled" });
    return { result: ctx.note("sms_cancelled"), next };
  },
});
