import { smsConfig, type SmsConfig, type SmsTaskConfig } from "../../src/tasks/sms/config.js";
import type { AgentHost } from "../common/agentDef.js";
import { defineStep, type EventHook, type TaskDef } from "../../src/engine/define.js";
import { spokenOver } from "../../src/engine/heard.js";
import { askForOtherNumber } from "./ask_for_other_number.js";
import { cancelSms } from "./cancel_sms.js";
import { collectPhoneNumber } from "./collect_phone_number.js";
import { optOutSms } from "./opt_out_sms.js";
import { recordConsent } from "./record_consent.js";
import { sendConfirmationSms } from "./send_confirmation_sms.js";
import { checkModelUtterance } from "../../src/tasks/sms/claims.js";
import { askConsentQuestion } from "../../src/tasks/sms/consentQuestion.js";
import { compileConsentAnswers, consentRule, CONSENT_ANSWERS_FILE } from "../../src/tasks/sms/consentAnswers.js";
import { reactToSmsFailure, recordSmsFailure, RETRY_STEP } from "../../src/tasks/sms/failures.js";
import { speakable } from "../../src/tasks/sms/numbers.js";
import { SMS_TASK, type SmsTaskParams, type SmsTaskResult } from "../../src/tasks/sms/result.js";
import { SmsActionGate } from "../../src/tasks/sms/smsGate.js";
import type { SmsCallState } from "../../src/tasks/sms/state.js";
import { NUMBER_STEPS, STEP } from "../../src/tasks/sms/stepNames.js";
import { SMS_LINES, SMS_NOTES, type SmsFlowTypes, type SmsServices } from "../../src/tasks/sms/types.js";
import { SMS_TASK_ENTRY, startSms } from "../../src/tasks/sms/start.js";
import { recallFromLedger, settleOrphanSends } from "../../src/tasks/sms/withdrawnSends.js";
import { recordSendOutcome } from "../../src/tasks/sms/sendOutcomes.js";
import { overtakenSend, recheckDone, treatAsNo } from "../../src/tasks/sms/overtaken.js";

/**
 * The SMS consent-and-send flow as a task any flow can include (the PolyAI recipe mapped onto
 * AI Flow):
 *   startTask(SMS_TASK, { slots }) (start_sms_flow) ──▶ confirm_consent (offered number) or collect_number
 *   collect_number ──collect_phone_number──▶ confirm_consent ──record_consent(true)──▶ send_sms (code) ──▶ finish
 *   record_consent(false) / cancel_sms ──▶ finish (final for the call)
 *   sms_failed (transient, once) ──▶ confirm_consent again: a retry needs a new yes
 *   opt_out_sms, offered in every LLM step of the host too ──▶ the number on the do-not-text list,
 *     no SMS in this call (finish, when called inside the task)
 * Its result (`SmsTaskResult`) goes to the `onResult` of the step that started it; a later
 * sms_failed reaches that step's `onNotice` (`SmsFailureNotice`). Its gate holds at the action
 * boundary whatever the host flow does: no send_sms leaves without recorded consent for exactly
 * that number, from any step.
 */

const step = defineStep<SmsFlowTypes>();

const collectNumber = step({
  name: STEP.collectNumber,
  kind: "llm",
  prompt: "sms/collect_number",
  tools: [collectPhoneNumber, cancelSms],
  context: "step",
  onEnter: (ctx) => void ctx.say("ask_number"),
});

const confirmConsent = step({
  name: STEP.confirmConsent,
  kind: "llm",
  prompt: "sms/confirm_consent",
  tools: [recordConsent, collectPhoneNumber, askForOtherNumber],
  // The question and the answer are all the model needs; the call facts are in the prompt.
  context: "step",
  onEnter: (ctx) => askConsentQuestion(ctx),
  // A clear "Ja, gerne." / "Nein danke." right after the question: decided by the listed answers, no model request.
  rules: { file: CONSENT_ANSWERS_FILE, check: (lists) => void compileConsentAnswers(lists), decide: consentRule(recordConsent) },
  // Silence after the question: ask the exact question again, so the answer is to that wording.
  onTimeout: async (ctx) => {
    ctx.say("timeout_prefix", {}, { expectAnswer: false });
    await askConsentQuestion(ctx);
  },
  // After the model explains (an unclear answer), the exact question is asked again: only an
  // answer to the configured wording counts as consent.
  afterModelText: async (ctx) => {
    // A recheck of a yes whose send has not left asks nothing: the question was answered.
    if (!ctx.state.sms.recheck) await askConsentQuestion(ctx);
  },
});

/** The send needs no LLM request of its own: consent was just recorded, so code sends. */
const sendSms = step({
  name: STEP.sendSms,
  kind: "code",
  tools: [sendConfirmationSms],
  run: async (ctx) => {
    await ctx.invokeTool(sendConfirmationSms);
  },
});

/**
 * Words that overtook a yes's send (it has not left yet) are that yes's verdict: see overtaken.ts.
 * (A barge-in into the consent question is the engine's to note: see src/engine/heard.ts.)
 */
const onUserSpeak: EventHook<SmsFlowTypes> = (ctx) => {
  overtakenSend(ctx);
  return false; // the engine (or the host's hook) still runs the caller turn
};

const MAX_DTMF_DIGITS = 20;

