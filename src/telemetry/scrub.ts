import type { CountryCode } from "libphonenumber-js/max";
import { maskNumber } from "../phone/number.js";
import { maskNumberRuns } from "../phone/numberRuns.js";
import { redactNumber } from "../phone/redact.js";

/**
 * Five or more digits in one run, with the separators numbers are written and read back with
 * (spaces, commas of the read-back groups, dashes, slashes, dots, parentheses) and an optional "+"
 * or an opening parenthesis: E.164, national, AI Flow's digits, "0 1 5 1 1, 2 3 4, 5 6, 7 8".
 */
const DIGIT_RUN = /(?:\+|\()?\d(?:[\s,./()-]{0,3}\d){4,}/g;
/** The same five digits for a run said in words or across hesitations (src/phone/numberRuns.ts). */
const MIN_RUN_DIGITS = 5;

/**
 * What a span may carry of a text: every digit run that could be a number masked the way logs mask
 * numbers (the last three digits), in words or across hesitations too, the call's own numbers in any form (said in words too) replaced
 * by `{number}`, and the secrets the service knows (the AI Flow token, the model key) removed.
 */
export class Scrubber {
  private readonly secrets: string[];

  constructor(
    secrets: ReadonlyArray<string | undefined>,
    private readonly homeCountry: CountryCode,
  ) {
    // Short values would blank out ordinary words; the service refuses tokens that short anyway.
    this.secrets = secrets.filter((s): s is string => typeof s === "string" && s.length >= 6);
  }

  /** Any attribute text (a reason's detail, an error message). */
  text(value: string, numbers: readonly string[] = []): string {
    let out = value;
    for (const s of this.secrets) if (out.includes(s)) out = out.split(s).join("[redacted]");
    // Said in words, a number takes several words: identifiers (event types, steps, tools, reasons) skip the costly parse.
    const spaced = /\s/.test(out);
    if (spaced) for (const n of numbers) out = redactNumber(out, n, this.homeCountry);
    out = out.replace(DIGIT_RUN, (run) => maskNumber(run));
    // Any other number (the SMS target the caller said) in words, or with a hesitation between its
    // groups: after the digit runs, whose masks ("****123") keep too few digits to count again.
    return spaced ? maskNumberRuns(out, MIN_RUN_DIGITS, (_said, dial) => maskNumber(dial)) : out;
  }
}
