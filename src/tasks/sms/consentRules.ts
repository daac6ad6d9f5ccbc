import type { SmsCallState as CallState } from "./state.js";

/**
 * When is there valid consent to text the current number? One pure function, used by the
 * send tool (to tell the model) and by the action gate (to decide), so they cannot disagree.
 */
export type ConsentProblem =
  | "declined"
  | "no_number"
  | "not_asked"
  | "number_changed"
  | "not_answered"
  | "same_turn"
  | "question_not_last"
  | "question_interrupted"
  /** This yes already covered a send: every SMS needs its own answer to its own question. */
  | "already_used";

export type ConsentVerdict = { valid: true; number: string } | { valid: false; reason: ConsentProblem };

export function consentVerdict(state: CallState, number: string | undefined = state.sms.number): ConsentVerdict {
  const { sms } = state;
  if (sms.declined) return { valid: false, reason: "declined" };
  if (!number || !sms.number) return { valid: false, reason: "no_number" };
  const c = sms.consent;
  if (!c) return { valid: false, reason: "not_asked" };
  // The question must have named exactly this number, and it must still be the number in play.
  if (c.number !== number || sms.number !== number) return { valid: false, reason: "number_changed" };
  if (c.interrupted) return { valid: false, reason: "question_interrupted" };
  if (!c.answer) return { valid: false, reason: "not_answered" };
  if (!c.answer.consented) return { valid: false, reason: "declined" };
  if (!c.answer.reply.trim()) return { valid: false, reason: "not_answered" };
  if (c.answer.turn <= c.askedTurn) return { valid: false, reason: "same_turn" };
  // The answer must reply to the question itself, not to a line said after it.
  if (c.answer.spokenBeforeAnswer !== c.spokenIndex) return { valid: false, reason: "question_not_last" };
  if (c.usedAt !== undefined) return { valid: false, reason: "already_used" };
  return { valid: true, number };
}
