import { isNumberPart, spokenToDialString } from "./spoken.js";

/** Letters, digits and "+", as the number parser reads them (src/phone/redact.ts). */
const PIECE = /\p{L}+|\p{N}+|\+/gu;

/**
 * Hesitations a caller makes between the groups of a number ("null eins sieben eins äh eins zwei
 * drei"): the parser reads past them, so a run of number parts goes on across one; otherwise each
 * group on its own is too short to count as a number and the whole number stays readable.
 */
const HESITATION = /^(?:ä+h*m*|ö+h*m*|e+h+m*|h+m+|u+h+m*|u+m+|e+r+m+)$/u;

/**
 * Replaces every run of number parts (digits or number words, across separators and single
 * hesitations) that makes at least `minDigits` digits with `mask(said, dialString)`. For the
 * numbers nobody has parsed yet: the call review and the trace scrubber mask the same runs.
 */
export function maskNumberRuns(text: string, minDigits: number, mask: (said: string, dial: string) => string): string {
  const pieces = [...text.matchAll(PIECE)].map((m) => {
    const word = m[0].toLowerCase();
    return { start: m.index, end: m.index + m[0].length, part: isNumberPart(word), hesitation: HESITATION.test(word) };
  });
  let out = "";
  let copied = 0;
  for (let i = 0; i < pieces.length; i++) {
    if (!pieces[i]!.part) continue;
    let j = i;
    for (;;) {
      if (pieces[j + 1]?.part) j++;
      else if (pieces[j + 1]?.hesitation && pieces[j + 2]?.part) j += 2;
      else break;
    }
    const said = text.slice(pieces[i]!.start, pieces[j]!.end);
    const dial = spokenToDialString(said);
    if (dial.replace("+", "").length >= minDigits) {
      out += text.slice(copied, pieces[i]!.start) + mask(said, dial);
      copied = pieces[j]!.end;
    }
    i = j;
  }
  return out + text.slice(copied);
}
