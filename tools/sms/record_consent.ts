import { z } from "zod";
import { defineTool } from "../../src/engine/define.js";
import { answerTo } from "../../src/engine/heard.js";
import { askConsentQuestion } from "../../src/tasks/sms/consentQuestion.js";
import { endSmsFlow } from "../../src/tasks/sms/endSmsFlow.js";
import { STEP } from "../../src/tasks/sms/stepNames.js";
import { recordEvidence, type SmsContext, type SmsFlowTypes } from "../../src/tasks/sms/types.js";
import type { LedgerRecordInput } from "../../src/ledger/ledger.js";

/** Who decided the answer, for the ledger: a listed rule (no model was asked), or the model. */
function decidedBy(ctx: SmsContext): Pick<LedgerRecordInput, "decidedBy" | "rule" | "model"> {
  if (ctx.decidedBy) return { decidedBy: "rule", rule: ctx.decidedBy };
  return { decidedBy: "model", model: ctx.modelUsed ?? ctx.options.llm.model };
}

export const recordConsent = defineTool<SmsFlowTypes>()({
  name: "record_consent",
  transitions: [STEP.sendSms, "exit"],
  parameters: () =>
    z.object({
      consented: z.boolean().describe("true only if the caller clearly agreed to receive the SMS at the number read back; false if they declined"),
    }),
  // A "no" runs even when an earlier call in the same batch moved the flow: dropping it could let a send through.
  withdraws: ({ consented }) => consented === false,
  async execute(ctx, { consented }) {
    const { state } = ctx;
    const sms = state.sms;
    if (sms.declined) return ctx.note("sms_declined_earlier");
    const c = sms.consent;
    if (!consented) {
      // Asymmetry: a "no" is final whatever the state of the question (see endSmsFlow).
      if (c && !c.answer) c.answer = { consented: false, reply: ctx.userText, turn: state.turn, at: ctx.nowIso(), spokenBeforeAnswer: state.spokenBeforeTurn };
      const next = await endSmsFlow(ctx, "sms_declined", {
        kind: "consent_declined",
        number: c?.number ?? sms.number,
        question: c?.question,
        reply: ctx.userText,
        outcome: "declined",
        ...decidedBy(ctx),
      });
      return { result: ctx.note("consent_declined"), next };
    }
    // Every check below guards a "yes": each one can only turn it into the question asked again.
    if (!c || c.number !== sms.number) {
      ctx.guard({ subject: "record_consent", allowed: false, reason: "consent_not_asked" });
      await askConsentQuestion(ctx);
      return ctx.note("consent_not_asked_yet");
    }
    if (c.answer) {
      // Words that overtook the send of this yes, and were no "no": the send leaves with this answer.
      if (sms.recheck) {
        sms.recheck.confirmed = true;
        ctx.nothingToSay();
        return ctx.note("consent_still_stands");
      }
      return ctx.note("consent_already_recorded");
    }
    const verdict = answerTo(ctx, { turn: c.askedTurn, spokenIndex: c.spokenIndex, interrupted: c.interrupted });
    if (verdict === "same_turn") {
      ctx.guard({ subject: "record_consent", allowed: false, reason: "consent_same_turn" });
      return ctx.note("consent_same_turn");
    }
    if (verdict === "not_heard_yet") {
      // The reply arrived before the question reached the caller (a slow turn's lines leave with
      // this answer): it answers something earlier. The caller hears the question now, once;
      // their next reply decides. Nothing more is said, so the question stays the last line.
      ctx.guard({ subject: "record_consent", allowed: false, reason: "consent_question_not_heard" });
      ctx.nothingToSay();
      return ctx.note("consent_question_not_heard");
    }
    if (verdict === "not_last") {
      // Something else was said after the question (a refusal line, a welcome back, …):
      // the caller's words answer that, not the question. Ask the exact question again.
      ctx.guard({ subject: "record_consent", allowed: false, reason: "consent_question_not_last" });
      await askConsentQuestion(ctx);
      return ctx.note("consent_question_repeated");
    }
    if (verdict === "interrupted") {
      // The caller barged in after the question reached them (over it, or over what followed):
      // it may not have been heard in full. Also when that barge-in's own turn was dropped, and for
      // words that repeat ones said before the question arrived (perhaps only redelivered).
      c.interrupted = true;
      ctx.guard({ subject: "record_consent", allowed: false, reason: "consent_question_interrupted" });
      await askConsentQuestion(ctx);
      return ctx.note("consent_question_interrupted");
    }
    if (verdict === "empty") {
      // Nothing was understood: silence is not consent, and there is nothing to record as the reply.
      ctx.guard({ subject: "record_consent", allowed: false, reason: "consent_empty_reply" });
      await askConsentQuestion(ctx);
      return ctx.note("consent_question_repeated");
    }
    const answer = { consented: true, reply: ctx.userText, turn: state.turn, at: ctx.nowIso(), spokenBeforeAnswer: state.spokenBeforeTurn, ...(ctx.decidedBy ? { rule: ctx.decidedBy } : {}) };
    // Evidence before state: if the ledger cannot write, consent is not recorded.
    c.givenId = await recordEvidence(ctx, {
      kind: "consent_given",
      number: c.number,
      question: c.question,
      reply: answer.reply,
      outcome: "given",
      ...decidedBy(ctx),
      ...(c.askedId ? { ref: c.askedId } : {}),
    });
    c.answer = answer;
    return { result: ctx.note("consent_given"), next: STEP.sendSms };
  },
});
