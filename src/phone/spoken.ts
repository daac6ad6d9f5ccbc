/**
 * Turn a number as a speech recognizer or a model writes it ("plus 49 151 …",
 * "null eins fünf eins, zwölf, vierunddreißig …", "0151-1234 5678", "double seven") into a
 * dialable string. Returns digits with an optional leading "+"; no validation here.
 *
 * These word lists are the parser's vocabulary, not wording anyone hears, so they live here
 * rather than in prompts/.
 */

/** Single digits. Not "ein"/"eine": those are articles ("ich habe eine Handynummer"); callers say "eins" for the digit. */
const DE_DIGITS: Record<string, number> = {
  null: 0, eins: 1, zwei: 2, zwo: 2, drei: 3, vier: 4, "fünf": 5, fuenf: 5, sechs: 6, sieben: 7, acht: 8, neun: 9,
};
/** A digit inside a German compound: "einundzwanzig", "einhundert" take "ein", not "eins". */
const DE_UNIT_PREFIX: Record<string, number> = {
  ein: 1, zwei: 2, zwo: 2, drei: 3, vier: 4, "fünf": 5, fuenf: 5, sechs: 6, sieben: 7, acht: 8, neun: 9,
};
const DE_TEENS: Record<string, number> = {
  zehn: 10, elf: 11, "zwölf": 12, zwoelf: 12, dreizehn: 13, vierzehn: 14, "fünfzehn": 15, fuenfzehn: 15,
  sechzehn: 16, siebzehn: 17, achtzehn: 18, neunzehn: 19,
};
const DE_TENS: Record<string, number> = {
  zwanzig: 20, "dreißig": 30, dreissig: 30, vierzig: 40, "fünfzig": 50, fuenfzig: 50, sechzig: 60, siebzig: 70, achtzig: 80, neunzig: 90,
};
const EN_UNITS: Record<string, number> = { one: 1, two: 2, three: 3, four: 4, five: 5, six: 6, seven: 7, eight: 8, nine: 9 };
const EN_TEENS: Record<string, number> = {
  ten: 10, eleven: 11, twelve: 12, thirteen: 13, fourteen: 14, fifteen: 15, sixteen: 16, seventeen: 17, eighteen: 18, nineteen: 19,
};
const EN_TENS: Record<string, number> = { twenty: 20, thirty: 30, forty: 40, fourty: 40, fifty: 50, sixty: 60, seventy: 70, eighty: 80, ninety: 90 };

const REPEAT_WORDS: Record<string, number> = { doppel: 2, double: 2, triple: 3, dreifach: 3 };
const PLUS_WORDS = new Set(["plus", "+"]);
/**
 * "oh" is zero only next to other digits, or in a row of "oh"s next to them ("oh seven nine …",
 * "four oh oh one"), not as an interjection ("Oh, my number is …").
 */
const ZERO_LETTER_WORDS = new Set(["oh", "o"]);
/** Words (and two-word phrases) after which the caller corrects what they just said; see `applyCorrection`. */
const CORRECTION_WORDS = new Set(["nein", "nee", "no", "nope", "sorry", "entschuldigung", "korrektur", "correction", "sondern", "quatsch"]);
const CORRECTION_PHRASES = new Set(["ich meine", "i mean"]);
/**
 * A correction with at least this many digits that starts with "0" or "+" is a whole new number,
 * not a replacement for the end of the old one: the shortest German numbers with area code
 * ("089 1234") have 7 digits, and a tail correction that long is not how people fix a slip.
 */
const FRESH_NUMBER_MIN_DIGITS = 7;

const pad = (n: number, width: number) => String(n).padStart(width, "0");

/** German 0–99 as one word: "null", "zwölf", "dreißig", "vierunddreißig". Two digits from ten up. */
function germanBelow100(word: string): string | undefined {
  const n = DE_DIGITS[word] ?? DE_TEENS[word] ?? DE_TENS[word];
  if (n !== undefined) return String(n);
  const compound = /^(.+?)und(.+)$/.exec(word);
  if (compound && DE_UNIT_PREFIX[compound[1]!] !== undefined && DE_TENS[compound[2]!] !== undefined) {
    return String(DE_TENS[compound[2]!]! + DE_UNIT_PREFIX[compound[1]!]!);
  }
  return undefined;
}

