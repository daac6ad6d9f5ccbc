import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { loadConfigFile } from "../src/appConfig.js";
import { parseCallerNumber } from "../src/phone/number.js";
import { NUMBER_PLACEHOLDER, redactNumber } from "../src/phone/redact.js";
import { speakable } from "../src/tasks/sms/numbers.js";

/**
 * Issue 18, point 1: with `ledger.numbers: hashed` no record holds the number in any form, so the
 * question, the reply and the message are stored with the number replaced by `{number}`. Every
 * form the service reads or speaks goes, whatever stands around it; everything else stays.
 */

// ---- numbers ---------------------------------------------------------------------------------

interface Target {
  aiflow: string;
  cc: string;
  /** National significant number: the digits after the country code. */
  nsn: string;
  /** Whether the number belongs to the home country (DE): then its national form is a form of it. */
  home: boolean;
}

const digitString = (min: number, max: number) => fc.array(fc.integer({ min: 0, max: 9 }), { minLength: min, maxLength: max }).map((d) => d.join(""));

/** Valid mobile numbers: German ones (home) and a few from abroad. */
const target: fc.Arbitrary<Target> = fc
  .oneof(
    fc.tuple(fc.constantFrom("151", "152", "157", "160", "170", "171", "172", "175", "176", "177", "179"), digitString(7, 8)).map(([p, rest]) => ({ cc: "49", nsn: p + rest, home: true })),
    fc.tuple(fc.constantFrom("664", "676", "699"), digitString(7, 7)).map(([p, rest]) => ({ cc: "43", nsn: p + rest, home: false })),
    fc.tuple(fc.constantFrom("76", "78", "79"), digitString(7, 7)).map(([p, rest]) => ({ cc: "41", nsn: p + rest, home: false })),
  )
  .map((t) => ({ ...t, aiflow: t.cc + t.nsn }))
  .filter((t) => parseCallerNumber("+" + t.aiflow, "DE")?.valid === true);

// ---- the forms of a number -------------------------------------------------------------------

const SEPARATORS = [" ", "-", "/", ".", " / ", " - ", "  "];

/** Digits in groups of 1–5 with separators between them, as people write numbers. */
function grouped(digits: string): fc.Arbitrary<string> {
  return fc.array(fc.tuple(fc.integer({ min: 1, max: 5 }), fc.constantFrom(...SEPARATORS)), { minLength: digits.length, maxLength: digits.length }).map((cuts) => {
    let out = "";
    let at = 0;
    for (const [len, sep] of cuts) {
      if (at >= digits.length) break;
      out += (at > 0 ? sep : "") + digits.slice(at, at + len);
      at += len;
    }
    return out;
  });
}

