import type { SendRefusal, SmsContext } from "./types.js";

/**
 * What the SMS task returns to the step that started it. `handed_over`, not "sent": AI Flow's
 * send_sms is fire-and-forget, and a later `sms_failed` can still say it did not arrive.
 */
export type SmsTaskResult =
  /** The send_sms action passed the gate and left with the turn's answer. */
  | { status: "handed_over"; number: string }
  /** The caller said no to the consent question (final for the call). */
  | { status: "declined"; number?: string }
  /** The caller called the SMS off (final for the call). */
  | { status: "cancelled"; number?: string }
  /** Policy or limits: nothing was sent, and nothing the caller said was a "no". */
  | { status: "refused"; reason: SmsTaskRefusal; number?: string };

export type SmsTaskStatus = SmsTaskResult["status"];

/** Why the task refused: the gate's reasons, what the start already knows, or an action the protocol schema refused. */
export type SmsTaskRefusal = SendRefusal | "no_sms_left" | "invalid_action";

/** End the task with a result; the task hands it to the starting flow at the end of the turn. */
export function setSmsResult(ctx: SmsContext, value: SmsTaskResult): void {
  ctx.state.sms.result = { value, settled: false };
}
