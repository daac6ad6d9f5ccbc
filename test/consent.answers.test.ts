import { describe, expect, it } from "vitest";
import { PromptLibrary } from "../src/engine/promptLibrary.js";
import { PROMPTS_DIR } from "../src/service.js";
import { LANGUAGES } from "../src/config/schema.js";
import { compileConsentAnswers, CONSENT_ANSWERS_FILE, consentRule, matchConsentAnswer, normaliseUtterance } from "../src/tasks/sms/consentAnswers.js";
import { recordConsent } from "../tools/sms/record_consent.js";
import type { SmsContext } from "../src/tasks/sms/types.js";
import type { RuleLists } from "../src/engine/define.js";

/**
 * The consent turn's rule lists (prompts/<lang>/sms/consent_answers.md): a whole utterance, after case,
 * punctuation and whitespace only, decides; anything else is the model's. Expectations are the
 * words a caller says, never the lists' own contents read back.
 */

const lists = Object.fromEntries(LANGUAGES.map((l) => [l, new PromptLibrary(PROMPTS_DIR, l).ruleLists(CONSENT_ANSWERS_FILE)])) as Record<(typeof LANGUAGES)[number], RuleLists>;
const verdict = (lang: (typeof LANGUAGES)[number], text: string) => matchConsentAnswer(text, lists[lang])?.verdict;

describe("normalising", () => {
  it("only case, punctuation and whitespace", () => {
    expect(normaliseUtterance("  Ja,   GERNE! ")).toBe("ja gerne");
    expect(normaliseUtterance("Nein…danke.")).toBe("nein danke");
    expect(normaliseUtterance("Please don’t.")).toBe("please dont");
    expect(normaliseUtterance("Ja\tbitte")).toBe("ja bitte");
    // Words are never changed: no stemming, no synonyms.
    expect(normaliseUtterance("Jaaa")).toBe("jaaa");
  });
});

describe("de-DE", () => {
  it.each(["Ja.", "ja", "Ja, gerne.", "Ja gerne", "JA BITTE!", "Ja, bitte gerne.", "Gerne.", "Sehr gerne!"])("clear yes: %s", (t) => expect(verdict("de-DE", t)).toBe("yes"));
  it.each(["Nein.", "nein", "Nein danke.", "Nein, danke!", "Lieber nicht.", "Nein, lieber nicht.", "Bitte nicht."])("clear no: %s", (t) => expect(verdict("de-DE", t)).toBe("no"));
  it.each([
    ["a question", "Ja?"],
    ["a question", "Gerne?"],
    ["a question", "Nein?"],
    ["a but", "Ja, aber an eine andere Nummer."],
    ["a but", "Ja aber"],
    ["a but", "Nein, doch nicht."],
    ["a number", "Ja, 0151 2345678."],
    ["a number", "Ja 2"],
    ["more words", "Ja, gerne, und schicken Sie auch die Öffnungszeiten."],
    ["more words", "Ja gerne an meine Frau"],
    ["more words", "Nein, schicken Sie es an meinen Mann."],
    ["unclear", "Hm."],
    ["unclear", "Vielleicht."],
    ["empty", ""],
    ["punctuation only", "..."],
  ])("goes to the model: %s (%s)", (_why, t) => expect(matchConsentAnswer(t, lists["de-DE"])).toBeUndefined());
  it("names the rule by verdict and list entry", () => expect(matchConsentAnswer("Ja, gerne!", lists["de-DE"])).toEqual({ verdict: "yes", entry: "ja gerne" }));
});

describe("en-US", () => {
  it.each(["Yes.", "yes please", "Yes, please.", "Sure.", "Go ahead."])("clear yes: %s", (t) => expect(verdict("en-US", t)).toBe("yes"));
  it.each(["No.", "No, thanks.", "no thank you", "Please don't.", "I'd rather not."])("clear no: %s", (t) => expect(verdict("en-US", t)).toBe("no"));
  it.each(["Yes?", "Yes, but to my wife.", "Yes but", "Yes, 212 555 0123.", "Yes please text my colleague", "No, but call me back."])("goes to the model: %s", (t) => expect(matchConsentAnswer(t, lists["en-US"])).toBeUndefined());
  it("a German list entry is no English rule", () => expect(verdict("en-US", "Ja, gerne.")).toBeUndefined());
});

