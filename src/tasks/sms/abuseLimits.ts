import type { SmsConfig } from "./config.js";
import type { NumberHasher } from "../../ledger/numberHash.js";
import type { LimitSpec } from "../../store/rateLimiter.js";

export type LimitKind = "recipient" | "caller" | "prefix" | "country" | "global";

/**
 * The windows one SMS counts against: its recipient, the caller asking for it, the number
 * range (toll-fraud rings cycle through neighbouring numbers), the destination country, and
 * everything together. Refused when any one is full. Numbers (and the range's prefix) are in the
 * keys as `hasher` stores them: keyed-hashed with `ledger.numbers: hashed`, so the shared store
 * holds no number a limit was counted for.
 */
export function abuseLimits(config: SmsConfig, hasher: NumberHasher, recipient: string, country: string, caller: string | undefined): Array<{ kind: LimitKind; spec: LimitSpec }> {
  const a = config.abuse;
  const win = (w: { max: number; windowSeconds: number }) => ({ max: w.max, windowMs: w.windowSeconds * 1000 });
  return [
    { kind: "recipient", spec: { key: `sms:to:${hasher.storeKey(recipient)}`, ...win(config.recipients.perRecipient) } },
    { kind: "caller", spec: { key: `sms:from:${caller ? hasher.storeKey(caller) : "anonymous"}`, ...win(a.perCaller) } },
    { kind: "prefix", spec: { key: `sms:range:${hasher.storeKey(recipient.slice(0, -a.perPrefix.prefixDigits))}`, ...win(a.perPrefix) } },
    { kind: "country", spec: { key: `sms:country:${country}`, ...win(a.perCountry) } },
    { kind: "global", spec: { key: "sms:global", ...win(a.global) } },
  ];
}

/**
 * Whose hits the limiter counts one SMS under: the call and the recipient (as `hasher` stores it).
 * A call sends to a number one SMS at a time, so a withdrawn send gives back the latest hits of
 * its holder (`release`).
 */
export function smsHolder(callId: string, recipient: string, hasher: NumberHasher): string {
  return `sms:${callId}:${hasher.storeKey(recipient)}`;
}
