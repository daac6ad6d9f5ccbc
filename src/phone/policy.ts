import type { CountryCode, NumberType } from "libphonenumber-js/max";
import type { ParsedNumber } from "./number.js";

export interface RecipientPolicy {
  allowedCountries: CountryCode[];
  /** libphonenumber types that may receive an SMS; anything else (premium, shared cost, toll free, unknown …) is refused. */
  allowedNumberTypes: NumberType[];
  /** Exact numbers (AI Flow format) that never get an SMS. */
  blockedNumbers: string[];
}

export type RecipientRefusal = "invalid_number" | "country_not_allowed" | "number_type_not_allowed" | "number_blocked";

export type RecipientVerdict = { ok: true } | { ok: false; reason: RecipientRefusal; detail: string };

/** Pure check of one number against the configured recipient policy. */
export function checkRecipient(n: ParsedNumber | undefined, policy: RecipientPolicy): RecipientVerdict {
  if (!n || !n.valid) return { ok: false, reason: "invalid_number", detail: "not a valid phone number" };
  if (!n.country || !policy.allowedCountries.includes(n.country)) {
    return { ok: false, reason: "country_not_allowed", detail: `country ${n.country ?? "unknown"} is not allowed` };
  }
  if (!n.type || !policy.allowedNumberTypes.includes(n.type)) {
    return { ok: false, reason: "number_type_not_allowed", detail: `number type ${n.type ?? "UNKNOWN"} may not receive SMS` };
  }
  if (policy.blockedNumbers.includes(n.aiflow)) return { ok: false, reason: "number_blocked", detail: "number is on the block list" };
  return { ok: true };
}
