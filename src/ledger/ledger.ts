import { AgentError } from "../core/errors.js";
/**
 * The consent ledger: evidence that every SMS was wanted. Append-only and hash-chained: every
 * record carries the digest of the record before it (see chain.ts), so a record changed or
 * removed afterwards is found by `npm run ledger -- verify`. `append` resolves only once the
 * record is durable, and the send_sms action is released only after its `sms_approved`.
 */

/** Kinds a running service writes. */
export const CALL_KINDS = [
  "consent_asked",
  "consent_given",
  "consent_declined",
  /** The gate approved a send_sms; written before the action can leave. */
  "sms_approved",
  /** The transport wrote the approved send_sms into an HTTP answer or a WebSocket frame. */
  "sms_handed_over",
  /** The approved send_sms never left; `reason` says why. */
  "sms_not_sent",
  "sms_failed",
  "sms_cancelled",
  /** The caller (or an operator) put a number on the do-not-text list, or took it off. */
  "opt_out_added",
  "opt_out_removed",
] as const;

/** Kinds the ledger's own maintenance writes (the CLI): each is a chained record too. */
export const MAINTENANCE_KINDS = [
  /** The first record after a purge: holds the digest of the last record removed (`prev`). */
  "anchor",
  /** Appended at the end by a purge: how many records, through which position, the last digest. */
  "purge",
  /** Appended by an erasure: which records were tombstoned, for which (hashed) number. */
  "erasure",
] as const;

/** Kinds written before the approval/handover records (read, reported as legacy by verify). */
export const LEGACY_KINDS = ["sms_sent", "sms_withdrawn"] as const;

export const LEDGER_KINDS = [...CALL_KINDS, ...MAINTENANCE_KINDS, ...LEGACY_KINDS] as const;
export type LedgerKind = (typeof LEDGER_KINDS)[number];

/** Why an approved send never left (`sms_not_sent.reason`). */
export type SmsNotSentReason =
  | "connection_failed"
  | "call_ended"
  | "withdrawn_by_no"
  | "turn_given_up"
  | "commit_failed"
  | "lease_lost"
  | "instance_stopped";

export interface LedgerRecordInput {
  /**
   * Idempotent record id: the same id appended twice is stored once (a retried write, a turn run
   * again after its instance died). Built from the call id, the event position and the action,
   * e.g. `call-1:e7:sms_approved:0`.
   */
  id: string;
  kind: LedgerKind;
  callId: string;
  /** UTC, ISO 8601 (normalised to `Date#toISOString()` when stored). */
  at: string;
  /** AI Flow format; stored as a keyed hash when `ledger.numbers: hashed`. */
  number?: string;
  /** The exact consent question spoken; with `hashed` numbers the number is replaced by `{number}`. */
  question?: string;
  /** The caller's words in reply (the number replaced by `{number}` with `hashed` numbers). */
  reply?: string;
  outcome?: string;
  model?: string;
  /** consent_given / consent_declined: whether a listed rule (prompts/<lang>/sms/consent_answers.md) or the model decided. */
  decidedBy?: "rule" | "model";
  /** With `decidedBy: "rule"`: which rule, `yes:ja gerne` (the verdict and the list entry, normalised). */
  rule?: string;
  message?: string;
  /** For sms_approved: when the question was asked and answered. */
  consentAskedAt?: string;
  consentAnsweredAt?: string;
  detail?: string;
  /** The id of the record this one answers: consent_given → consent_asked, sms_approved → consent_given, an outcome → sms_approved. */
  ref?: string;
  /** For sms_not_sent. */
  reason?: string;
  /** For the maintenance kinds: what a purge or an erasure covered. */
  maintenance?: MaintenanceFacts;
}

/** What a purge (`through`, `digest`, `count`, `before`) or an erasure (`ids`, `count`) covered. */
export interface MaintenanceFacts {
  /** Purge: the last chain position removed. */
  through?: number;
  /** Purge: the digest of the last record removed (the anchor holds the same). */
  digest?: string;
  count?: number;
  /** Purge: the retention cut-off (records wholly before it were removed). */
  before?: string;
  /** Erasure: the ids of the records tombstoned. */
  ids?: string[];
}