describe("the lists are checked at start-up", () => {
  const bad = (l: Record<string, string[]>) => () => compileConsentAnswers(l, "test.md");
  it("both verdicts are needed", () => {
    expect(bad({ yes: ["Ja."] })).toThrow(/"## no" is missing or empty/);
    expect(bad({ yes: [], no: ["Nein."] })).toThrow(/"## yes" is missing or empty/);
  });
  it("an entry the matcher would never accept, or one that means both, is refused", () => {
    expect(bad({ yes: ["Ja?"], no: ["Nein."] })).toThrow(/"Ja\?" is a question/);
    expect(bad({ yes: ["Ja, an die 2."], no: ["Nein."] })).toThrow(/has a number/);
    expect(bad({ yes: ["Ja？"], no: ["Nein."] })).toThrow(/"Ja？" has a character other than letters and plain punctuation/);
    expect(bad({ yes: ["Ja 👍"], no: ["Nein."] })).toThrow(/has a character other than letters/);
    expect(bad({ yes: ["Ja, aber gern."], no: ["Nein."], never: ["aber"] })).toThrow(/has a word of ## never/);
    expect(bad({ yes: ["Okay."], no: ["okay"] })).toThrow(/both yes and no/);
    expect(bad({ yes: ["Ja.", "ja"], no: ["Nein."] })).toThrow(/listed twice/);
    expect(bad({ yes: ["Ja."], no: ["Nein."], maybe: ["Hm."] })).toThrow(/unknown section "## maybe"/);
    expect(bad({ yes: ["Ja."], no: ["Nein."], never: ["aber doch"] })).toThrow(/single word/);
    expect(bad({ yes: ["Ja."], no: ["Nein."] })).toThrow(/"## questions" .* is missing or empty/);
    expect(bad({ yes: ["Ja."], no: ["Nein."], questions: ["Darf ich Ihnen eine SMS schicken?"] })).toThrow(/has no \{number\}/);
  });
  it("a section that is not a markdown list names the line", async () => {
    const { mkdtempSync, mkdirSync, writeFileSync } = await import("node:fs");
    const { join } = await import("node:path");
    const { tmpdir } = await import("node:os");
    const dir = mkdtempSync(join(tmpdir(), "rules-"));
    mkdirSync(join(dir, "de-DE", "sms"), { recursive: true });
    for (const f of ["persona.md", "lines.md"]) writeFileSync(join(dir, "de-DE", f), "");
    writeFileSync(join(dir, "tools.md"), "");
    writeFileSync(join(dir, "model-notes.md"), "");
    writeFileSync(join(dir, "de-DE", "sms", "consent_answers.md"), "## yes\n- Ja.\nGerne.\n## no\n- Nein.\n");
    expect(() => new PromptLibrary(dir, "de-DE").ruleLists(CONSENT_ANSWERS_FILE)).toThrow(/consent_answers.md ## yes: "Gerne." is not a list entry/);
  });
  it.each(LANGUAGES)("the shipped %s lists pass", (l) => expect(() => compileConsentAnswers(lists[l])).not.toThrow());
});

describe("when the rule may decide at all", () => {
  // A call whose consent question (line 3, asked in turn 2) reached the caller, who now says `text` in turn 3.
  const ctxFor = (text: string, over: { state?: Record<string, unknown>; sms?: Record<string, unknown>; consent?: Record<string, unknown>; ctx?: Record<string, unknown>; rules?: boolean } = {}) => {
    const number = "4915112345678";
    const consent = { number, question: "Darf ich …?", askedTurn: 2, askedAt: "", spokenIndex: 3, interrupted: false, ...over.consent };
    const state = { step: "confirm_consent", turn: 3, spoken: 3, spokenBeforeTurn: 3, sms: { number, sent: [], declined: false, consent, ...over.sms }, ...over.state };
    return {
      state,
      event: { type: "user_speak", text },
      userText: text,
      services: { config: { consent: { answerByRule: over.rules ?? true, question: "Darf ich Ihnen die Informationen per SMS an die Nummer {number} schicken?" } } },
      pendingSends: () => [],
      mayHaveBeenCut: () => false,
      wordsRepeated: false,
      ...over.ctx,
    } as unknown as SmsContext;
  };
  const rule = consentRule(recordConsent);
  const decide = (ctx: SmsContext) => rule(ctx, lists["de-DE"]);

  it("decides a clear answer to the question heard last, as the call the model would make", () => {
    expect(decide(ctxFor("Ja, gerne."))).toEqual({ tool: recordConsent, args: { consented: true }, rule: "yes:ja gerne" });
    expect(decide(ctxFor("Nein."))).toEqual({ tool: recordConsent, args: { consented: false }, rule: "no:nein" });
  });
  it.each([
    ["'Nein.' to another line said after the question", ctxFor("Nein.", { state: { spoken: 4, spokenBeforeTurn: 4 } })],
    ["'Ja.' before the question reached the caller", ctxFor("Ja.", { state: { spokenBeforeTurn: 2 } })],
    ["the question's own turn", ctxFor("Ja.", { state: { turn: 2 } })],
    ["not the first caller turn after the question", ctxFor("Ja.", { state: { turn: 4 } })],
    ["a barge-in into the question", ctxFor("Ja.", { state: { bargedIn: 3 } })],
    ["a barge-in seen after the question was delivered", ctxFor("Ja.", { ctx: { mayHaveBeenCut: () => true } })],
    ["the question already marked interrupted", ctxFor("Ja.", { consent: { interrupted: true } })],
    ["words that repeat an earlier event's", ctxFor("Ja.", { ctx: { wordsRepeated: true } })],
    ["a send of theirs still on its way", ctxFor("Ja.", { ctx: { pendingSends: () => [{ type: "send_sms" }] } })],
    ["a yes whose send is being rechecked", ctxFor("Nein.", { sms: { recheck: { step: "main" } } })],
    ["an answer already recorded", ctxFor("Ja.", { consent: { answer: { consented: true, reply: "Ja.", turn: 3, at: "", spokenBeforeAnswer: 3 } } })],
    ["a decline earlier in the call", ctxFor("Ja.", { sms: { declined: true } })],
    ["the question named another number", ctxFor("Ja.", { consent: { number: "4915199999999" } })],
    ["another step", ctxFor("Ja.", { state: { step: "collect_number" } })],
    ["a keypad entry", ctxFor("Ja.", { ctx: { event: { type: "dtmf_received", digit: "1" } } })],
    ["the switch off", ctxFor("Ja.", { rules: false })],
  ])("goes to the model: %s", (_why, ctx) => expect(decide(ctx)).toBeUndefined());
});
