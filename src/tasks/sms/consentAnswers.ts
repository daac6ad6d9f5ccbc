import type { RuleCall, RuleLists } from "../../engine/define.js";
import { answerTo } from "../../engine/heard.js";
import { STEP } from "./stepNames.js";
import type { SmsContext, SmsFlowTypes } from "./types.js";
import type { ToolDef } from "../../engine/define.js";
import { FlowDefinitionError } from "../../core/errors.js";

/**
 * The consent turn without model time: a clear "yes" or "no" to the consent question, said as one
 * of the whole utterances listed in prompts/<lang>/sms/consent_answers.md, is decided by that list.
 * Everything else (more words, a number, a question, a "but") goes to the model as before.
 *
 * The file has four sections: `## yes` and `## no`, the whole utterances that are a clear answer,
 * `## never`, words that send any utterance to the model whatever else it says, and `## questions`,
 * the consent questions (`consent.question` as configured) the answers were written for. A "Ja." is
 * a yes only to a question that asks for one ("Haben Sie etwas dagegen, …?" turns it into a no):
 * with any other question every answer goes to the model.
 */
export const CONSENT_ANSWERS_FILE = "sms/consent_answers";

export type ConsentVerdictWord = "yes" | "no";

/** What a rule matched: the verdict and the list entry (normalised), e.g. `yes` / `ja gerne`. */
export interface ConsentMatch {
  verdict: ConsentVerdictWord;
  entry: string;
}

interface Compiled {
  yes: ReadonlySet<string>;
  no: ReadonlySet<string>;
  never: ReadonlySet<string>;
  questions: ReadonlySet<string>;
}

/** A configured question as the lists name it: the template with `{number}`, whitespace collapsed. */
const questionKey = (q: string) => q.replace(/\s+/g, " ").trim();

/**
 * Case, punctuation and whitespace only: "Ja, gerne!" and "ja gerne" are the same answer. An
 * apostrophe joins ("don't" → "dont"), any other punctuation separates.
 */
export function normaliseUtterance(text: string): string {
  return text
    .normalize("NFC")
    .toLowerCase()
    .replace(/['’‘`´]/g, "")
    .replace(/[\p{P}\p{S}]/gu, " ")
    .replace(/\s+/g, " ")
    .trim();
}

/** Never a rule's business: a question, a number (digits or a keypad entry). */
const QUESTION = /[?¿]/;
const NUMBER = /\p{N}/u;
/**
 * The only characters a clear answer is made of: letters, spaces and the punctuation of a plain
 * statement. Anything else (a question mark of another script such as "？" or "؟", "‽", a symbol
 * or emoji) may change what the words mean, and normalising would drop it: such words are the model's.
 */
const PLAIN = /^[\p{L}\p{M}\s.,!;:…'’‘`´"„“”‚«»‹›\-–—]*$/u;

const compiled = new WeakMap<RuleLists, Compiled>();

/** Checks the lists (start-up) and builds the sets once per loaded file. */
export function compileConsentAnswers(lists: RuleLists, file = CONSENT_ANSWERS_FILE): Compiled {
  const known = compiled.get(lists);
  if (known) return known;
  for (const section of Object.keys(lists)) {
    if (section !== "yes" && section !== "no" && section !== "never" && section !== "questions") throw new FlowDefinitionError(`${file}: unknown section "## ${section}" (use yes, no, never, questions)`);
  }
  const never = new Set((lists.never ?? []).map(normaliseUtterance));
  for (const w of never) if (w.includes(" ") || w === "") throw new FlowDefinitionError(`${file} ## never: "${w}" must be a single word`);
  const build = (verdict: ConsentVerdictWord): Set<string> => {
    const entries = lists[verdict];
    if (!entries || entries.length === 0) throw new FlowDefinitionError(`${file}: section "## ${verdict}" is missing or empty`);
    const set = new Set<string>();
    for (const raw of entries) {
      const entry = normaliseUtterance(raw);
      const why = entry === "" ? "is empty" : QUESTION.test(raw) ? "is a question" : NUMBER.test(raw) ? "has a number" : !PLAIN.test(raw) ? "has a character other than letters and plain punctuation" : entry.split(" ").find((w) => never.has(w)) ? "has a word of ## never" : undefined;
      if (why) throw new FlowDefinitionError(`${file} ## ${verdict}: "${raw}" ${why}; such answers are the model's`);
      if (set.has(entry)) throw new FlowDefinitionError(`${file} ## ${verdict}: "${raw}" is listed twice`);
      set.add(entry);
    }
    return set;
  };
  const yes = build("yes");
  const no = build("no");
  for (const e of yes) if (no.has(e)) throw new FlowDefinitionError(`${file}: "${e}" is listed as both yes and no`);
  const questions = new Set((lists.questions ?? []).map(questionKey));
  if (questions.size === 0) throw new FlowDefinitionError(`${file}: section "## questions" (the consent questions these answers are to, as in consent.question) is missing or empty`);
  for (const q of questions) if (!q.includes("{number}")) throw new FlowDefinitionError(`${file} ## questions: "${q}" has no {number}; list consent.question as configured`);
  const c: Compiled = { yes, no, never, questions };
  compiled.set(lists, c);
  return c;
}

/** The verdict of the lists on a whole utterance, or undefined: the model decides. */
export function matchConsentAnswer(text: string, lists: RuleLists): ConsentMatch | undefined {
  const c = compileConsentAnswers(lists);
  if (QUESTION.test(text) || NUMBER.test(text) || !PLAIN.test(text)) return undefined;
  const said = normaliseUtterance(text);
  if (said === "" || said.split(" ").some((w) => c.never.has(w))) return undefined;
  if (c.yes.has(said)) return { verdict: "yes", entry: said };
  if (c.no.has(said)) return { verdict: "no", entry: said };
  return undefined;
}

/**
 * The rule of the consent step: only the caller's first words after the question reached them,
 * heard in full and last (no holding line, no other line in between, no barge-in, no repeated
 * words, no keys pressed since), with no send of theirs still on its way. Its verdict becomes the call the model would
 * make, record_consent(true/false), which keeps every guard of a model's yes; a "no" is final.
 */
export function consentRule(recordConsent: ToolDef<SmsFlowTypes>) {
  return (ctx: SmsContext, lists: RuleLists): RuleCall<SmsFlowTypes> | undefined => {
    const { state } = ctx;
    const { sms } = state;
    const { consent } = ctx.services.config;
    if (!consent.answerByRule) return undefined;
    // The lists answer the questions they were written for; another wording is the model's to read.
    if (!compileConsentAnswers(lists).questions.has(questionKey(consent.question))) return undefined;
    if (ctx.event.type !== "user_speak" || state.step !== STEP.confirmConsent) return undefined;
    const c = sms.consent;
    if (!c || c.answer || c.keyed || sms.declined || sms.recheck || c.number !== sms.number || ctx.pendingSends().length > 0) return undefined;
    // The first caller turn after the question's own turn: an earlier reply went to the model.
    if (state.turn !== c.askedTurn + 1) return undefined;
    if (answerTo(ctx, { turn: c.askedTurn, spokenIndex: c.spokenIndex, interrupted: c.interrupted }) !== "answer") return undefined;
    const match = matchConsentAnswer(ctx.userText, lists);
    if (!match) return undefined;
    return { tool: recordConsent, args: { consented: match.verdict === "yes" }, rule: `${match.verdict}:${match.entry}` };
  };
}
