import type { CountryCode } from "libphonenumber-js/max";
import { parseAiFlowNumber, parseCallerNumber } from "../phone/number.js";
import { NUMBER_PLACEHOLDER, redactNumber } from "../phone/redact.js";

/**
 * Numbers as the call review shows them: the country code and the last three digits
 * (`+49…678`), never more. Consistent within a call, so a reviewer sees that the SMS went to
 * the number the caller gave, and `--from-call` can put one test number for each.
 */
export function reviewMask(aiflowDigits: string): string {
  const digits = aiflowDigits.replace(/\D/g, "");
  if (digits.length < 6) return "…";
  // The international format starts with "+<calling code> ".
  const cc = /^\+(\d{1,3})\s/.exec(parseAiFlowNumber(digits)?.international ?? "")?.[1];
  return `${cc ? `+${cc}` : ""}…${digits.slice(-3)}`;
}

/** A masked number as it appears in review text: `+49…678`, or `…678` when the country is unknown. */
export const MASKED_NUMBER = /(\+\d{1,3})?…(\d{3})/g;

/** Any run of digits that could still be a number: at least 6 digits, with spaces, dashes, dots, slashes or parentheses between. */
const DIGIT_RUN = /\+?\d[\d\s\-./()]{4,}\d/g;

/**
 * Masks the numbers of one call in review text: every form of each known number (AI Flow
 * digits, national, read back in groups, said in words: src/phone/redact.ts) becomes its
 * mask; any other run of six or more digits is masked too (a number nobody used, said as digits).
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
    return out.replace(DIGIT_RUN, (run) => {
      const digits = run.replace(/\D/g, "");
      return digits.length >= 6 ? `…${digits.slice(-3)}` : run;
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
