import type { CallState } from "../core/callState.js";
import type { FlowTypes } from "./define.js";
import type { TurnContext } from "./turnContext.js";

/**
 * "Was this caller turn an answer to that line?": one rule for every task that needs an answer to
 * a line of its own (the SMS task's consent question, the callback agent's read-backs). Guards of
 * a "yes" use it; a "no" never needs it.
 */

/** A line the caller may answer: the turn it was said in, and `CallState.spoken` right after it. */
export interface AskedLine {
  turn: number;
  spokenIndex: number;
  /** Known to have been cut short already (an earlier verdict said so). */
  interrupted?: boolean;
}

/**
 * - `answer`: a later turn, with the line the last one the caller had heard, heard in full, and words in it;
 * - `same_turn`: the words came in the turn that said the line (the model, not the caller, answered);
 * - `not_heard_yet`: the caller spoke before the line reached them (a slow turn's lines leave with this answer);
 * - `not_last`: something else was said after the line: the words answer that;
 * - `interrupted`: the caller barged in after the line reached them (it may not have been heard in
 *   full), or the words repeat ones said before the line arrived (perhaps only redelivered);
 * - `empty`: nothing was understood.
 */
export type AnswerVerdict = "answer" | "same_turn" | "not_heard_yet" | "not_last" | "interrupted" | "empty";

export function answerTo<F extends FlowTypes>(ctx: TurnContext<F>, line: AskedLine): AnswerVerdict {
  const { state } = ctx;
  if (state.turn <= line.turn) return "same_turn";
  if (state.spokenBeforeTurn < line.spokenIndex) return "not_heard_yet";
  if (state.spokenBeforeTurn !== line.spokenIndex) return "not_last";
  if (line.interrupted || wasBargedInto(ctx, line.spokenIndex) || ctx.wordsRepeated) return "interrupted";
  if (!ctx.userText.trim()) return "empty";
  return "answer";
}

/**
 * Whether line `spokenIndex` may have been cut short by a barge-in: the caller spoke over it (the
 * engine marks `CallState.bargedIn` on every barged-in utterance), or the transport saw a barge-in
 * after it was delivered (whatever became of that barge-in's turn).
 */
export function wasBargedInto<F extends FlowTypes>(ctx: TurnContext<F>, spokenIndex: number): boolean {
  return spokenOver(ctx.state, spokenIndex) || ctx.mayHaveBeenCut(spokenIndex);
}

/**
 * What the state alone says (outside a turn, e.g. a prompt's status line): the caller spoke over
 * line `spokenIndex` (the engine's barge-in mark, `CallState.bargedIn`).
 */
export function spokenOver(state: Pick<CallState, "bargedIn">, spokenIndex: number): boolean {
  return state.bargedIn !== undefined && spokenIndex <= state.bargedIn;
}
