import type { AppConfig } from "../../config/schema.js";
import { defineFlow, defineStep, type EventHook, type Observer } from "../../engine/define.js";
import { initialSmsSlice, type SmsCallState as CallState, type SmsSlice } from "../../tasks/sms/state.js";
import { normalizeAiFlowNumber, maskNumber } from "../../phone/number.js";
import { askForOtherNumber } from "../../../tools/sms/ask_for_other_number.js";
import { cancelSms } from "../../../tools/sms/cancel_sms.js";
import { collectPhoneNumber } from "../../../tools/sms/collect_phone_number.js";
import { recordConsent } from "../../../tools/sms/record_consent.js";
import { sendConfirmationSms } from "../../../tools/sms/send_confirmation_sms.js";
import { startSmsFlow } from "../../../tools/sms/start_sms_flow.js";
import { endCall } from "../../../tools/common/end_call.js";
import { transferCall, type TransferLineKey, type TransferNoteKey, type TransferSlice } from "../../../tools/common/transfer_call.js";
import { askConsentQuestion } from "../../tasks/sms/consentQuestion.js";
import { checkModelUtterance } from "../../tasks/sms/claims.js";
import { speakable } from "../../tasks/sms/numbers.js";
import { SmsActionGate } from "../../tasks/sms/smsGate.js";
import { NUMBER_STEPS, STEP } from "../../tasks/sms/stepNames.js";
import { recordEvidence, SMS_LINES, SMS_NOTES, type SmsContext, type SmsFlowTypes, type SmsServices } from "../../tasks/sms/types.js";
import type { TurnContext } from "../../engine/turnContext.js";
import type { TurnRecord } from "../../core/turnRecord.js";

/**
 * The shipped flow: the PolyAI SMS consent-and-send recipe mapped onto AI Flow.
 *   main ──start_sms_flow──▶ confirm_consent (caller's own number) or collect_number
 *   collect_number ──collect_phone_number──▶ confirm_consent ──record_consent(true)──▶ send_sms (code) ──▶ back
 *   record_consent(false) / cancel_sms ──▶ back (final for the call)
 *   sms_failed (transient, once) ──▶ confirm_consent again: a retry needs a new yes
 *   main ──transfer_call──▶ a person (announcement + AI Flow transfer); back with a new session_start when nobody answers
 */

/**
 * The reception agent's types: the SMS task's, plus what the transfer to a person adds (a
 * pending transfer in state, its lines and notes).
 */
export type ReceptionSlice = SmsSlice & TransferSlice;

/** The keys transfer_call and the agent's session_start hook use. */
const TRANSFER_LINES = ["transfer_announce", "transfer_announce_unnamed", "transfer_failed"] as const satisfies readonly TransferLineKey[];
const TRANSFER_NOTES = ["transfer_started", "transfer_unavailable"] as const satisfies readonly TransferNoteKey[];

const RECEPTION_LINES = [...SMS_LINES, ...TRANSFER_LINES] as const;
const RECEPTION_NOTES = [...SMS_NOTES, ...TRANSFER_NOTES] as const;

export interface ReceptionFlowTypes extends Omit<SmsFlowTypes, "state" | "lines" | "notes"> {
  state: ReceptionSlice;
  lines: (typeof RECEPTION_LINES)[number];
  notes: (typeof RECEPTION_NOTES)[number];
}

/**
 * The agent's turn as the SMS task's code sees it. Sound, though the compiler cannot tell: the
 * agent's context accepts every SMS line and note key (and more), and its state holds the SMS
 * slice; TypeScript compares TurnContext by its type argument as a whole, so a context with more
 * keys does not pass for one with fewer.
 */
function asSmsContext(ctx: TurnContext<ReceptionFlowTypes>): SmsContext {
  return ctx as unknown as SmsContext;
}

const TRANSIENT_FAILURES = new Set(["smsc_unavailable", "unknown"]);
const MAX_DTMF_DIGITS = 20;

const step = defineStep<ReceptionFlowTypes>();

const main = step({ name: STEP.main, kind: "llm", prompt: "main", tools: [startSmsFlow, transferCall, endCall] });

const collectNumber = step({
  name: STEP.collectNumber,
  kind: "llm",
  prompt: "collect_number",
  tools: [collectPhoneNumber, cancelSms],
  context: "step",
  onEnter: (ctx) => void ctx.say("ask_number"),
});

