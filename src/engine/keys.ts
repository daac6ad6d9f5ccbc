/**
 * The keys the engine itself uses in prompts/ and in guard decisions. Typed, so a typo is a
 * compile error; listed, so start-up checks every one exists in prompts/.
 */
export const ENGINE_LINES = [
  "welcome_back",
  "timeout_reprompt",
  "timeout_goodbye",
  "fallback",
  "model_unavailable",
  "model_unavailable_transfer",
  "store_unavailable",
  "holding",
  "holding_gave_up",
  "goodbye",
  // Said by the service's admission (src/server/admission.ts) to a new call over the load limits.
  "overloaded",
  "overloaded_transfer",
] as const;
export type EngineLineKey = (typeof ENGINE_LINES)[number];

export const ENGINE_NOTES = [
  "interrupted_mark",
  "tool_skipped_after_transition",
  "tool_not_offered",
  "unknown_tool",
  "invalid_json",
  "invalid_arguments",
  "tool_failed",
  "call_ending",
] as const;
export type EngineNoteKey = (typeof ENGINE_NOTES)[number];

export type EngineReason =
  /** Passed, with no reason of its own (an action no gate looked at, text with no claim in it). */
  | "ok"
  | "tool_not_offered"
  | "unknown_tool"
  | "invalid_json"
  | "invalid_arguments"
  | "batched_after_transition"
  | "request_cap_reached"
  | "internal_error"
  | "store_unavailable"
  | "invalid_action"
  | "duplicate_event"
  | "event_unevaluated";
