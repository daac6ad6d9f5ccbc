import type { SmsFailureReason } from "../../aiflow/events.js";
import { initialCallCore, type CallCore, type CallState } from "../../core/callState.js";
import type { SmsTaskResult } from "./result.js";

/** The consent question as it was put to the caller, and their answer. */
export interface ConsentState {
  /** AI Flow format number the question named. */
  number: string;
  /** Exact wording spoken. */
  question: string;
  askedTurn: number;
  askedAt: string;
  /** `CallState.spoken` right after the question: it was the caller's last line heard iff this equals `spokenBeforeTurn` of the answer. */
  spokenIndex: number;
  /** The caller barged into the question, so it may not have been heard in full. */
  interrupted: boolean;
  /** Keys were pressed after the question (a keypad entry begun): the caller's next words are not their first reaction to it, so no rule decides them. */
  keyed?: boolean;
  /** `rule`: the listed answer that decided it (no model was asked), e.g. "yes:ja gerne". */
  answer?: { consented: boolean; reply: string; turn: number; at: string; spokenBeforeAnswer: number; rule?: string };
  /** When the gate approved the send this yes covered: one yes, one SMS. */
  usedAt?: string;
  /** Ledger ids of the question's consent_asked and of the yes's consent_given (the records that follow name them in `ref`). */
  askedId?: string;
  givenId?: string;
}

export interface SentSms {
  number: string;
  message: string;
  at: string;
  turn: number;
  failed?: SmsFailureReason;
  /** Ledger id of its sms_approved: its outcome, a later sms_failed and a settling retry name it. */
  approval?: string;
}

export interface SmsState {
  /** The recipient currently under discussion (AI Flow format); changing it voids consent. */
  number?: string;
  /** Slot keys the model chose when the flow started; the SMS text is rendered from config. */
  slots: Record<string, string>;
  consent?: ConsentState;
  /** Final for the call: no re-asking, no send. */
  declined: boolean;
  sent: SentSms[];
  /** Extra sends allowed after transient failures (at most one retry per call). */
  retryAllowance: number;
  /** The task's latest result (the engine hands each to the step that started the task; reports and prompts read it here). */
  result?: { value: SmsTaskResult };
  /**
   * This turn evaluates words that overtook a yes's send (see overtaken.ts): where the call was,
   * to go back there unless the words were a "no". Only within one turn.
   */
  recheck?: { step: string; stepHistoryStart?: number; confirmed?: boolean };
  /**
   * How often this call's state was lost and started over while the ledger kept its records (0 or
   * absent: the first). Event positions start again at 1 in a new life, so record ids carry it
   * (`L<life>`): a new record never shares an id with an old one, which the ledger would drop.
   */
  life?: number;
  /** Set by the sms_failed bookkeeping for the spoken reaction in the same turn. */
  lastFailure?: { reason: SmsFailureReason; matched: boolean; wasRetry: boolean; canRetry: boolean; number?: string };
}

/** The SMS task's slice of a call's state. */
export interface SmsSlice {
  sms: SmsState;
}

export type SmsCallState = CallState<SmsSlice>;

export function initialSmsSlice(): SmsSlice {
  return { sms: { slots: {}, declined: false, sent: [], retryAllowance: 0 } };
}

/** A call's state before anything happened in it, with the SMS slice (tests, stores). */
export function initialCallState(init: Pick<CallCore, "sessionId" | "direction" | "language" | "step"> & Partial<CallCore>): SmsCallState {
  return { ...initialCallCore(init), ...initialSmsSlice() };
}
