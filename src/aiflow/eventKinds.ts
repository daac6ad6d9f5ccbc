import type { AiFlowEvent } from "./events.js";

/**
 * What kind of moment each AI Flow event is, defined once for every layer (the store's queue and
 * outbox, the pipeline's answers, the engine's redelivery check, the call review's figures, the
 * benchmarks): each set is written in terms of the ones above it where it is one of them plus more.
 */
type EventType = AiFlowEvent["type"];

/** The caller said or keyed something: a turn of theirs that waits for an answer. */
export const CALLER_TURNS: ReadonlySet<EventType> = new Set(["user_speak", "dtmf_received"]);

/** The caller said, keyed or did not say something. Their late answers can be dropped (after an apology). */
export const CONVERSATIONAL: ReadonlySet<EventType> = new Set([...CALLER_TURNS, "user_input_timeout"]);

/**
 * The caller's verdict on what they heard: no send produced before one of them leaves until it
 * has been evaluated (a "no" must be able to stop it).
 */
export const CALLER_VERDICTS: ReadonlySet<EventType> = CONVERSATIONAL;

/** What a holding line's own follow-up can be: collected, never queued as caller silence. */
export const HOLDING_FOLLOW_UPS: ReadonlySet<EventType> = new Set(["user_input_timeout", "assistant_speech_ended"]);

/** Events whose HTTP answer may carry earlier turns' late actions: never assistant_speak (the holding line is still playing). */
export const COLLECTING: ReadonlySet<EventType> = new Set([...CONVERSATIONAL, ...HOLDING_FOLLOW_UPS]);

/** Queued again once the store answers if it could not take them: the caller's verdicts (a possible "no") and the call's end. */
export const KEPT_THROUGH_OUTAGES: ReadonlySet<EventType> = new Set([...CALLER_VERDICTS, "session_end"]);

/** The caller waits for an answer to these: a store outage or a lost call gets an apology. */
export const AWAITS_ANSWER: ReadonlySet<EventType> = new Set(["session_start", "user_speak", "user_input_timeout"]);

/**
 * Events where an identical body right after the same body means a redelivery. Not
 * dtmf_received (a caller keys "7" twice for "77") nor user_input_timeout (silence repeats),
 * whose identical repeats are real; a redelivery of those has no side effect to guard.
 */
export const REDELIVERY_CHECKED: ReadonlySet<EventType> = new Set(["session_start", "user_speak", "sms_failed"]);

/** Events that may begin a call's state (a session_start, or the caller's words when none is stored). */
export const STARTS_CALL: ReadonlySet<EventType> = new Set(["session_start", ...CALLER_TURNS]);
