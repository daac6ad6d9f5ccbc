import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { AgentError } from "../core/errors.js";

/**
 * Keyed hashing of phone numbers (`ledger.numbers: hashed`). A plain SHA-256 of a number is
 * reversed by trying the few billion numbers there are; an HMAC is not, without the key. The key
 * comes from the environment, never from the config file or the ledger:
 *
 *   LEDGER_HASH_KEY=<id>:<secret>                  the key new records are hashed with
 *   LEDGER_HASH_KEYS_OLD=<id>:<secret>,<id>:<secret>  older keys, to find records written before a rotation
 *
 * Each record stores its key's id (`keyId`), so records from before a rotation stay findable
 * (export, erase, the do-not-text list) as long as their key is listed in LEDGER_HASH_KEYS_OLD.
 */

export const HMAC_PREFIX = "hmac-sha256:";
export const LEGACY_PREFIX = "sha256:";
/** At least 32 characters (some 190 bits as random base64): a short key is guessed as a number is. */
export const MIN_SECRET_LENGTH = 32;
const KEY_ID = /^[A-Za-z0-9._-]{1,32}$/;

export interface HashKey {
  id: string;
  secret: string;
}

export class HashKeyError extends AgentError {
  readonly code = "hash_key";
}

function parseKey(variable: string, text: string): HashKey {
  const colon = text.indexOf(":");
  if (colon < 0) throw new HashKeyError(`${variable} must be <id>:<secret> (e.g. 2026-12:$(openssl rand -base64 33)); no ":" found`);
  const id = text.slice(0, colon).trim();
  const secret = text.slice(colon + 1);
  if (!KEY_ID.test(id)) throw new HashKeyError(`${variable}: key id "${id}" must be 1–32 letters, digits, ".", "_" or "-"`);
  if (secret.length < MIN_SECRET_LENGTH) throw new HashKeyError(`${variable}: the secret of key "${id}" has ${secret.length} characters; use at least ${MIN_SECRET_LENGTH} (openssl rand -base64 33)`);
  return { id, secret };
}

/** The keys from the environment; throws HashKeyError (one line naming the variable) when missing or malformed. */
export function hashKeysFromEnv(env: NodeJS.ProcessEnv): { current: HashKey; older: HashKey[] } {
  const raw = env.LEDGER_HASH_KEY;
  if (!raw?.trim()) throw new HashKeyError("ledger.numbers is hashed but LEDGER_HASH_KEY is not set: set it to <id>:<secret> (at least 32 characters of secret), or use ledger.numbers: full");
  const current = parseKey("LEDGER_HASH_KEY", raw.trim());
  const older = (env.LEDGER_HASH_KEYS_OLD ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => parseKey("LEDGER_HASH_KEYS_OLD", s));
  const ids = new Set([current.id]);
  for (const k of older) {
    if (ids.has(k.id)) throw new HashKeyError(`LEDGER_HASH_KEYS_OLD: key id "${k.id}" is given twice (or is the current key's id)`);
    ids.add(k.id);
  }
  return { current, older };
}

/**
 * How the ledger writes numbers: in full, or keyed-hashed. `store` gives the stored form and the
 * key id; `matches` says whether a stored form is this number (any known key, or a legacy plain
 * SHA-256); `storeKey` is the form for shared-store keys (limits, lists): the same keyed hash.
 */
export class NumberHasher {
  private constructor(
    readonly mode: "full" | "hashed",
    private readonly current?: HashKey,
    private readonly keys: ReadonlyMap<string, HashKey> = new Map(),
  ) {}

  static full(): NumberHasher {
    return new NumberHasher("full");
  }

  static keyed(current: HashKey, older: HashKey[] = []): NumberHasher {
    return new NumberHasher("hashed", current, new Map([current, ...older].map((k) => [k.id, k])));
  }

  /** `full`, or `hashed` with the keys from the environment (throws HashKeyError without them). */
  static fromConfig(numbers: "full" | "hashed", env: NodeJS.ProcessEnv): NumberHasher {
    if (numbers === "full") return NumberHasher.full();
    const { current, older } = hashKeysFromEnv(env);
    return NumberHasher.keyed(current, older);
  }

  get keyId(): string | undefined {
    return this.current?.id;
  }

  /** The stored form of a number and the id of the key that made it. */
  store(number: string): { number: string; keyId?: string } {
    if (this.mode === "full" || !this.current) return { number };
    return { number: hmac(this.current.secret, number), keyId: this.current.id };
  }

  /** The number's form in a shared-store key: the keyed hash (hex only), or the number itself with `full`. */
  storeKey(number: string): string {
    return this.mode === "full" || !this.current ? number : hmac(this.current.secret, number).slice(HMAC_PREFIX.length);
  }

  /** Every stored form this number may have in a record (for export, erase, the do-not-text list). */
  formsOf(number: string): string[] {
    const forms = [number, LEGACY_PREFIX + createHash("sha256").update(number).digest("hex")];
    for (const k of this.keys.values()) forms.push(hmac(k.secret, number));
    return forms;
  }

  /** Whether a record's stored number is this number. */
  matches(stored: string | undefined, number: string, keyId?: string): boolean {
    if (stored === undefined) return false;
    if (stored.startsWith(HMAC_PREFIX)) {
      const key = keyId === undefined ? undefined : this.keys.get(keyId);
      const candidates = key ? [key] : [...this.keys.values()];
      return candidates.some((k) => safeEqual(stored, hmac(k.secret, number)));
    }
    if (stored.startsWith(LEGACY_PREFIX)) return safeEqual(stored, LEGACY_PREFIX + createHash("sha256").update(number).digest("hex"));
    return stored === number;
  }

  /** Whether a record's key id is known (a record hashed with a key no longer configured cannot be matched). */
  knowsKey(keyId: string): boolean {
    return this.keys.has(keyId);
  }
}

function hmac(secret: string, number: string): string {
  return HMAC_PREFIX + createHmac("sha256", secret).update(number).digest("hex");
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
