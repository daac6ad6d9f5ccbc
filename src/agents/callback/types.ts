import type { Keys } from "../../engine/define.js";
import type { TurnContext } from "../../engine/turnContext.js";
import type { SmsFlowTypes, SmsLineKey, SmsNoteKey, SmsReason, SmsServices } from "../../tasks/sms/types.js";
import type { CallbackConfig } from "./config.js";
import type { CallReports } from "./report.js";
import type { CallbackSlice } from "./state.js";
import type { SmsSlice } from "../../tasks/sms/state.js";

/** Every fixed line of the callback request (prompts/<lang>/callback/lines.md). */
export const CALLBACK_LINES = ["callback_read_back_name", "callback_read_back_reason", "callback_read_back_time_window", "callback_done"] as const;
export type CallbackLineKey = (typeof CALLBACK_LINES)[number];

/** Every note its tools answer the model with (prompts/model-notes.md). */
export const CALLBACK_NOTES = [
  "callback_detail_read_back",
  "callback_detail_confirmed",
  "callback_detail_rejected",
  "callback_detail_not_noted",
  "callback_read_back_repeated",
  "callback_complete",
  "callback_already_complete",
] as const;
export type CallbackNoteKey = (typeof CALLBACK_NOTES)[number];

/** What the callback request needs beyond the SMS task's services: its settings, somewhere to report the call to, how long a call's state lives. */
export interface CallbackServices extends SmsServices {
  callback: CallbackConfig;
  reports: CallReports;
  sessionTtlSeconds: number;
}

/** The callback request's types: it offers its confirmation through the SMS task, so it includes the task's. */
export interface CallbackFlowTypes extends SmsFlowTypes {
  state: SmsSlice & CallbackSlice;
  services: CallbackServices;
  lines: Keys<SmsLineKey | CallbackLineKey>;
  notes: Keys<SmsNoteKey | CallbackNoteKey>;
  reasons: Keys<SmsReason | CallbackReason>;
}

/** Why a confirmation did not count: the caller's words did not answer the read-back. */
export type CallbackReason = "read_back_not_answered";

export type CallbackContext = TurnContext<CallbackFlowTypes>;
