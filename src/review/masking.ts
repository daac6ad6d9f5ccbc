import type { CountryCode } from "libphonenumber-js/max";
import { parseAiFlowNumber, parseCallerNumber } from "../phone/number.js";
import { NUMBER_PLACEHOLDER, redactNumber } from "../phone/redact.js";
import { maskNumberRuns } from "../phone/numberRuns.js";

/**
 * Numbers as the call review shows them: the country code, whether it is a landline, and the
 * last three digits (`+49…678`, `+49(fixed)…678`), never more. Consistent within a call, so a reviewer sees that the SMS went to
 * the number the caller gave, and `--from-call` can put one test number for each.
 */
export function reviewMask(aiflowDigits: string): string {
  const digits = aiflowDigits.replace(/\D/g, "");
  if (digits.length < 6) return "…";
  const parsed = parseAiFlowNumber(digits);
  // The international format starts with "+<calling code> ".
  const cc = /^\+(\d{1,3})\s/.exec(parsed?.international ?? "")?.[1];
  // A landline stays a landline in a test made from the call (the SMS flow offers only mobiles).
  const fixed = parsed?.type === "FIXED_LINE" ? "(fixed)" : "";
  return `${cc ? `+${cc}` : ""}${fixed}…${digits.slice(-3)}`;
}

/** A masked number as it appears in review text: `+49…678`, `+49(fixed)…678` for a landline, or `…678` when the country is unknown. */
export const MASKED_NUMBER = /(\+\d{1,3})?(\(fixed\))?…(\d{3})/g;

/** Digits from which a run of number words or digits counts as a number said. */
const MIN_NUMBER_DIGITS = 6;

/**
 * Masks the numbers of one call in review text: every form of each known number (AI Flow
 * digits, national, read back in groups, said in words: src/phone/redact.ts) becomes its
 * mask; any other run of number words or digits (across hesitations) that makes six or more digits is masked too (a
 * number no tool took, or one said before the turn that parses it ran): as its own mask when it
 * parses as a number of the home country, so it matches the mask it gets once known.
 */
export class NumberMasker {
  private readonly known = new Set<string>();

  constructor(private readonly homeCountry: CountryCode) {}

  /** A number of the call (AI Flow format), from the session, an action or a tool's argument. */
  add(aiflow: string | undefined | null): void {
    const digits = aiflow?.replace(/\D/g, "");
    if (digits && digits.length >= 6) this.known.add(digits);
  }

  /** A number as someone said or typed it (a tool argument): known once it parses. */
  addSaid(said: string): void {
    const parsed = parseCallerNumber(said, this.homeCountry);
    if (parsed?.valid) this.add(parsed.aiflow);
  }

  mask(text: string): string {
    let out = text;
    for (const digits of this.known) {
      const redacted = redactNumber(out, digits, this.homeCountry);
      if (redacted !== out) out = redacted.split(NUMBER_PLACEHOLDER).join(reviewMask(digits));
    }
    return this.maskNumberRuns(out);
  }

  private maskNumberRuns(text: string): string {
    return maskNumberRuns(text, MIN_NUMBER_DIGITS, (said, dial) => {
      const parsed = parseCallerNumber(said, this.homeCountry);
      return parsed?.valid ? reviewMask(parsed.aiflow) : `…${dial.slice(-3)}`;
    });
  }

  /** Masks every string inside a JSON value (tool arguments). */
  maskValue(value: unknown): unknown {
    if (typeof value === "string") return this.mask(value);
    if (Array.isArray(value)) return value.map((v) => this.maskValue(v));
    if (value && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, this.maskValue(v)]));
    return value;
  }
}
