import { createHash, timingSafeEqual } from "node:crypto";

/**
 * Constant-time token comparison. Both sides are hashed first so the comparison takes the
 * same time whatever the lengths, and a wrong length leaks nothing either.
 */
export function tokenMatches(given: string | undefined, expected: string): boolean {
  if (given === undefined) return false;
  const a = createHash("sha256").update(given).digest();
  const b = createHash("sha256").update(expected).digest();
  return timingSafeEqual(a, b);
}
