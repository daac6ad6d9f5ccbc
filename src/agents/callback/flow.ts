import type { CallState } from "../../core/callState.js";
import { defineStep, type Observer } from "../../engine/define.js";
import { defineFlow } from "../../engine/defineFlow.js";
import type { TurnContext } from "../../engine/turnContext.js";
import { CALLBACK_STEP } from "../../tasks/callback/stepNames.js";
import { callbackReport } from "../../tasks/callback/report.js";
import { initialCallbackSlice, missingFields, type CallbackSlice } from "../../tasks/callback/state.js";
import { CALLBACK_LINES, CALLBACK_NOTES, type CallbackFlowTypes, type CallbackServices } from "../../tasks/callback/types.js";
import { smsTask } from "../../tasks/composed/sms.js";
import { initialSmsSlice, type SmsSlice } from "../../tasks/sms/state.js";
import { confirmCallbackDetail } from "../../../tools/callback/confirm_callback_detail.js";
import { noteCallbackDetail } from "../../../tools/callback/note_callback_detail.js";
import { offerSmsConfirmation } from "../../../tools/callback/offer_sms_confirmation.js";
import { endCall } from "../../../tools/common/end_call.js";

/**
 * The callback agent, built only from the public parts (steps, tools, the SMS task):
 *   collect_details ──note_callback_detail / confirm_callback_detail──▶ (each detail read back and confirmed)
 *   all three confirmed ──▶ offer_sms (code) ──▶ the SMS task (its consent question is the offer) ──▶ wrap_up
 *   after the call: the request and its outcome are posted to the company's endpoint (CallReports)
 */

const step = defineStep<CallbackFlowTypes>();

const collectDetails = step({
  name: CALLBACK_STEP.collectDetails,
  kind: "llm",
  prompt: "callback_collect",
  tools: [noteCallbackDetail, confirmCallbackDetail, endCall],
});

/** No model request: code offers the SMS confirmation through the SMS task. */
const offerSms = step({
  name: CALLBACK_STEP.offerSms,
  kind: "code",
  tools: [offerSmsConfirmation],
  run: async (ctx) => {
    await ctx.invokeTool(offerSmsConfirmation);
  },
});

const wrapUp = step({
  name: CALLBACK_STEP.wrapUp,
  kind: "llm",
  prompt: "callback_wrap_up",
  tools: [endCall],
  // Entered once the SMS offer is over (whatever its result): the caller hears that the request is taken.
  onEnter: (ctx) => {
    const { details } = ctx.state.callback;
    const name = details.name?.value;
    ctx.say("callback_done", { name_suffix: name ? `, ${name}` : "", time_window: details.time_window?.value ?? "" });
  },
});

/** Keep the latest report; posted when the call ends, or when its state expires without a session_end. */
async function saveReport(ctx: TurnContext<CallbackFlowTypes>, final: boolean): Promise<void> {
  const { config, reports } = ctx.services;
  const now = Date.parse(ctx.nowIso());
  const report = callbackReport(ctx.state, config.business.name, final ? "session_end" : "state_expired", now);
  try {
    await reports.save(report, { final, expiresAt: now + config.limits.sessionTtlSeconds * 1000 });
  } catch (e) {
    // Never the caller's problem: the next turn (or the session_end) saves it again.
    ctx.log.error({ sessionId: ctx.sessionId, err: (e as Error).message, final }, "callback report could not be saved");
  }
}

const onSessionEnd: Observer<CallbackFlowTypes> = async (ctx, event) => {
  if (event.type === "session_end") await saveReport(ctx, true);
};

function promptValues(state: CallState<SmsSlice & CallbackSlice>, { config }: CallbackServices): Record<string, string> {
  const { details } = state.callback;
  const shown = (f: "name" | "reason" | "time_window") => {
    const d = details[f];
    return d ? `${d.value} (${d.confirmed ? "confirmed" : "read back, not yet confirmed"})` : "not given yet";
  };
  return {
    business_name: config.business.name,
    business_purpose: config.business.purpose,
    business_facts: config.business.facts,
    callback_name: shown("name"),
    callback_reason: shown("reason"),
    callback_time_window: shown("time_window"),
    callback_missing: missingFields(state.callback).join(", ") || "nothing: all confirmed",
  };
}

export const callbackFlow = defineFlow<CallbackFlowTypes>({
  name: "callback",
  initialStep: collectDetails.name,
  steps: [collectDetails, offerSms, wrapUp],
  tasks: [
    smsTask<CallbackFlowTypes>({
      // The typed result: what the report says about the SMS.
      onResult: (ctx, result) => {
        ctx.state.callback.sms = result;
      },
      onFailed: (ctx, failure) => {
        ctx.state.callback.smsFailed = failure.reason;
      },
    }),
  ],
  initialState: () => ({ ...initialSmsSlice(), ...initialCallbackSlice() }),
  lines: CALLBACK_LINES,
  notes: CALLBACK_NOTES,
  promptValues,
  hooks: {},
  hookTransitions: {},
  observers: { session_end: onSessionEnd },
  neverReplay: [],
  // Every turn keeps the latest snapshot, so a call whose session_end never comes is still reported.
  afterTurn: (ctx) => saveReport(ctx, false),
});
