/**
 * Turn a number as a speech recognizer or a model writes it ("plus 49 151 …",
 * "null eins fünf eins …", "0151-1234 5678", "double seven") into a dialable string.
 * Returns digits with an optional leading "+"; no validation here.
 */

const DIGIT_WORDS: Record<string, string> = {
  // German
  null: "0", eins: "1", ein: "1", eine: "1", zwei: "2", zwo: "2", drei: "3", vier: "4", "fünf": "5", fuenf: "5",
  sechs: "6", sieben: "7", acht: "8", neun: "9",
  // English
  zero: "0", oh: "0", o: "0", one: "1", two: "2", three: "3", four: "4", five: "5", six: "6", seven: "7",
  eight: "8", nine: "9",
};
const REPEAT_WORDS: Record<string, number> = { doppel: 2, double: 2, triple: 3, "dreifach": 3 };
const PLUS_WORDS = new Set(["plus", "+"]);

export function spokenToDialString(input: string): string {
  const tokens = input
    .toLowerCase()
    .replace(/[()./,\-–—_:;]/g, " ")
    .replace(/\+/g, " + ")
    .split(/\s+/)
    .filter(Boolean);
  let out = "";
  let repeat = 1;
  for (const token of tokens) {
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
