import { createHmac, timingSafeEqual } from "node:crypto";
import { InvalidArgumentError } from "../core/errors.js";

/**
 * Webhook signatures, Stripe-style: the receiver recomputes an HMAC over the timestamp and the raw
 * body it received, so a body changed in transit or replayed later than the tolerance is refused.
 *
 *   X-Signature-Timestamp: <unix seconds>
 *   X-Signature: sha256=<hex HMAC-SHA-256(secret, "<timestamp>.<raw body>")>
 *   Idempotency-Key: <outbox key>   (the same on every retry: receivers dedupe on it)
 */

export const SIGNATURE_TIMESTAMP_HEADER = "X-Signature-Timestamp";
export const SIGNATURE_HEADER = "X-Signature";
export const IDEMPOTENCY_KEY_HEADER = "Idempotency-Key";

const SCHEME = "sha256=";

/** `sha256=<hex>` over `${timestampSeconds}.${rawBody}`. */
export function signBody(secret: string, timestampSeconds: number, rawBody: string | Buffer): string {
  if (!Number.isSafeInteger(timestampSeconds) || timestampSeconds < 0) throw new InvalidArgumentError(`signBody: timestamp must be whole unix seconds, got ${timestampSeconds}`);
  return SCHEME + hmac(secret, String(timestampSeconds), rawBody).toString("hex");
}

/** A header value as Node gives it (IncomingHttpHeaders); an array (the header sent twice) is refused. */
type HeaderValue = string | string[] | number | null | undefined;

export interface VerifyOptions {
  /** The receiver's clock, unix seconds. */
  nowSeconds: number;
  /** Largest accepted difference between the timestamp and nowSeconds, either way (default 300). */
  toleranceSeconds?: number;
}

/**
 * True only when the signature is ours over exactly this body and timestamp, and the timestamp is
 * within the tolerance of nowSeconds. Constant-time comparison. `rawBody` must be the bytes as
 * received, before any JSON parsing.
 */
export function verifySignature(secret: string, headers: { timestamp: HeaderValue; signature: HeaderValue }, rawBody: string | Buffer, opts: VerifyOptions): boolean {
  const { timestamp, signature } = headers;
  const tolerance = opts.toleranceSeconds ?? 300;
  const ts = typeof timestamp === "number" ? String(timestamp) : timestamp;
  if (typeof ts !== "string" || !/^\d{1,15}$/.test(ts)) return false;
  if (Math.abs(opts.nowSeconds - Number(ts)) > tolerance) return false;
  if (typeof signature !== "string" || !signature.startsWith(SCHEME)) return false;
  const given = signature.slice(SCHEME.length);
  if (!/^[0-9a-f]{64}$/i.test(given)) return false;
  // Both 32 bytes by now, as timingSafeEqual requires.
  return timingSafeEqual(Buffer.from(given, "hex"), hmac(secret, ts, rawBody));
}

function hmac(secret: string, timestamp: string, rawBody: string | Buffer): Buffer {
  return createHmac("sha256", secret).update(`${timestamp}.`).update(rawBody).digest();
}