const DE_DIGIT = ["null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun"];
const DE_UNIT = ["", "ein", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun"];
const DE_TEEN = ["zehn", "elf", "zwölf", "dreizehn", "vierzehn", "fünfzehn", "sechzehn", "siebzehn", "achtzehn", "neunzehn"];
const DE_TENS = ["", "", "zwanzig", "dreißig", "vierzig", "fünfzig", "sechzig", "siebzig", "achtzig", "neunzig"];
const EN_DIGIT = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"];
const EN_TEEN = ["ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"];
const EN_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"];

function germanBelow100(n: number): string {
  if (n < 10) return DE_DIGIT[n]!;
  if (n < 20) return DE_TEEN[n - 10]!;
  const unit = n % 10;
  return unit === 0 ? DE_TENS[Math.floor(n / 10)]! : `${DE_UNIT[unit]}und${DE_TENS[Math.floor(n / 10)]}`;
}

/** One group of 1–3 digits in German: digit words, a pair ("vierunddreißig"), or hundreds ("einhundertzwölf"). */
function germanGroup(g: string): string {
  if (g.startsWith("0") || g.length === 1) return g.split("").map((d) => DE_DIGIT[Number(d)]).join(" ");
  const n = Number(g);
  if (g.length === 2) return germanBelow100(n);
  const rest = n % 100;
  // "einhundert", not "hundert": after "fünf" a lone "hundert" is the recognizer's split "fünf hundert" (500).
  return `${DE_UNIT[Math.floor(n / 100)]}hundert${rest === 0 ? "" : germanBelow100(rest)}`;
}

/** One group of 1–2 digits in English: digit words ("oh" or "zero" for 0), a pair ("thirty four", "forty-nine"), "double five". */
function englishGroup(g: string, zero: string, hyphen: boolean): string {
  if (g.length === 2 && g[0] === g[1]) return `double ${g[0] === "0" ? zero : EN_DIGIT[Number(g[0])]}`;
  // "twenty" before a group that starts with "five" is heard as 25: round tens are said digit by digit.
  if (g.startsWith("0") || g.length === 1 || (Number(g) >= 20 && g.endsWith("0"))) return g.split("").map((d) => (d === "0" ? zero : EN_DIGIT[Number(d)])).join(" ");
  const n = Number(g);
  if (n < 20) return EN_TEEN[n - 10]!;
  return `${EN_TENS[Math.floor(n / 10)]}${hyphen ? "-" : " "}${EN_DIGIT[n % 10]}`;
}

/** Digits cut into groups of 1..max, each said by `say`, joined by " " or ", ". */
function saidInGroups(digits: string, max: number, say: (group: string) => string): fc.Arbitrary<string> {
  return fc.array(fc.tuple(fc.integer({ min: 1, max }), fc.constantFrom(" ", ", ")), { minLength: digits.length, maxLength: digits.length }).map((cuts) => {
    const parts: string[] = [];
    let at = 0;
    for (const [len, sep] of cuts) {
      if (at >= digits.length) break;
      parts.push((parts.length ? sep : "") + say(digits.slice(at, at + len)));
      at += len;
    }
    return parts.join("");
  });
}

/** Every way the number is written or said: what the service reads back, what callers and models write. */
function formsOf(t: Target): fc.Arbitrary<string> {
  const national = "0" + t.nsn;
  const international = [
    grouped(t.nsn).map((g) => `+${t.cc} ${g}`),
    grouped(t.nsn).map((g) => `+${t.cc}${g}`),
    grouped(t.nsn).map((g) => `00${t.cc} ${g}`),
    grouped(t.nsn).map((g) => `+${t.cc} (0)${g}`),
    grouped(t.nsn).map((g) => `+${t.cc} (0) ${g}`),
    fc.constant(t.aiflow),
    fc.constant(speakable(t.aiflow, "DE")),
    saidInGroups(t.nsn, 3, germanGroup).map((w) => `plus ${germanBelow100(Number(t.cc))} ${w}`),
    saidInGroups(t.nsn, 2, (g) => englishGroup(g, "oh", false)).map((w) => `plus ${englishGroup(t.cc, "zero", true)} ${w}`),
  ];
  if (!t.home) return fc.oneof(...international);
  return fc.oneof(
    ...international,
    grouped(national),
    grouped(t.nsn.slice(3)).map((g) => `(0${t.nsn.slice(0, 3)}) ${g}`),
    grouped(t.nsn.slice(3)).map((g) => `0${t.nsn.slice(0, 3)}/${g}`),
    saidInGroups(national, 3, germanGroup),
    saidInGroups(national, 2, (g) => englishGroup(g, "oh", true)),
    saidInGroups(national, 2, (g) => englishGroup(g, "zero", false)),
  );
}

// ---- what stands around it ---------------------------------------------------------------------

/** Words that are no part of any number: no number words, no "oh", no correction word ("nein", "sorry"). */
const WORDS = ["Meine", "Nummer", "ist", "bitte", "danke", "gerne", "Termin", "um", "Uhr", "am", "Montag", "Kundennummer", "Rückruf", "my", "number", "is", "please", "thanks", "call", "me", "at", "und", "and", "die", "Praxis", "Handy", "Tel."];

/** Other numbers: times, amounts, other phone numbers (written any way). */
const otherNumber = fc.oneof(
  fc.integer({ min: 1, max: 9999 }).map(String),
  fc.tuple(fc.constantFrom("030", "089", "0221", "0170", "0151", "+49 30", "+43 1"), grouped("1234567")).map(([a, b]) => `${a} ${b}`),
  fc.tuple(fc.constantFrom("0160", "0176", "0151"), digitString(7, 8)).chain(([p, rest]) => grouped(p + rest)),
);

const noise = fc
  .array(fc.tuple(fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...WORDS) }, { weight: 1, arbitrary: otherNumber }), fc.constantFrom(" ", ", ", ". ", ": ")), { maxLength: 8 })
  .map((parts) => parts.map(([w, sep]) => w + sep).join(""));

/** Between the number and its neighbours: always something, as in any sentence. */
const gap = fc.constantFrom(" ", ", ", ": ", " (", ") ", " – ");

/**
 * Digits right before the number may be read with it ("… 0 0 4 9, null eins sieben …" is the
 * number with its international prefix, as a person hears it too): then they rightly go with it.
 * So a word stands between the number and digits before it; digits right after it stay.
 */
const endsInDigits = (s: string) => /\d\P{L}*$/u.test(s);

