import { createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import { backoffDelay, retryAfterMs } from "../src/outbox/backoff.js";
import { IDEMPOTENCY_KEY_HEADER, SIGNATURE_HEADER, SIGNATURE_TIMESTAMP_HEADER, signBody, verifySignature } from "../src/outbox/signing.js";
import { errorClass } from "../src/outbox/webhookPoster.js";
import { InvalidArgumentError } from "../src/core/errors.js";

const SECRET = "whsec_unit";
const BODY = '{"caller":"Jürgen","n":1}';
const TS = 1_700_000_000;

describe("webhook signatures", () => {
  it("are sha256=<hex HMAC-SHA-256(secret, `${timestamp}.${rawBody}`)> under the documented header names", () => {
    const expected = createHmac("sha256", SECRET).update(`${TS}.${BODY}`, "utf8").digest("hex");
    expect(signBody(SECRET, TS, BODY)).toBe(`sha256=${expected}`);
    expect(signBody(SECRET, TS, Buffer.from(BODY))).toBe(`sha256=${expected}`);
    expect([SIGNATURE_TIMESTAMP_HEADER, SIGNATURE_HEADER, IDEMPOTENCY_KEY_HEADER]).toEqual(["X-Signature-Timestamp", "X-Signature", "Idempotency-Key"]);
  });

  it("verify for the same secret, timestamp and bytes within the tolerance, and for nothing else", () => {
    const signature = signBody(SECRET, TS, BODY);
    const ok = (h: { timestamp: string | string[] | number | undefined; signature: string | string[] | undefined }, body: string | Buffer = BODY, nowSeconds = TS, toleranceSeconds?: number) =>
      verifySignature(SECRET, h, body, { nowSeconds, toleranceSeconds });
    expect(ok({ timestamp: String(TS), signature })).toBe(true);
    expect(ok({ timestamp: TS, signature })).toBe(true);
    expect(ok({ timestamp: String(TS), signature }, Buffer.from(BODY))).toBe(true);
    expect(ok({ timestamp: String(TS), signature: signature.toUpperCase().replace("SHA256=", "sha256=") })).toBe(true);
    // Tolerance, either way (default 300 s).
    expect(ok({ timestamp: String(TS), signature }, BODY, TS + 300)).toBe(true);
    expect(ok({ timestamp: String(TS), signature }, BODY, TS + 301)).toBe(false);
    expect(ok({ timestamp: String(TS), signature }, BODY, TS - 301)).toBe(false);
    expect(ok({ timestamp: String(TS), signature }, BODY, TS + 1000, 1000)).toBe(true);
    // Another body, timestamp or secret.
    expect(ok({ timestamp: String(TS), signature }, BODY + " ")).toBe(false);
    expect(ok({ timestamp: String(TS + 1), signature }, BODY, TS + 1)).toBe(false);
    expect(verifySignature("other", { timestamp: String(TS), signature }, BODY, { nowSeconds: TS })).toBe(false);
    // Malformed or missing: false, never a throw (timingSafeEqual throws on unequal lengths).
    for (const h of [
      { timestamp: undefined, signature },
      { timestamp: String(TS), signature: undefined },
      { timestamp: "17e8", signature },
      { timestamp: `${TS}.5`, signature },
      { timestamp: [String(TS), String(TS)], signature },
      { timestamp: String(TS), signature: [signature, signature] },
      { timestamp: String(TS), signature: signature.slice("sha256=".length) },
      { timestamp: String(TS), signature: signature.slice(0, -2) },
      { timestamp: String(TS), signature: `${signature}00` },
      { timestamp: String(TS), signature: "sha256=" + "zz".repeat(32) },
      { timestamp: String(TS), signature: "sha1=" + "00".repeat(20) },
    ]) {
      expect(ok(h), JSON.stringify(h)).toBe(false);
    }
  });

  it("refuses to sign with a timestamp that is not whole seconds", () => {
    expect(() => signBody(SECRET, 1.5, BODY)).toThrow(InvalidArgumentError);
    expect(() => signBody(SECRET, Date.now() * Number.MAX_SAFE_INTEGER, BODY)).toThrow(InvalidArgumentError);
  });
});

describe("backoff", () => {
  const b = { initialMs: 1000, maxMs: 30_000, factor: 2 };
  it("grows by factor per failed attempt, is capped at maxMs, and jitters within the upper half (equal jitter)", () => {
    expect([0, 1, 2, 3, 4, 5, 10].map((n) => backoffDelay(n, b, () => 0.999999))).toEqual([1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    expect([0, 1, 2, 3, 4, 5, 10].map((n) => backoffDelay(n, b, () => 0))).toEqual([500, 1000, 2000, 4000, 8000, 15000, 15000]);
    for (let i = 0; i < 200; i++) {
      const d = backoffDelay(3, b);
      expect(d).toBeGreaterThanOrEqual(4000);
      expect(d).toBeLessThanOrEqual(8000);
    }
  });

  it("honours Retry-After in seconds, capped at maxMs; ignores dates and junk", () => {
    expect(retryAfterMs("7", 30_000)).toBe(7000);
    expect(retryAfterMs(" 0 ", 30_000)).toBe(0);
    expect(retryAfterMs("3600", 30_000)).toBe(30_000);
    expect(retryAfterMs("Wed, 21 Oct 2015 07:28:00 GMT", 30_000)).toBeUndefined();
    expect(retryAfterMs("-1", 30_000)).toBeUndefined();
    expect(retryAfterMs("1.5", 30_000)).toBeUndefined();
    expect(retryAfterMs(null, 30_000)).toBeUndefined();
  });
});

describe("errorClass", () => {
  it("names a failure by timeout, error code or class, never by its message", () => {
    expect(errorClass(new DOMException("The operation was aborted due to timeout", "TimeoutError"))).toBe("timeout");
    const refused = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), { code: "ECONNREFUSED" });
    expect(errorClass(new TypeError("fetch failed", { cause: refused }))).toBe("ECONNREFUSED");
    expect(errorClass(new TypeError("fetch failed", { cause: new RangeError("https://user:secret@example.com") }))).toBe("RangeError");
    expect(errorClass(new TypeError("https://user:secret@example.com"))).toBe("TypeError");
    expect(errorClass("just a string")).toBe("string");
  });
});
