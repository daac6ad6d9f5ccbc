import type { CallState } from "../../core/callState.js";
import type { SmsSlice } from "../../tasks/sms/state.js";
import type { SmsTaskStatus } from "../../tasks/sms/result.js";
import { missingFields, type CallbackSlice } from "./state.js";

/**
 * What the company's endpoint receives for one call (JSON). Posted once per call: when the call
 * ends, or, if its session_end never comes (a call handed to a person), when its state expires.
 * `Idempotency-Key` (the call id) lets the receiver drop a repeat after a retry.
 */
export interface CallbackReport {
  type: "callback_request";
  version: 1;
  callId: string;
  business: string;
  language: string;
  /** The caller's number as AI Flow gave it (AI Flow format), null when withheld. */
  callerNumber: string | null;
  request: {
    name: string | null;
    reason: string | null;
    timeWindow: string | null;
    /** Each detail the caller confirmed after it was read back to them. */
    confirmed: { name: boolean; reason: boolean; timeWindow: boolean };
    /** All three given and confirmed. */
    complete: boolean;
  };
  /**
   * The SMS task's result; `unanswered`: offered, but the call ended before an answer;
   * `not_offered`: the request was never complete. `failed`: sipgate reported the latest SMS failed.
   */
  sms: { status: SmsTaskStatus | "unanswered" | "not_offered"; reason?: string; number?: string; failed?: string };
  call: {
    startedAt: string;
    lastActivityAt: string;
    /** How the call's end became known: its session_end, or its state expired without one. */
    ended: "session_end" | "state_expired";
  };
}

/** Where reports go: the latest one per call is kept and posted later, never in the call's way. */
export interface CallReports {
  /**
   * Keep this call's report. `final` (the call ended): post it now. Otherwise it is a snapshot,
   * posted when the call's state would have expired unless a later one replaces it; `revision`
   * orders snapshots (one written late by an instance that lost the call never replaces a newer one).
   */
  save(report: CallbackReport, opts: { final: boolean; expiresAt: number; revision?: number }): Promise<void>;
}

/** The report as of `now` (ms), from the call's state alone. */
export function callbackReport(state: CallState<SmsSlice & CallbackSlice>, business: string, ended: CallbackReport["call"]["ended"], now: number): CallbackReport {
  const { details } = state.callback;
  // The SMS task's own latest result (a send that never left is not handed over: see the task).
  const sms = state.sms.result?.value;
  // The task's own record of sends: also knows a failure reported after the goodbye, and that a retry went out.
  const failed = state.sms.sent.at(-1)?.failed;
  const value = (f: "name" | "reason" | "time_window") => details[f]?.value ?? null;
  return {
    type: "callback_request",
    version: 1,
    callId: state.sessionId,
    business,
    language: state.language,
    callerNumber: state.callerNumber ?? null,
    request: {
      name: value("name"),
      reason: value("reason"),
      timeWindow: value("time_window"),
      confirmed: { name: !!details.name?.confirmed, reason: !!details.reason?.confirmed, timeWindow: !!details.time_window?.confirmed },
      complete: missingFields(state.callback).length === 0,
    },
    sms: sms
      ? { status: sms.status, ...(sms.status === "refused" ? { reason: sms.reason } : {}), ...(sms.number ? { number: sms.number } : {}), ...(failed ? { failed } : {}) }
      : { status: state.callback.smsOffered ? "unanswered" : "not_offered" },
    call: { startedAt: new Date(state.createdAt).toISOString(), lastActivityAt: new Date(now).toISOString(), ended },
  };
}