/**
 * Keypad entry of a number: digits collect, `*` clears, `#` ends the entry. The A-D keys of
 * DTMF's fourth column are no part of any phone number: they are skipped, not typed. Outside
 * the task's number steps the keys are the host flow's business.
 */
const onDtmf: EventHook<SmsFlowTypes> = async (ctx, event) => {
  if (event.type !== "dtmf_received" || !NUMBER_STEPS.includes(ctx.state.step)) return false;
  const { state } = ctx;
  // A key after the consent question is a caller event too: the words that follow are no first answer (consentRule).
  const c = state.sms.consent;
  if (state.step === STEP.confirmConsent && c && !c.answer) c.keyed = true;
  for (const key of event.digit) {
    if (key >= "A" && key <= "D") continue;
    if (key === "*") state.dtmf = "";
    else if (key === "#") {
      const keyed = state.dtmf;
      state.dtmf = "";
      ctx.beginCallerTurn(ctx.prompts.note("dtmf_entry", { digits: keyed || "(none)" }));
      if (keyed.length === 0) ctx.say("number_invalid");
      else await ctx.invokeTool(collectPhoneNumber, { phone_number: keyed });
      return true;
    } else if (state.dtmf.length < MAX_DTMF_DIGITS) state.dtmf += key;
  }
  return true;
};

function smsStatus(state: SmsCallState, config: SmsConfig): string {
  const last = state.sms.sent[state.sms.sent.length - 1];
  if (!last) return "none sent in this call";
  const to = speakable(last.number, config.homeCountry);
  return last.failed ? `sending to ${to} FAILED (${last.failed})` : `sent to ${to}; delivery is not confirmed`;
}

function consentStatus(state: SmsCallState): string {
  const c = state.sms.consent;
  if (state.sms.declined) return "the caller declined or cancelled the SMS; final for this call";
  if (!c) return "not asked";
  if (!c.answer) return c.interrupted || spokenOver(state, c.spokenIndex) ? "question interrupted, asked again" : "asked, waiting for the caller's answer";
  return c.answer.consented ? "given" : "declined";
}

/** The `{placeholders}` the task's prompts (and any host prompt) may use. */
function smsPromptValues(state: SmsCallState, { config }: SmsServices): Record<string, string> {
  const options = Object.entries(config.slots)
    .map(([slot, s]) => `- ${slot} (${s.description}): ${Object.keys(s.options).join(", ")}`)
    .join("\n");
  const result = state.sms.result?.value;
  return {
    caller_number: state.callerNumber ? speakable(state.callerNumber, config.homeCountry) : "unknown",
    sms_number: state.sms.number ? speakable(state.sms.number, config.homeCountry) : "none yet",
    sms_status: smsStatus(state, config),
    consent_status: consentStatus(state),
    sms_options: options || "- (no options: the SMS text is fixed)",
    sms_result: result ? (result.status === "refused" ? `refused (${result.reason})` : result.status) : "not started",
  };
}

/** A later sms_failed: the caller hears it (and is asked again for one retry); the step that started the task gets the notice. */
const onSmsFailed: EventHook<SmsFlowTypes> = async (ctx, event) => {
  if (event.type !== "sms_failed") return false;
  const notice = reactToSmsFailure(ctx);
  if (notice) await ctx.tasks.notify(SMS_TASK.name, notice);
  return notice?.retrying ? { handled: true, next: RETRY_STEP } : true;
};

/**
 * The SMS task. Include it in a flow's `tasks` (`hostTask(smsTask)`); a step starts it with
 * `next: startTask(SMS_TASK, { slots, offerNumber })` (the `start_sms_flow` tool does).
 */
export const smsTask: TaskDef<SmsFlowTypes, SmsTaskParams, SmsTaskResult> = {
  name: SMS_TASK.name,
  start: startSms,
  steps: [collectNumber, confirmConsent, sendSms],
  entrySteps: SMS_TASK_ENTRY,
  lines: SMS_LINES,
  notes: SMS_NOTES,
  // "Never text me again" may come in any step of any flow with the task.
  tools: [optOutSms],
  hooks: {
    promptValues: smsPromptValues,
    on: { user_speak: onUserSpeak, dtmf_received: onDtmf, sms_failed: { handle: onSmsFailed, transitions: [RETRY_STEP] } },
    observe: { sms_failed: recordSmsFailure },
    gate: new SmsActionGate(),
    // No claim that an SMS was sent unless one stands, never that one arrived.
    checkModelText: (text, ctx) => {
      const d = checkModelUtterance(text, ctx.state, ctx.state.language);
      return d.allowed || d.reason === "ok" ? { allowed: true } : { allowed: false, decision: { ...d, reason: d.reason }, correction: d.reason };
    },
    // Words that overtook a yes's send are judged once the turn is done (overtaken.ts).
    afterTurn: recheckDone,
    // The consent ledger is evidence outside the call store: kept true when a call goes wrong.
    recovery: {
      // A redelivered event whose answer sent an SMS is not answered again.
      neverReplay: ["send_sms"],
      onOutcome: recordSendOutcome,
      onUnevaluated: treatAsNo,
      onRetry: settleOrphanSends,
      onStateLost: recallFromLedger,
    },
  },
};

/** The SMS task's services, from what the service hands an agent (every agent with the task builds them so). */
export function smsServices(host: AgentHost<{ sms: SmsTaskConfig }>): SmsServices {
  return { config: smsConfig(host.tasks.sms, host.app), ledger: host.ledger, limiter: host.limiter, hasher: host.hasher };
}