const confirmConsent = step({
  name: STEP.confirmConsent,
  kind: "llm",
  prompt: "confirm_consent",
  tools: [recordConsent, collectPhoneNumber, askForOtherNumber],
  // The question and the answer are all the model needs; the call facts are in the prompt.
  context: "step",
  onEnter: (ctx) => askConsentQuestion(asSmsContext(ctx)),
  // Silence after the question: ask the exact question again, so the answer is to that wording.
  onTimeout: async (ctx) => {
    ctx.say("timeout_prefix", {}, { expectAnswer: false });
    await askConsentQuestion(asSmsContext(ctx));
  },
  // After the model explains (an unclear answer), the exact question is asked again: only an
  // answer to the configured wording counts as consent.
  afterModelText: (ctx) => askConsentQuestion(asSmsContext(ctx)),
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
 * A session_start for a call that was handed to a person: nobody answered (sipgate gives the
 * call back with a new session_start). The caller hears that, not "welcome back"; the mark goes.
 */
const onSessionStart: EventHook<ReceptionFlowTypes> = (ctx, event) => {
  if (event.type !== "session_start" || !ctx.state.transfer) return false;
  ctx.log.info({ sessionId: ctx.sessionId, target: ctx.state.transfer.target }, "transfer not answered: the call is back");
  ctx.state.transfer = undefined;
  ctx.say("transfer_failed");
  return true;
};

/** A barge-in into the consent question means it may not have been heard: it does not count. */
const onUserSpeak: EventHook<ReceptionFlowTypes> = (ctx, event) => {
  const consent = ctx.state.sms.consent;
  if (event.type === "user_speak" && event.barged_in && consent && !consent.answer && consent.askedTurn === ctx.state.turn) {
    consent.interrupted = true;
  }
  return false; // the engine still runs the caller turn
};

/**
 * Keypad entry of a number: digits collect, `*` clears, `#` ends the entry. The A-D keys of
 * DTMF's fourth column are no part of any phone number: they are skipped, not typed.
 */
const onDtmf: EventHook<ReceptionFlowTypes> = async (ctx, event) => {
  if (event.type !== "dtmf_received") return false;
  const { state } = ctx;
  if (!NUMBER_STEPS.includes(state.step)) {
    ctx.log.debug({ sessionId: ctx.sessionId, step: state.step }, "dtmf outside number entry ignored");
    return true;
  }
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

/**
 * Bookkeeping for sms_failed, run for every such event, even while the call is hanging up:
 * mark the SMS failed, write the ledger, alert on account problems.
 */
const recordSmsFailure: Observer<ReceptionFlowTypes> = async (ctx, event) => {
  if (event.type !== "sms_failed") return;
  const { state } = ctx;
  const { config } = ctx.services;
  const recipient = normalizeAiFlowNumber(event.recipient);
  // rawReason: what sipgate sent when it is none of the documented reasons (handled as "unknown").
  const logFields = { sessionId: ctx.sessionId, recipient: maskNumber(event.recipient), reason: event.reason, rawReason: event.rawReason, detail: event.message };
  const sent = [...state.sms.sent].reverse().find((s) => !s.failed && (!recipient || s.number === recipient));
  const transient = TRANSIENT_FAILURES.has(event.reason);
  if (!sent) {
    const already = state.sms.sent.some((s) => s.number === recipient && s.failed === event.reason);
    state.sms.lastFailure = { reason: event.reason, matched: false, wasRetry: false, canRetry: false };
    if (already) {
      ctx.log.info(logFields, "sms_failed repeated for an SMS already marked failed");
      return;
    }
    ctx.log.warn(logFields, "sms_failed for an SMS this call did not send");
    await recordEvidence(asSmsContext(ctx), { kind: "sms_failed", number: recipient ?? event.recipient, outcome: event.reason, detail: `unmatched: ${event.message}` });
    return;
  }
  sent.failed = event.reason;
  const wasRetry = state.sms.sent.indexOf(sent) >= config.sms.maxPerCall;
  const canRetry = transient && config.sms.retryTransientFailures && state.sms.retryAllowance === 0 && !state.sms.declined;
  state.sms.lastFailure = { reason: event.reason, matched: true, wasRetry, canRetry };
  if (!transient) ctx.log.error(logFields, "SMS failed: account problem, needs an operator");
  else ctx.log.warn(logFields, "SMS failed: transient");
  await recordEvidence(asSmsContext(ctx), { kind: "sms_failed", number: sent.number, outcome: event.reason, detail: event.message });
};

/** What the caller hears about a failed SMS: one retry (with a new yes) for transient reasons, else the spoken alternative. */
const onSmsFailed: EventHook<ReceptionFlowTypes> = async (ctx, event) => {
  if (event.type !== "sms_failed") return false;
  const { state } = ctx;
  const failure = state.sms.lastFailure;
  state.sms.lastFailure = undefined;
  // Nothing of ours failed (another recipient, a repeat): the caller hears nothing.
  if (!failure?.matched) return true;
  if (failure.canRetry) {
    // The retry is a new send: the caller is asked the consent question again.
    state.sms.retryAllowance = 1;
    state.sms.consent = undefined;
    if (!state.returnStep) state.returnStep = state.step === STEP.confirmConsent ? STEP.main : state.step;
    ctx.say("sms_failed_notice", {}, { expectAnswer: false });
    return { handled: true, next: STEP.confirmConsent };
  }
  if (!TRANSIENT_FAILURES.has(failure.reason)) ctx.say("sms_failed_account");
  else ctx.say(failure.wasRetry ? "sms_failed_final" : "sms_failed_no_retry");
  return true;
};

function smsStatus(state: CallState, config: AppConfig): string {
  const last = state.sms.sent[state.sms.sent.length - 1];
  if (!last) return "none sent in this call";
  const to = speakable(last.number, config.homeCountry);
  return last.failed ? `sending to ${to} FAILED (${last.failed})` : `sent to ${to}; delivery is not confirmed`;
}

function consentStatus(state: CallState): string {
  const c = state.sms.consent;
  if (state.sms.declined) return "the caller declined or cancelled the SMS; final for this call";
  if (!c) return "not asked";
  if (!c.answer) return c.interrupted ? "question interrupted, asked again" : "asked, waiting for the caller's answer";
  return c.answer.consented ? "given" : "declined";
}

function promptValues(state: CallState, { config }: SmsServices): Record<string, string> {
  const options = Object.entries(config.sms.slots)
    .map(([slot, s]) => `- ${slot} (${s.description}): ${Object.keys(s.options).join(", ")}`)
    .join("\n");
  return {
    business_name: config.business.name,
    business_purpose: config.business.purpose,
    business_facts: config.business.facts,
    caller_number: state.callerNumber ? speakable(state.callerNumber, config.homeCountry) : "unknown",
    sms_number: state.sms.number ? speakable(state.sms.number, config.homeCountry) : "none yet",
    sms_status: smsStatus(state, config),
    consent_status: consentStatus(state),
    sms_options: options || "- (no options: the SMS text is fixed)",
  };
}

/** A committed turn's send_sms that never left (its answer was dropped): the ledger says it was not sent. */
async function recordWithdrawnSends(record: TurnRecord, { ledger }: SmsServices, why: "dropped" | "lease_lost"): Promise<void> {
  const detail = why === "dropped" ? "the caller was told it took too long; the late answer was dropped" : "this instance lost the call's lease; the turn wrote nothing";
  for (const a of record.actions) {
    if (a.type !== "send_sms") continue;
    await ledger.append({ kind: "sms_withdrawn", callId: record.sessionId, at: new Date().toISOString(), number: a.phone_number, outcome: "not_sent", detail });
  }
}

export const smsConsentFlow = defineFlow<ReceptionFlowTypes>({
  name: "sms_consent",
  initialStep: STEP.main,
  steps: [main, collectNumber, confirmConsent, sendSms],
  initialState: initialSmsSlice,
  lines: RECEPTION_LINES,
  notes: RECEPTION_NOTES,
  promptValues,
  observers: { sms_failed: recordSmsFailure },
  hookTransitions: { sms_failed: [STEP.confirmConsent] },
  hooks: { session_start: onSessionStart, user_speak: onUserSpeak, dtmf_received: onDtmf, sms_failed: onSmsFailed },
  gate: new SmsActionGate(),
  // No claim that an SMS was sent unless one stands, never that one arrived.
  checkModelText: (text, ctx) => {
    const d = checkModelUtterance(text, ctx.state, ctx.state.language);
    return d.allowed || d.reason === "ok" ? { allowed: true } : { allowed: false, decision: { ...d, reason: d.reason }, correction: d.reason };
  },
  // A redelivered event whose answer sent an SMS is not answered again.
  neverReplay: ["send_sms"],
  onUndelivered: recordWithdrawnSends,
});
