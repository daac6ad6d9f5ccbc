import { parsePhoneNumberFromString, type CountryCode, type NumberType } from "libphonenumber-js/max";
import { normalizeAiFlowNumber } from "../aiflow/sessionNumbers.js";
import { spokenToDialString } from "./spoken.js";

/** A number we could parse, in every form the service needs. */
export interface ParsedNumber {
  /** AI Flow's format: E.164 digits without "+". */
  aiflow: string;
  e164: string;
  country: CountryCode | undefined;
  type: NumberType | undefined;
  valid: boolean;
  /** Formatted for reading back to the caller in digit groups. */
  national: string;
  international: string;
}

// The wire format belongs to the protocol layer; phone code builds on it.
export { normalizeAiFlowNumber };

/**
 * Parse a caller-given number. `defaultCountry` applies to national formats ("0151 …").
 * Returns undefined when nothing number-like is there.
 */
export function parseCallerNumber(input: string, defaultCountry: CountryCode): ParsedNumber | undefined {
  const dial = spokenToDialString(input);
  if (dial.replace("+", "").length < 3) return undefined;
  const parsed = parsePhoneNumberFromString(dial, defaultCountry);
  if (!parsed) return undefined;
  return {
    aiflow: parsed.number.replace(/^\+/, ""),
    e164: parsed.number,
    country: parsed.country,
    type: parsed.getType(),
    valid: parsed.isValid(),
    national: parsed.formatNational(),
    international: parsed.formatInternational(),
  };
}

/** Numbers already parsed (every turn reads the caller's and the SMS number back): bounded, oldest out first. */
const parsedCache = new Map<string, ParsedNumber | undefined>();
const PARSED_CACHE_MAX = 10_000;

/** Parse a number that is already in AI Flow format (session numbers, send_sms recipients). */
export function parseAiFlowNumber(aiflow: string): ParsedNumber | undefined {
  const digits = normalizeAiFlowNumber(aiflow);
  if (!digits) return undefined;
  if (parsedCache.has(digits)) return parsedCache.get(digits);
  const parsed = parseCallerNumber("+" + digits, "DE");
  if (parsedCache.size >= PARSED_CACHE_MAX) parsedCache.delete(parsedCache.keys().next().value!);
  parsedCache.set(digits, parsed);
  return parsed;
}

/**
 * The number as the agent reads it back: digit by digit, in groups, so TTS does not say
 * "one hundred fifty-one". Domestic numbers in national format, others with "+".
 */
export function spokenDigitGroups(n: ParsedNumber, homeCountry: CountryCode): string {
  const formatted = n.country === homeCountry ? n.national : n.international;
  return formatted
    .replace(/[()]/g, "")
    .split(/[\s\-]+/)
    .filter(Boolean)
    .flatMap(chunkLongGroup)
    .map((group) => group.split("").join(" "))
    .join(", ");
}

/** Groups longer than five digits are hard to follow by ear: split into threes, never leaving one digit alone. */
function chunkLongGroup(group: string): string[] {
  if (group.length <= 5) return [group];
  const chunks = group.match(/.{1,3}/g) ?? [group];
  if (chunks.length > 1 && chunks[chunks.length - 1]!.length === 1) {
    const last = chunks.pop()!;
    const prev = chunks.pop()!;
    chunks.push(prev.slice(0, 2), prev.slice(2) + last);
  }
  return chunks;
}

/** For logs: everything but the last three digits hidden. */
export function maskNumber(n: string | undefined | null): string {
  if (!n) return "";
  const digits = n.replace(/[^\d]/g, "");
  if (digits.length <= 3) return "***";
  return "*".repeat(digits.length - 3) + digits.slice(-3);
}
