import type { SmsConfig } from "./config.js";
import type { FlowTypes, Keys } from "../../engine/define.js";
import type { TurnContext } from "../../engine/turnContext.js";
import type { ConsentLedger, LedgerRecordInput } from "../../ledger/ledger.js";
import type { NumberHasher } from "../../ledger/numberHash.js";
import type { RecipientRefusal } from "../../phone/policy.js";
import type { RateLimiter } from "../../store/rateLimiter.js";
import type { LimitKind } from "./abuseLimits.js";
import type { ConsentProblem } from "./consentRules.js";
import { evidenceId } from "./evidenceIds.js";
import type { SmsSlice } from "./state.js";
import type { SmsTaskIO } from "./result.js";

/** What the SMS task needs from the app: its settings, the consent ledger and the shared SMS limits. */
export interface SmsServices {
  config: SmsConfig;
  ledger: ConsentLedger;
  limiter: RateLimiter;
  /**
   * How numbers appear in the shared store's keys (the limits): as they are with `ledger.numbers:
   * full`, keyed-hashed with `hashed` (`NumberHasher.fromConfig`, keys from the environment).
   */
  hasher: NumberHasher;
}

/** Every fixed line the SMS task speaks (prompts/<lang>/sms/lines.md). */
export const SMS_LINES = [
  "ask_number",
  "number_invalid",
  "number_country_not_allowed",
  "number_type_not_allowed",
  "number_blocked",
  "sms_sent",
  "sms_not_sent",
  "sms_refused_limit",
  "sms_refused_rate_limited",
  "sms_refused_busy",
  "sms_declined",
  "sms_cancelled",
  "sms_failed_final",
  "sms_failed_account",
  "sms_failed_notice",
  "sms_failed_no_retry",
  "sms_no_more_attempts",
  "timeout_prefix",
  "sms_refused_opted_out",
  "sms_opted_out",
  "sms_opt_out_not_saved",
] as const;
export type SmsLineKey = (typeof SMS_LINES)[number];

/** Every note the SMS task's tools answer the model with (prompts/model-notes.md). */
export const SMS_NOTES = [
  "dtmf_entry",
  "false_claim_delivered",
  "false_claim_sent",
  "sms_declined_earlier",
  "sms_already_sent",
  "sms_no_more_attempts",
  "sms_flow_started_own_number",
  "sms_flow_started_offered_number",
  "sms_flow_started",
  "number_refused",
  "number_noted",
  "consent_not_asked_yet",
  "consent_already_recorded",
  "consent_same_turn",
  "consent_question_not_heard",
  "consent_still_stands",
  "consent_question_repeated",
  "other_number_requested",
  "consent_question_interrupted",
  "consent_given",
  "consent_declined",
  "sms_sent",
  "sms_not_sent_no_consent",
  "sms_refused",
  "sms_cancelled",
  "opt_out_recorded",
  "opt_out_needs_number",
  "opt_out_number_unclear",
  "opt_out_not_saved",
] as const;
export type SmsNoteKey = (typeof SMS_NOTES)[number];

/** Why the gate refuses a send_sms. Typed: the spoken explanation is looked up, never parsed out of a string. */
export type SendRefusal =
  | `consent_${ConsentProblem}`
  | "sms_limit_per_call"
  | "template_slots_invalid"
  | "message_not_from_template"
  | `recipient_${RecipientRefusal}`
  /** On the do-not-text list (a caller's own wish), or the list could not be read (fail closed). */
  | "recipient_opted_out"
  | "opt_out_list_unavailable"
  | "turn_superseded"
  | `${LimitKind}_rate_limited`
  | "rate_limiter_unavailable"
  | "ledger_unavailable";

/** Every reason code of the SMS task's guard decisions. */
export type SmsReason =
  | SendRefusal
  | "consent_recorded"
  | "consent_not_asked"
  | "consent_same_turn"
  | "consent_question_not_last"
  | "consent_question_not_heard"
  | "consent_question_interrupted"
  | "consent_empty_reply"
  | "declined"
  | "false_claim_delivered"
  | "false_claim_sent";

export interface SmsFlowTypes extends FlowTypes {
  state: SmsSlice;
  services: SmsServices;
  lines: Keys<SmsLineKey>;
  notes: Keys<SmsNoteKey>;
  reasons: Keys<SmsReason>;
  tasks: SmsTaskIO;
}

/**
 * What the SMS task's tools, hooks and gate see in a turn. A host flow's context passes for it
 * as is: its state holds the SMS slice, its services the SMS services, and its keys include the
 * task's (keys are contravariant, see `Keys`).
 */
export type SmsContext = TurnContext<SmsFlowTypes>;

/**
 * Append consent evidence for this call; resolves once durable. Its id names the event whose turn
 * writes it (see evidenceIds.ts) unless the caller names it; the id is returned (a later record's `ref`).
 */
export async function recordEvidence(ctx: SmsContext, rec: Omit<LedgerRecordInput, "callId" | "at" | "id"> & { id?: string }): Promise<string> {
  const id = rec.id ?? evidenceId(ctx, rec.kind);
  await ctx.services.ledger.append({ ...rec, id, callId: ctx.sessionId, at: ctx.nowIso() });
  return id;
}