/**
 * One German word that is a number people say in a phone number: 0–99, or a "hundert" compound
 * ("hundert" 100, "einhundertzwölf" 112, "hundertelf" 111, "zweihundert" 200, "hundertfünf" 105).
 * Hundreds always give three digits.
 */
function germanWord(word: string): string | undefined {
  const small = germanBelow100(word);
  if (small !== undefined) return small;
  const m = /^(.*?)hundert(?:und)?(.*)$/.exec(word);
  if (!m) return undefined;
  const times = m[1] === "" ? 1 : DE_UNIT_PREFIX[m[1]!];
  const rest = m[2] === "" ? "0" : germanBelow100(m[2]!);
  if (times === undefined || rest === undefined) return undefined;
  return pad(times * 100 + Number(rest), 3);
}

/** One English word: a digit, a teen or a tens word ("twelve" 12, "forty" 40). */
function englishWord(word: string): string | undefined {
  if (word === "zero") return "0";
  const n = EN_UNITS[word] ?? EN_TEENS[word] ?? EN_TENS[word];
  return n === undefined ? undefined : String(n);
}

/** The digits one token stands for on its own: digits as written, a number word, "doppelnull". */
function tokenDigits(token: string): string | undefined {
  if (/^\d+$/.test(token)) return token;
  const word = germanWord(token) ?? englishWord(token);
  if (word !== undefined) return word;
  // German compound "doppelnull", "doppeleins", "doppelfünf"
  const compound = /^(doppel|double)(.+)$/.exec(token);
  const repeated = compound ? (germanWord(compound[2]!) ?? englishWord(compound[2]!)) : undefined;
  return repeated?.length === 1 ? repeated.repeat(2) : undefined;
}

function isNumberToken(token: string | undefined): boolean {
  return token !== undefined && (tokenDigits(token) !== undefined || REPEAT_WORDS[token] !== undefined || token === "hundred");
}

/** Whether the "oh" at `i`, with the "oh"s in a row around it, stands next to a number token. */
function zeroBesideDigits(tokens: string[], i: number): boolean {
  let before = i - 1;
  while (before >= 0 && ZERO_LETTER_WORDS.has(tokens[before]!)) before--;
  let after = i + 1;
  while (after < tokens.length && ZERO_LETTER_WORDS.has(tokens[after]!)) after++;
  return isNumberToken(tokens[before]) || isNumberToken(tokens[after]);
}

/**
 * Whether the parser may read a token (lower case) as part of a number: digits, a number word,
 * "plus", "doppel"/"double", "hundred", or "oh" (zero beside other digits). Everything else
 * is filler to it, or a correction word. For finding where in a text a number was said
 * (`redactNumber`), without a second parser.
 */
export function isNumberPart(token: string): boolean {
  return isNumberToken(token) || PLUS_WORDS.has(token) || ZERO_LETTER_WORDS.has(token);
}

/**
 * Numbers said in more than one word, read from `tokens[i]` on; returns the digits and how many
 * tokens they took, or undefined when `tokens[i]` starts none of these:
 * - German compound split by the recognizer: "vier und dreißig" → 34, "zwei hundert" → 200.
 * - English tens and a digit: "forty nine", "forty-nine" → 49.
 * - English hundreds: "one hundred" → 100, "hundred" → 100, "one hundred twelve" → 112,
 *   "one hundred and five" → 105. A bare digit after "hundred" stays its own digit, because
 *   "one eight hundred five five five …" is how people say 1-800-555-…
 * German "hundert" does not join a separate next word: "null achthundert zwölf" is 0800 12.
 */
