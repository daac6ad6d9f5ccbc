import { createHash, randomBytes } from "node:crypto";
import type { CountryCode } from "libphonenumber-js/max";
import { redactNumber } from "../phone/redact.js";
import type { LedgerRecord, LedgerRecordInput } from "./ledger.js";
import type { NumberHasher } from "./numberHash.js";
import { AgentError } from "../core/errors.js";

/**
 * The hash chain (in the manner of Certificate Transparency's append-only logs): every record
 * carries `prev`, the SHA-256 of the canonical bytes of the record before it. Anyone holding the
 * ledger can recompute the chain; a record changed, inserted or removed afterwards breaks it at
 * that point. An erasure keeps the chain whole by keeping each erased record's digest (`erased`).
 */

export const GENESIS = "0".repeat(64);

/** Fields an erasure removes: everything that says who was called or what was said. */
export const PERSONAL_FIELDS = ["number", "keyId", "question", "reply", "message", "detail"] as const;

/** Timestamp fields, stored as `Date#toISOString()` so every store gives back the same bytes. */
const TIME_FIELDS = ["at", "consentAskedAt", "consentAnsweredAt"] as const;

/**
 * The canonical bytes of a value: JSON with object keys sorted, `undefined` left out. Records
 * hold only strings, integers, string arrays and small objects, so this is unambiguous.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v)).join(",")}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
}

/**
 * The digest of a record, in two levels so an erasure can keep it verifiable: the personal
 * fields (with the record's random `salt`, so their hash cannot be guessed from a number) are
 * hashed on their own, and the digest covers every other field and that hash. A tombstone keeps
 * the personal hash (`erased.personal`): every field it still shows stays covered by the chain.
 * An anchor stands for a removed record and carries that record's digest (`erased.digest`).
 */
export function digestOf(record: LedgerRecord): string {
  if (record.kind === "anchor" && record.erased?.digest) return record.erased.digest;
  const rest: Record<string, unknown> = { ...record, erased: undefined, salt: undefined };
  for (const f of PERSONAL_FIELDS) rest[f] = undefined;
  const personal = record.erased ? record.erased.personal : personalDigestOf(record);
  return sha256(canonicalJson({ ...rest, ...(personal ? { personal } : {}) }));
}

/** The hash of a record's personal fields and salt; undefined when it has none. */
export function personalDigestOf(record: LedgerRecord): string | undefined {
  const fields: Record<string, unknown> = {};
  for (const f of [...PERSONAL_FIELDS, "salt"] as const) if (record[f] !== undefined) fields[f] = record[f];
  return Object.keys(fields).length ? sha256(canonicalJson(fields)) : undefined;
}

export function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

/** Thrown for a record the ledger will not write (a bad timestamp): the gate then refuses the send. */
export class LedgerRecordError extends AgentError {
  readonly code = "ledger_record";
}

/** How personal text is stored with hashed numbers: the number replaced by `{number}`. */
export type Redactor = (text: string, number: string) => string;

/** Every form of the number (written, read back, said in words) replaced by `{number}`; national forms for `homeCountry`. */
export function numberRedactor(homeCountry: CountryCode = "DE"): Redactor {
  return (text, number) => redactNumber(text, number, homeCountry);
}

/** Digits with the separators people write numbers with; six or more digits of them are taken as a phone number. */
const DIGIT_RUN = /\+?\d[\d\s\-/.()]*\d/g;
const MIN_NUMBER_DIGITS = 6;

/**
 * The record as it is stored, before its place in the chain is known: timestamps normalised,
 * the number hashed and every text field redacted when numbers are hashed, absent fields left out.
 */
export function prepareRecord(input: LedgerRecordInput, hasher: NumberHasher, redact: Redactor = numberRedactor()): Omit<LedgerRecord, "seq" | "prev"> {
  const rec: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(input)) if (v !== undefined) rec[k] = typeof v === "string" ? storable(v) : v;
  for (const f of TIME_FIELDS) {
    const v = rec[f];
    if (v === undefined) continue;
    const t = typeof v === "string" ? Date.parse(v) : NaN;
    if (Number.isNaN(t)) throw new LedgerRecordError(`ledger record ${input.id}: ${f} "${String(v)}" is not a timestamp`);
    rec[f] = new Date(t).toISOString();
  }
  if (!input.id) throw new LedgerRecordError(`ledger record of kind ${input.kind} has no id`);
  if (hasher.mode === "hashed") {
    if (input.number !== undefined) {
      const stored = hasher.store(input.number);
      rec.number = stored.number;
      if (stored.keyId) rec.keyId = stored.keyId;
    }
    for (const f of ["question", "reply", "message", "detail"] as const) {
      if (typeof rec[f] !== "string") continue;
      const own = input.number !== undefined ? redact(rec[f], input.number) : rec[f];
      // Any other number written in digits (a number the caller began to dictate, then dropped).
      rec[f] = own.replace(DIGIT_RUN, (run) => (run.replace(/\D/g, "").length >= MIN_NUMBER_DIGITS ? "{digits}" : run));
    }
  }

  // A random salt for the personal fields' hash, which an erasure keeps: without it, the hash of a
  // number or a short reply could be found by trying.
  if (PERSONAL_FIELDS.some((f) => rec[f] !== undefined)) rec.salt = randomBytes(16).toString("hex");
  return rec as Omit<LedgerRecord, "seq" | "prev">;
}

/**
 * Text every store gives back unchanged: a lone surrogate (half an emoji) becomes U+FFFD, as
 * PostgreSQL's UTF-8 would make it; otherwise the digest sealed here differs from the one
 * computed over the row read back. (NUL stays: PostgreSQL refuses it, and the append fails.)
 */
function storable(text: string): string {
  return text.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, "\uFFFD");
}

/** The record with its place in the chain. */
export function sealRecord(prepared: Omit<LedgerRecord, "seq" | "prev">, seq: number, prev: string): LedgerRecord {
  return { seq, ...prepared, prev };
}

/** The record with its personal fields (and salt) removed and their hash kept: the chain still verifies, over every field left. */
export function tombstone(record: LedgerRecord, erasureId: string): LedgerRecord {
  const personal = record.erased ? record.erased.personal : personalDigestOf(record);
  const out: LedgerRecord = { ...record, erased: { ...(personal ? { personal } : {}), by: erasureId } };
  for (const f of PERSONAL_FIELDS) delete out[f];
  delete out.salt;
  return out;
}
