/** What a callback request needs, in the order the agent asks for it. */
export const CALLBACK_FIELDS = ["name", "reason", "time_window"] as const;
export type CallbackField = (typeof CALLBACK_FIELDS)[number];

/** One detail as the caller gave it, and whether they confirmed the read-back. */
export interface CallbackDetail {
  value: string;
  confirmed: boolean;
  /** `CallState.spoken` right after the read-back: the caller's next words answer it only if nothing was said since. */
  readBackSpoken: number;
  readBackTurn: number;
}

export interface CallbackState {
  details: Partial<Record<CallbackField, CallbackDetail>>;
  /** The SMS confirmation was offered (once per call). */
  smsOffered: boolean;
  /** The caller heard that the request is taken (callback_done, said with the SMS offer, once). */
  closed?: boolean;
}

/** The callback request's slice of a call's state. */
export interface CallbackSlice {
  callback: CallbackState;
}

export function initialCallbackSlice(): CallbackSlice {
  return { callback: { details: {}, smsOffered: false } };
}

/** The fields not yet confirmed, in asking order. */
export function missingFields(state: CallbackState): CallbackField[] {
  return CALLBACK_FIELDS.filter((f) => !state.details[f]?.confirmed);
}
