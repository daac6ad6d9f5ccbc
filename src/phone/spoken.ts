/**
 * Turn a number as a speech recognizer or a model writes it ("plus 49 151 …",
 * "null eins fünf eins …", "0151-1234 5678", "double seven") into a dialable string.
 * Returns digits with an optional leading "+"; no validation here.
 */

const DIGIT_WORDS: Record<string, string> = {
  // German
  // Not "ein"/"eine": those are articles ("ich habe eine Handynummer"); callers say "eins" for the digit.
  null: "0", eins: "1", zwei: "2", zwo: "2", drei: "3", vier: "4", "fünf": "5", fuenf: "5",
  sechs: "6", sieben: "7", acht: "8", neun: "9",
  // English
  zero: "0", one: "1", two: "2", three: "3", four: "4", five: "5", six: "6", seven: "7",
  eight: "8", nine: "9",
};
const REPEAT_WORDS: Record<string, number> = { doppel: 2, double: 2, triple: 3, "dreifach": 3 };
const PLUS_WORDS = new Set(["plus", "+"]);
/** "oh" is zero only next to other digits ("oh seven nine …"), not as an interjection ("Oh, my number is …"). */
const ZERO_LETTER_WORDS = new Set(["oh", "o"]);

function isDigitToken(token: string | undefined): boolean {
  return token !== undefined && (/^\d+$/.test(token) || DIGIT_WORDS[token] !== undefined || ZERO_LETTER_WORDS.has(token) || REPEAT_WORDS[token] !== undefined);
}

export function spokenToDialString(input: string): string {
  const tokens = input
    .toLowerCase()
    // Keep letters (digit words), digits and "+"; punctuation from speech-to-text ("123456!") separates.
    .replace(/[^\p{L}\p{N}+]/gu, " ")
    .replace(/\+/g, " + ")
    .split(/\s+/)
    .filter(Boolean);
  let out = "";
  let repeat = 1;
  for (const [i, token] of tokens.entries()) {
    if (PLUS_WORDS.has(token)) {
      if (out.length === 0) out = "+";
      continue;
    }
    if (REPEAT_WORDS[token]) {
      repeat = REPEAT_WORDS[token]!;
      continue;
    }
    let digits: string | undefined;
    if (/^\d+$/.test(token)) digits = token;
    else if (DIGIT_WORDS[token] !== undefined) digits = DIGIT_WORDS[token];
    else if (ZERO_LETTER_WORDS.has(token) && (isDigitToken(tokens[i + 1]) || isDigitToken(tokens[i - 1]))) digits = "0";
    else {
      // German compound "doppelnull", "doppeleins"
      const compound = /^(doppel|double)(.+)$/.exec(token);
      if (compound && DIGIT_WORDS[compound[2]!] !== undefined) digits = DIGIT_WORDS[compound[2]!]!.repeat(2);
    }
    if (digits === undefined) continue; // filler words ("meine", "nummer", "ist", "is", "my")
    out += repeat > 1 ? digits[0]!.repeat(repeat) + digits.slice(1) : digits;
    repeat = 1;
  }
  // International call prefix "00" means "+".
  if (out.startsWith("00")) out = "+" + out.slice(2);
  return out;
}
