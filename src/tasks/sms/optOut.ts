import type { ToolOutcome } from "../../engine/define.js";
import { parseCallerNumber } from "../../phone/number.js";
import { redactNumber } from "../../phone/redact.js";
import { speakable } from "./numbers.js";
import { finishSms, inSmsTask, recordSmsResult, SMS_TASK } from "./result.js";
import { evidenceId } from "./evidenceIds.js";
import type { SmsContext } from "./types.js";
import { sayKeptLines, withdrawPending } from "./withdrawnSends.js";

/** What the `opt_out_sms` tool does when a caller says they never want texts again (the gate's check: optOutCheck.ts). */

/**
 * The caller never wants texts (at their own number, or at `named`, a number they say). Like a
 * "no", this ends the SMS offer for the call first, whatever else happens: a send their words
 * overtook is withdrawn, and the SMS task is left. Then the number goes on the list with its
 * chained record. If it cannot (anonymous caller and no number named, a number that is no phone
 * number, the list off or its write failed), the model hears why and the caller is told the truth.
 */
export async function optOutOfSms(ctx: SmsContext, named: string | undefined): Promise<ToolOutcome> {
  const { state } = ctx;
  const { sms } = state;
  const { config } = ctx.services;
  sms.declined = true;
  const withdrawn = await withdrawPending(ctx, "the caller asked for no more SMS before the send left");
  const declined = { status: "declined", number: sms.consent?.number ?? sms.number } as const;
  // Out of the task, back to the step that started it, with the result; anywhere else the call
  // stays where it is (a withdrawn send's starter still hears that it was declined).
  const finished = inSmsTask(ctx) ? finishSms(ctx, declined) : undefined;
  if (!finished && withdrawn.some((a) => a.type === "send_sms")) {
    recordSmsResult(ctx, declined);
    await ctx.tasks.end(SMS_TASK.name, declined);
  }
  const done = (result: string): ToolOutcome => {
    sayKeptLines(ctx, withdrawn);
    return finished ? { result, next: finished } : result;
  };

  let number = state.callerNumber;
  if (named !== undefined) {
    const parsed = parseCallerNumber(named, config.homeCountry);
    if (!parsed?.valid || !callerMeant(ctx, parsed.aiflow)) return done(ctx.note("opt_out_number_unclear", { number: named }));
    number = parsed.aiflow;
  }
  if (!number) return done(ctx.note("opt_out_needs_number"));

  const spoken = speakable(number, config.homeCountry);
  if (!(await saveOptOut(ctx, number, named !== undefined))) {
    ctx.say("sms_opt_out_not_saved");
    return done(ctx.note("opt_out_not_saved"));
  }
  ctx.say("sms_opted_out", { number: spoken });
  return done(ctx.note("opt_out_recorded", { number: spoken }));
}

/**
 * A number the model names is the caller's wish only if the caller said it in this turn, or it is
 * a number of this call (the caller's own, the SMS flow's): a confused or prompt-injected model
 * must not put a stranger's number on the list.
 */
function callerMeant(ctx: SmsContext, number: string): boolean {
  const { state } = ctx;
  if ([state.callerNumber, state.sms.number, state.sms.consent?.number].includes(number)) return true;
  return redactNumber(ctx.userText, number, ctx.services.config.homeCountry) !== ctx.userText;
}

/** Puts the number on the list with its record; false when the list is off or cannot be written (logged). */
async function saveOptOut(ctx: SmsContext, number: string, named: boolean): Promise<boolean> {
  const { config, ledger } = ctx.services;
  if (!config.optOutList || !ledger.setOptOut) {
    ctx.log.warn({ sessionId: ctx.sessionId }, "a caller asked never to be texted again, but the do-not-text list is off (ledger.optOutList: false): only this call sends no SMS");
    return false;
  }
  try {
    await ledger.setOptOut({
      id: evidenceId(ctx, "opt_out_added"),
      add: true,
      number,
      by: "caller",
      callId: ctx.sessionId,
      at: ctx.nowIso(),
      detail: `the caller in call ${ctx.sessionId}, for ${named ? "a number they named" : "their own number"}`,
      reply: ctx.userText,
    });
    return true;
  } catch (e) {
    ctx.log.error({ sessionId: ctx.sessionId, err: (e as Error).message }, "the do-not-text list could not be changed");
    return false;
  }
}
