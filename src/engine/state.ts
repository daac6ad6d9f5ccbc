import type { AiFlowAction } from "../aiflow/actions.js";
import type { SmsFailureReason } from "../aiflow/events.js";
import type { Language } from "../config/schema.js";

/**
 * Everything the service knows about one call. Plain JSON (no classes, no Dates) so a
 * store can serialize it: memory today, Redis when several instances share calls.
 */

export interface ToolCallMessage {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

export type HistoryMessage =
  | { role: "user"; content: string }
  | { role: "assistant"; content: string | null; tool_calls?: ToolCallMessage[] }
  | { role: "tool"; tool_call_id: string; content: string };

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
  answer?: { consented: boolean; reply: string; turn: number; at: string; spokenBeforeAnswer: number };
}

export interface SentSms {
  number: string;
  message: string;
  at: string;
  turn: number;
  failed?: SmsFailureReason;
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
  /** Set by the sms_failed bookkeeping for the spoken reaction in the same turn. */
  lastFailure?: { reason: SmsFailureReason; matched: boolean; wasRetry: boolean; canRetry: boolean };
}

/** A call's state before anything happened in it. */
export function initialCallState(init: Pick<CallState, "sessionId" | "direction" | "language" | "step"> & Partial<CallState>): CallState {
  return {
    turn: 0,
    spoken: 0,
    spokenBeforeTurn: 0,
    history: [],
    sms: { slots: {}, declined: false, sent: [], retryAllowance: 0 },
    dtmf: "",
    inputTimeouts: 0,
    pendingHangup: false,
    createdAt: 0,
    updatedAt: 0,
    ...init,
  };
}

export interface CallState {
  sessionId: string;
  accountId?: string;
  direction: "inbound" | "outbound";
  /** The remote party's number (AI Flow format), if it is a usable number. */
  callerNumber?: string;
  language: Language;
  step: string;
  /** Where exit_flow returns to. */
  returnStep?: string;
  /** Caller turns so far (spoken answers and keyed-in numbers). */
  turn: number;
  /** Lines spoken to the caller so far (a repeated line does not count again). */
  spoken: number;
  /** `spoken` when the current caller turn began: tells what the caller was answering. */
  spokenBeforeTurn: number;
  /** History index where the current step began (for steps that only see their own part). */
  stepHistoryStart?: number;
  /** The last line spoken that was not a repeat: what a re-prompt after silence repeats. */
  lastLine?: string;
  history: HistoryMessage[];
  sms: SmsState;
  dtmf: string;
  inputTimeouts: number;
  /** Set after a goodbye: hang up once the goodbye has been played. */
  pendingHangup: boolean;
  /** The hangup action left: later caller events get no answer and cause no model request. */
  ended?: boolean;
  lastEvent?: { key: string; at: number; actions: AiFlowAction[] };
  createdAt: number;
  updatedAt: number;
}