function multiWordNumber(tokens: string[], i: number): { digits: string; used: number } | undefined {
  const [a, b, c] = [tokens[i]!, tokens[i + 1], tokens[i + 2]];
  if (DE_UNIT_PREFIX[a] !== undefined && b === "und" && c !== undefined && DE_TENS[c] !== undefined) {
    return { digits: String(DE_TENS[c]! + DE_UNIT_PREFIX[a]!), used: 3 };
  }
  if (DE_UNIT_PREFIX[a] !== undefined && b === "hundert") return { digits: pad(DE_UNIT_PREFIX[a]! * 100, 3), used: 2 };
  if (EN_TENS[a] !== undefined && b !== undefined && EN_UNITS[b] !== undefined) return { digits: String(EN_TENS[a]! + EN_UNITS[b]!), used: 2 };
  const hundredAt = a === "hundred" ? i : EN_UNITS[a] !== undefined && b === "hundred" ? i + 1 : undefined;
  if (hundredAt === undefined) return undefined;
  const times = a === "hundred" ? 1 : EN_UNITS[a]!;
  let j = hundredAt + 1;
  const and = tokens[j] === "and";
  if (and) j++;
  const next = tokens[j];
  const tens = next !== undefined ? (EN_TENS[next] ?? EN_TEENS[next]) : undefined;
  let rest = 0;
  if (tens !== undefined) {
    rest = tens;
    j++;
    const unit = tokens[j] !== undefined && EN_TENS[next!] !== undefined ? EN_UNITS[tokens[j]!] : undefined;
    if (unit !== undefined) {
      rest += unit;
      j++;
    }
  } else if (and && next !== undefined && EN_UNITS[next] !== undefined) {
    rest = EN_UNITS[next]!;
    j++;
  } else if (and) {
    j--; // "one hundred and …" followed by no number: the "and" is filler
  }
  return { digits: pad(times * 100 + rest, 3), used: j - i };
}

/**
 * The correction rule. The caller's words are split at each correction word ("nein", "nee",
 * "no", "sorry", "Entschuldigung", "Korrektur", "correction", "sondern", "Quatsch",
 * "ich meine", "I mean"); each part after one is applied to the number so far:
 * - a part with no digits changes nothing ("0151 1234 5678, nein, das ist die alte" keeps it);
 * - a part that starts with "+", or with "0" and has at least FRESH_NUMBER_MIN_DIGITS digits,
 *   is a fresh number and replaces everything ("0151 123, nein, 0170 1234567" → 01701234567);
 * - otherwise its N digits replace the last N digits said before the correction word, i.e. the
 *   group the caller just said ("0151 1234 56, nein, 78" → 0151123478;
 *   "… fünf sechs, nein, sieben acht" → … 7 8). A part longer than the number so far replaces all of it.
 * A correction word before any digit ("Nein, meine Nummer ist …") has nothing to correct.
 */
function applyCorrection(sofar: string, part: string): string {
  if (part === "" || part === "+") return sofar;
  if (part.startsWith("+") || (part.startsWith("0") && part.length >= FRESH_NUMBER_MIN_DIGITS)) return part;
  return sofar.slice(0, Math.max(0, sofar.length - part.length)) + part;
}

export function spokenToDialString(input: string): string {
  const tokens = input
    .toLowerCase()
    // Keep letters (digit words), digits and "+"; punctuation from speech-to-text ("123456!", "forty-nine") separates.
    .replace(/[^\p{L}\p{N}+]/gu, " ")
    .replace(/\+/g, " + ")
    .split(/\s+/)
    .filter(Boolean);
  let number = "";
  let part = ""; // digits since the last correction word (the whole number when there was none)
  let corrected = false;
  let repeat = 1;
  const endPart = () => {
    number = corrected ? applyCorrection(number, part) : part;
    part = "";
  };
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    const phrase = tokens[i + 1] !== undefined ? `${token} ${tokens[i + 1]}` : "";
    if (CORRECTION_WORDS.has(token) || CORRECTION_PHRASES.has(phrase)) {
      if (CORRECTION_PHRASES.has(phrase)) i++;
      // Before any digit there is nothing to correct ("Nein, meine Nummer ist …").
      if (number !== "" || part.replace("+", "") !== "") {
        endPart();
        corrected = true;
      } else {
        part = ""; // a "plus" the caller took back ("plus, nein, null eins …")
      }
      repeat = 1;
      continue;
    }
    if (PLUS_WORDS.has(token)) {
      if (part.length === 0) part = "+";
      continue;
    }
    if (REPEAT_WORDS[token]) {
      repeat = REPEAT_WORDS[token]!;
      continue;
    }
    const multi = multiWordNumber(tokens, i);
    let digits = multi?.digits ?? tokenDigits(token);
    if (multi) i += multi.used - 1;
    else if (digits === undefined && ZERO_LETTER_WORDS.has(token) && zeroBesideDigits(tokens, i)) digits = "0";
    if (digits === undefined) continue; // filler words ("meine", "nummer", "ist", "is", "my")
    part += repeat > 1 ? digits[0]!.repeat(repeat) + digits.slice(1) : digits;
    repeat = 1;
  }
  endPart();
  // International call prefix "00" means "+".
  if (number.startsWith("00")) number = "+" + number.slice(2);
  return number;
}
