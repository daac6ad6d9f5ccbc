import { parsePhoneNumberFromString, type CountryCode } from "libphonenumber-js/max";
import { isNumberPart, spokenToDialString } from "./spoken.js";

/**
 * What stands where the number was: the consent question's own placeholder, so a redacted
 * question reads as the configured template it was spoken from.
 */
export const NUMBER_PLACEHOLDER = "{number}";

/**
 * Letters, digits and "+": the parser's tokens, split further where letters and digits touch,
 * so a number glued to a word ("Tel015112345678") is found too.
 */
const PIECE = /\p{L}+|\p{N}+|\+/gu;
/** Words the parser skips that may stand inside one said number: "vier und dreißig", "äh", "nein, …" before a correction, "ich meine". */
const MAX_FILLERS_IN_A_ROW = 2;
/** Pieces one number can take when said word by word, with fillers and a correction: bounds the work per start. */
const MAX_PIECES = 48;
/** The longest form has the number's digits and one more (the trunk "0" of "+49 (0)151 …"); a span well past that is another number. */
const MAX_EXTRA_DIGITS = 3;

interface Piece {
  said: string;
  start: number;
  end: number;
  numberPart: boolean;
}

/**
 * The text with every form of `number` (AI Flow format or E.164) replaced by `{number}`: E.164
 * ("+49 151 …", "0049 …", "+49 (0)151 …"), national ("0151-1234 5678", "(0151) …"), AI Flow's
 * digits, the digit groups the agent reads back (`speakable`), and the number said in words
 * ("null eins fünf eins, zwölf, vierunddreißig …", "oh one five one, double seven …"), with
 * any spaces, dashes, slashes, dots or parentheses between the groups.
 *
 * Words are read by the service's own parser (`spokenToDialString`, corrections included); a
 * national form counts only for a number of `homeCountry`: in Germany "0664 1234567" is a German
 * number, not the Austrian +43 664 1234567. Other numbers stay.
 */
export function redactNumber(text: string, number: string, homeCountry: CountryCode): string {
  const digits = number.replace(/\D/g, "");
  if (digits.length < 3 || !text) return text;
  const read = matcher(digits, homeCountry);
  const pieces: Piece[] = [...text.matchAll(PIECE)].map((m) => {
    const said = m[0].toLowerCase();
    return { said, start: m.index, end: m.index + m[0].length, numberPart: isNumberPart(said) };
  });
  let out = "";
  let copied = 0;
  for (let i = 0; i < pieces.length; i++) {
    if (!pieces[i]!.numberPart) continue;
    const end = shortestMatch(pieces, i, read);
    if (end < 0) continue;
    const start = latestStart(pieces, i, end, read);
    const [from, to] = withParenthesis(text, pieces[start]!.start, pieces[end]!.end);
    out += text.slice(copied, from) + NUMBER_PLACEHOLDER;
    copied = to;
    i = end;
  }
  return out + text.slice(copied);
}

/** Reads words (joined pieces): "match" when they are the number, "longer" when they hold more digits than any of its forms. */
type Reading = "match" | "other" | "longer";

function matcher(digits: string, homeCountry: CountryCode): (said: string) => Reading {
  const forms = dialForms(digits, homeCountry);
  return (said) => {
    const dial = spokenToDialString(said);
    if (dial.replace("+", "").length > digits.length + MAX_EXTRA_DIGITS) return "longer";
    // Or AI Flow's own digits without "+" (the parser alone would read those as a national number).
    return forms.has(dial) || dial === digits ? "match" : "other";
  };
}

/** Forms already worked out (the ledger redacts one number in several fields of a call): bounded, oldest out first. */
const formsCache = new Map<string, ReadonlySet<string>>();
const FORMS_CACHE_MAX = 1_000;

/**
 * The dial strings (what the parser makes of words and digits: digits, "+" first when
 * international, "00" already turned into "+") that are this number: E.164 ("+49151…"), with the
 * trunk zero ("+490151…", written "+49 (0)151 …"), the national form ("0151…") and the national
 * number without its trunk zero ("151…", which the parser takes too). Each is kept only if
 * libphonenumber, as the parser uses it, reads it from `homeCountry` as this number: a national
 * form of a foreign number is another number.
 */
function dialForms(digits: string, homeCountry: CountryCode): ReadonlySet<string> {
  const key = `${homeCountry}:${digits}`;
  const cached = formsCache.get(key);
  if (cached) return cached;
  const e164 = "+" + digits;
  const forms = new Set([e164]);
  const parsed = parsePhoneNumberFromString(e164);
  if (parsed) {
    const nsn = parsed.nationalNumber;
    for (const candidate of [`+${parsed.countryCallingCode}0${nsn}`, parsed.formatNational().replace(/\D/g, ""), nsn]) {
      if (parsePhoneNumberFromString(candidate, homeCountry)?.number === e164) forms.add(candidate);
    }
  }
  if (formsCache.size >= FORMS_CACHE_MAX) formsCache.delete(formsCache.keys().next().value!);
  formsCache.set(key, forms);
  return forms;
}

function spanSaid(pieces: Piece[], from: number, to: number): string {
  return pieces
    .slice(from, to + 1)
    .map((p) => p.said)
    .join(" ");
}

/**
 * The last piece of the shortest span from `i` that is the number, or -1. Spans start and end on
 * number parts. The shortest: what follows the number and adds nothing to it (the "plus" of the
 * next one) stays in the text; a correction that changes it ("0151 1234 5600, nein, 78") is taken.
 */
function shortestMatch(pieces: Piece[], i: number, read: (said: string) => Reading): number {
  let fillers = 0;
  for (let j = i; j < pieces.length && j - i < MAX_PIECES; j++) {
    if (!pieces[j]!.numberPart) {
      if (++fillers > MAX_FILLERS_IN_A_ROW) break;
      continue;
    }
    fillers = 0;
    const reading = read(spanSaid(pieces, i, j));
    if (reading === "match") return j;
    // Only a correction could bring it back ("0151 1234 5678 90, nein, 78"): rare enough to leave.
    if (reading === "longer") break;
  }
  return -1;
}

/**
 * "0151 12345678, nein, 0170 1234567" is the second number (the parser takes a fresh number after
 * a correction): the first stays in the text. The latest start after a filler or correction word
 * from which the span still is the number.
 */
function latestStart(pieces: Piece[], i: number, end: number, read: (said: string) => Reading): number {
  for (let k = end; k > i; k--) {
    if (pieces[k]!.numberPart && !pieces[k - 1]!.numberPart && read(spanSaid(pieces, k, end)) === "match") return k;
  }
  return i;
}

/** "(0151) 1234 5678": the opening parenthesis goes with the number it opens. */
function withParenthesis(text: string, from: number, to: number): [number, number] {
  const open = /\(\s*$/.exec(text.slice(Math.max(0, from - 3), from));
  const inside = text.slice(from, to);
  const close = inside.indexOf(")");
  const reopen = inside.indexOf("(");
  return open && close >= 0 && (reopen < 0 || close < reopen) ? [from - open[0].length, to] : [from, to];
}
