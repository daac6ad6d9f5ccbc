import type { CountryCode } from "libphonenumber-js/max";
import type { SmsContext } from "./types.js";
import { parseAiFlowNumber, spokenDigitGroups } from "../../phone/number.js";
import { checkRecipient } from "../../phone/policy.js";

/** How the agent reads a stored (AI Flow format) number aloud. */
export function speakable(aiflowNumber: string | undefined, home: CountryCode): string {
  if (!aiflowNumber) return "";
  const p = parseAiFlowNumber(aiflowNumber);
  return p ? spokenDigitGroups(p, home) : aiflowNumber.split("").join(" ");
}

/** The caller's own number, if it may receive an SMS under the recipient policy. */
export function ownNumberCandidate(ctx: SmsContext): string | undefined {
  const own = ctx.state.callerNumber;
  if (!own) return undefined;
  return checkRecipient(parseAiFlowNumber(own), ctx.services.config.recipients).ok ? own : undefined;
}