/** Whether `text` holds `t` in digits in any grouping (the generated noise never should). */
function holdsDigits(text: string, t: Target): boolean {
  const digits = text.replace(/\D/g, "");
  return digits.includes(t.nsn.slice(-7));
}

// ---- properties ------------------------------------------------------------------------------

describe("redactNumber: every form of the number goes", () => {
  it("a number in any form, anywhere in a text, becomes {number}; the text around it stays as it was", () => {
    fc.assert(
      fc.property(
        target.chain((t) => fc.tuple(fc.constant(t), formsOf(t), formsOf(t), noise, noise, noise, gap, gap, gap, gap)),
        ([t, form, again, before, between, after, g1, g2, g3, g4]) => {
          fc.pre(!holdsDigits(before + between + after, t) && !endsInDigits(before) && !endsInDigits(between));
          const text = `${before}${g1}${form}${g2}${between}${g3}${again}${g4}${after}`;
          const redacted = redactNumber(text, t.aiflow, "DE");
          expect(redacted).toBe(`${before}${g1}${NUMBER_PLACEHOLDER}${g2}${between}${g3}${NUMBER_PLACEHOLDER}${g4}${after}`);
          // And nothing the parser could read as the number is left in the text.
          expect(holdsDigits(redacted, t)).toBe(false);
        },
      ),
      { numRuns: 400 },
    );
  });

  it("a text without the number is returned unchanged, other phone numbers and all", () => {
    fc.assert(
      fc.property(target, noise, noise, otherNumber, (t, a, b, other) => {
        const text = `${a}${other} ${b}`;
        fc.pre(!holdsDigits(text, t));
        expect(redactNumber(text, t.aiflow, "DE")).toBe(text);
      }),
      { numRuns: 400 },
    );
  });
});

describe("redactNumber: the texts a ledger record holds", () => {
  it("the consent question as spoken is its template again (German and English configs)", () => {
    for (const [file, number] of [
      ["config/agent.yaml", "4915112345678"],
      ["config/agent.yaml", "436641234567"],
      ["config/agent.en-US.yaml", "12015550123"],
    ] as const) {
      const config = loadConfigFile(file);
      const template = config.tasks.sms.consent.question.replaceAll("{business_name}", config.business.name);
      const asked = template.replaceAll("{number}", speakable(number, config.homeCountry));
      expect(asked).not.toBe(template);
      expect(redactNumber(asked, number, config.homeCountry)).toBe(template);
    }
  });

  it("a caller's reply: said in words, corrected, or next to another number", () => {
    const n = "4915112345678";
    const cases: Array<[string, string]> = [
      ["Ja, an null eins fünf eins, zwölf, vierunddreißig, sechsundfünfzig, achtundsiebzig bitte.", "Ja, an {number} bitte."],
      ["Ja, null eins fünf eins äh zwölf vierunddreißig sechsundfünfzig achtundsiebzig.", "Ja, {number}."],
      ["0151 1234 5600, nein, 78", "{number}"],
      // The parser takes the fresh number after "nein": the first one is another number and stays.
      ["0170 1234567, nein, 0151 12345678", "0170 1234567, nein, {number}"],
      ["0151 12345678, nein, 0170 1234567", "{number}, nein, 0170 1234567"],
      ["Tel.015112345678 oder Tel015112345678", "Tel.{number} oder Tel{number}"],
      ["(0151) 1234 5678, nicht 0151 1234 5679", "{number}, nicht 0151 1234 5679"],
      ["um 12 Uhr an 0151-12345678, Kundennummer 4711", "um 12 Uhr an {number}, Kundennummer 4711"],
    ];
    for (const [text, expected] of cases) expect(redactNumber(text, n, "DE"), text).toBe(expected);
  });

  it("a national form is a form only of a home-country number: in Germany 0664 … is a German number", () => {
    expect(redactNumber("Ruf +43 664 1234567 an, nicht 0664 1234567", "436641234567", "DE")).toBe("Ruf {number} an, nicht 0664 1234567");
    expect(redactNumber("Call (201) 555-0123, 1-201-555-0123 or two oh one five five five oh one two three", "12015550123", "US")).toBe("Call {number}, {number} or {number}");
  });

  it("takes the number as E.164 or in AI Flow format; a text or number with nothing to find is returned as it is", () => {
    expect(redactNumber("an 0151 12345678", "+4915112345678", "DE")).toBe("an {number}");
    expect(redactNumber("", "4915112345678", "DE")).toBe("");
    expect(redactNumber("Ja, gerne.", "4915112345678", "DE")).toBe("Ja, gerne.");
    expect(redactNumber("an 0151 12345678", "", "DE")).toBe("an 0151 12345678");
  });
});
