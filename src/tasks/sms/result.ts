import type { SmsFailureReason } from "../../aiflow/events.js";
import { finish, taskRef, type TaskFinish } from "../../engine/define.js";
import type { SendRefusal, SmsContext } from "./types.js";

/** What a flow starts the SMS task with (`startTask(SMS_TASK, params)`). */
export interface SmsTaskParams {
  /** What the SMS says: for each configured slot (`tasks.sms.slots`), the option key to send. */
  slots: Record<string, string>;
  /**
   * The number the consent question offers first, as the caller said it or in AI Flow format.
   * Default: the caller's own number when it may receive an SMS. `null`: ask for a number.
   * A number the recipient policy refuses is not offered; the caller is asked instead.
   */
  offerNumber?: string | null;
}

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

/** What the step that started the task hears of a later sms_failed for an SMS the task handed over (its `onNotice`). */
export interface SmsFailureNotice {
  reason: SmsFailureReason;
  /** The recipient (AI Flow format). */
  number: string;
  /** The caller is being asked again for one retry (transient failure, retry allowed). */
  retrying: boolean;
}

/** The SMS task as steps start and finish it: `startTask(SMS_TASK, { slots })`. */
export const SMS_TASK = taskRef<SmsTaskParams, SmsTaskResult>("sms");

/** What the SMS task brings to a flow's types (`FlowTypes.tasks`). */
export interface SmsTaskIO {
  sms: { result: SmsTaskResult; notice: SmsFailureNotice };
}

/** Keep the task's latest result in its slice (reports, prompts, a withdrawn send's correction read it). */
export function recordSmsResult(ctx: SmsContext, value: SmsTaskResult): void {
  ctx.state.sms.result = { value };
}

/** End the task with a result: kept in its slice, and handed by the engine to the step that started it. */
export function finishSms(ctx: SmsContext, value: SmsTaskResult): TaskFinish {
  recordSmsResult(ctx, value);
  return finish(SMS_TASK, value);
}

/** Whether the SMS task is the innermost one running (its steps are where the call is). */
export function inSmsTask(ctx: SmsContext): boolean {
  return ctx.tasks.current() === SMS_TASK.name;
}
