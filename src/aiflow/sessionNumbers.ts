import type { Session } from "./events.js";

/**
 * Which session field holds which party flips with the call's direction, and sipgate's field
 * names do not say so (docs' outbound guide, ai-flow-protocol.md §8):
 *
 * | direction          | flow's own number                 | remote party (caller / callee)   |
 * |--------------------|-----------------------------------|----------------------------------|
 * | inbound            | `phone_number`, `to_phone_number` | `from_phone_number`              |
 * | outbound           | `from_phone_number`               | `to_phone_number`, `phone_number` |
 *
 * A missing `direction` (older payloads) is read as inbound, as the engine does for new calls.
 * Both return AI Flow format (E.164 digits, no `+`), or undefined when the field is absent or
 * not a number (an anonymous caller).
 */

type SessionNumbers = Pick<Session, "direction" | "phone_number" | "from_phone_number" | "to_phone_number">;

/** The number the flow itself is reachable under: the caller ID to present when it transfers a call. */
export function flowOwnNumber(session: SessionNumbers): string | undefined {
  if (session.direction === "outbound") return normalizeAiFlowNumber(session.from_phone_number);
  return normalizeAiFlowNumber(session.phone_number) ?? normalizeAiFlowNumber(session.to_phone_number);
}

/** The person on the other end: who called in, or who the flow dialled. */
export function remotePartyNumber(session: SessionNumbers): string | undefined {
  if (session.direction === "outbound") return normalizeAiFlowNumber(session.to_phone_number) ?? normalizeAiFlowNumber(session.phone_number);
  return normalizeAiFlowNumber(session.from_phone_number);
}

/**
 * The wire format of numbers: E.164 digits without "+". Strips a leading "+" (sipgate's older
 * payloads) and anything that is not a digit; undefined when what is left is no such number.
 */
export function normalizeAiFlowNumber(raw: string | undefined | null): string | undefined {
  if (!raw) return undefined;
  const digits = raw.replace(/^\+/, "").replace(/[^\d]/g, "");
  return /^[1-9]\d{6,14}$/.test(digits) ? digits : undefined;
}
