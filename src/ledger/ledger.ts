/**
 * The consent ledger: evidence that every SMS was wanted. Append-only; `append` resolves
 * only once the record is durable, and the send_sms action is released only after that.
 */

export type LedgerKind =
  | "consent_asked"
  | "consent_given"
  | "consent_declined"
  | "sms_sent"
  | "sms_failed"
  | "sms_cancelled"
  /** A send_sms that was approved (and recorded as sms_sent) but never left: its turn's answer was dropped. */
  | "sms_withdrawn";

export interface LedgerRecordInput {
  kind: LedgerKind;
  callId: string;
  /** UTC, ISO 8601. */
  at: string;
  /** AI Flow format; stored hashed when the config says so. */
  number?: string;
  /** The exact consent question spoken. */
  question?: string;
  /** The caller's words in reply. */
  reply?: string;
  outcome?: string;
  model?: string;
  message?: string;
  /** For sms_sent: when the question was asked and answered. */
  consentAskedAt?: string;
  consentAnsweredAt?: string;
  detail?: string;
}

export interface LedgerRecord extends LedgerRecordInput {
  seq: number;
}

export interface ConsentLedger {
  /** Resolves when the ledger can take records; start-up fails fast otherwise. */
  ready(): Promise<void>;
  append(rec: LedgerRecordInput): Promise<void>;
  /**
   * One call's records in append order (numbers as stored: hashed where configured). Used to
   * settle what an instance that died mid-turn left behind; optional for a write-only ledger.
   */
  recordsOf?(callId: string): Promise<LedgerRecord[]>;
  close(): Promise<void>;
}