/** A record as stored: its place in the chain and the link to the record before it. */
export interface LedgerRecord extends Omit<LedgerRecordInput, "id"> {
  /** Absent only on legacy records (written before ids). */
  id?: string;
  /** Position in the chain (1-based, gap-free until a purge). */
  seq: number;
  /** Hex SHA-256 of the canonical bytes of the record before (64 zeros for the first). Absent on legacy records. */
  prev?: string;
  /** The id of the key the number was hashed with (`hashed` numbers only). */
  keyId?: string;
  /** Random, per record with personal fields: salts the hash an erasure keeps of them. */
  salt?: string;
  /**
   * Set by an erasure: personal fields removed, their hash kept (`personal`); on an anchor (a
   * purge), the digest of the removed record it stands for (`digest`).
   */
  erased?: { personal?: string; digest?: string; by: string };
}

/** Who changed the do-not-text list: the caller in a call (opt_out_sms), or an operator (`npm run ledger -- optout`). */
export type OptOutBy = "caller" | "operator";

/**
 * One change of the do-not-text list. It is written as a chained record (`opt_out_added` /
 * `opt_out_removed`, `outcome` = who, `detail` = where) in the same write that changes the list.
 */
export interface OptOutChange {
  /** Idempotent record id, as for `append`. */
  id: string;
  add: boolean;
  /** AI Flow format; stored as the ledger stores numbers (a keyed hash with `hashed`). */
  number: string;
  by: OptOutBy;
  /** The call the caller asked in; an operator's change names no call ("operator"). */
  callId: string;
  at: string;
  /** Where the change came from, for the auditor: "the caller in call X", "the operator via the CLI". */
  detail: string;
  /** The caller's words (redacted like every reply with hashed numbers). */
  reply?: string;
}

/** What a change did: whether its record was written, and whether the number was listed before. */
export interface OptOutResult {
  written: boolean;
  wasListed: boolean;
}

/** One number on the list, as stored: the stored form only (a keyed hash with `hashed`: never the number). */
export interface OptOutEntry {
  number: string;
  keyId?: string;
  since: string;
  by: OptOutBy;
  /** The id of the opt_out_added record that put it there. */
  record: string;
}

export interface ConsentLedger {
  /** Resolves when the ledger can take records; start-up fails fast otherwise. */
  ready(): Promise<void>;
  /** Appends a chained record; a record whose `id` is already stored is not written again. */
  append(rec: LedgerRecordInput): Promise<void>;
  /**
   * One call's records in append order (numbers as stored: hashed where configured). Used to
   * settle what an instance that died mid-turn left behind; optional for a write-only ledger.
   */
  recordsOf?(callId: string): Promise<LedgerRecord[]>;
  /**
   * The do-not-text list (callers' own wishes; `tasks.sms.recipients.blockedNumbers` is the operator's static
   * list). Whether the number is on it, under any form it may be stored in (`NumberHasher.formsOf`:
   * also a form written before a key rotation). Rejects when the list cannot be read: the gate then
   * refuses the send (fail closed). Optional for a ledger that keeps no list; the service refuses to
   * start on such a ledger while `ledger.optOutList` is on.
   */
  optedOut?(number: string): Promise<boolean>;
  /** Changes the list and writes the change's chained record in the same write (lock, transaction). */
  setOptOut?(change: OptOutChange): Promise<OptOutResult>;
  /** The list as stored (`npm run ledger -- optout list`). */
  optOutEntries?(): Promise<OptOutEntry[]>;
  close(): Promise<void>;
}

/**
 * The ledger could not be reached, or did not take or answer a request: nothing is known to be
 * written, so the gate refuses a send that needs a record (fail closed) and the CLI exits non-zero.
 */
export class LedgerUnavailableError extends AgentError {
  readonly code = "ledger_unavailable";
}
