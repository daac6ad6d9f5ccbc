import { z } from "zod";

/**
 * AI Flow events (service → us), read tolerantly.
 *
 * Only a missing `type` or `session.id` makes an event unreadable (400); everything else the
 * service can do without. sipgate's payloads have drifted (`+`-prefixed numbers, no
 * `direction`, `transcript` instead of `text`, the deprecated `user_barge_in` event, anonymous
 * callers), and a 400 loses the caller's turn for good: sipgate documents no redelivery. So a
 * field that is `null` or of the wrong type counts as absent, and is coerced only where the
 * meaning is unambiguous (an account id sent as a number). The schemas below are the single
 * source of truth: each one reads the raw JSON and outputs the normalized event the engine sees.
 * Actions (actions.ts) are the other way round: written strictly.
 */

/** A field the service can do without: `null`, absent or ill-typed all read as `undefined`. */
export function tolerant<T extends z.ZodTypeAny>(schema: T) {
  return schema.optional().catch(undefined);
}

/** Ids arrive as strings; a number is the same id, so it is read as its decimal string. */
const idString = z.union([z.string(), z.number().finite().transform(String)]);
/**
 * Numbers are digit strings ("4915112345678" or the older "+49…"). A JSON integer is the same
 * digits (E.164 has no leading zero to lose); anything else (floats, negatives) is not a number.
 */
const phoneNumber = z.union([z.string(), z.number().int().nonnegative().safe().transform(String)]);
/** Case is not meaning: "Inbound" is inbound. Any other value means "not said". */
const direction = z.preprocess((v) => (typeof v === "string" ? v.trim().toLowerCase() : v), z.enum(["inbound", "outbound"]));

export const sessionSchema = z
  .object({
    // The one session field nothing works without: state, locks and every action key on it.
    id: z
      .string({ required_error: "session.id is missing", invalid_type_error: "session.id must be a string" })
      .min(1, "session.id must not be empty"),
    account_id: tolerant(idString),
    phone_number: tolerant(phoneNumber),
    direction: tolerant(direction),
    // null for an anonymous caller: the flow then asks for a number instead of offering one.
    from_phone_number: tolerant(phoneNumber),
    to_phone_number: tolerant(phoneNumber),
  })
  // Fields the service does not know are dropped here: an event is queued and stored (Redis)
  // until its turn, and a sender's 5000-level extra field must not travel with it.
  .strip();
export type Session = z.infer<typeof sessionSchema>;

const base = { session: sessionSchema };

export const SMS_FAILURE_REASONS = [
  "sender_not_allowed",
  "insufficient_balance",
  "no_sms_extension",
  "smsc_unavailable",
  "unknown",
] as const;
export type SmsFailureReason = (typeof SMS_FAILURE_REASONS)[number];

export function isSmsFailureReason(v: unknown): v is SmsFailureReason {
  return (SMS_FAILURE_REASONS as readonly unknown[]).includes(v);
}

/** At most this much of an undocumented value is kept: it goes into logs and the ledger. */
const MAX_RAW_LENGTH = 200;
function rawText(v: unknown): string {
  const s = typeof v === "string" ? v : (JSON.stringify(v) ?? String(v));
  return s.slice(0, MAX_RAW_LENGTH);
}

/**
 * Keypad keys: 0-9, * and #, and the A-D of DTMF's fourth column (some phones and gateways send
 * them). A value with anything else, or not a string, is no key press at all: a half-read
 * number would be worse than none.
 */
const KEYPAD = /^[0-9*#A-D]+$/;
const keys = z.string().regex(KEYPAD);
/** One key sent as a JSON number is the same key. */
const oneKey = z.union([keys, z.number().int().min(0).max(9).transform(String)]);

const noFields = <T extends string>(type: T) =>
  z.object({ type: z.literal(type), ...base }).transform((e) => ({ type, session: e.session }));

const sessionStart = noFields("session_start");
const userSpeechStarted = noFields("user_speech_started");
const assistantSpeechEnded = noFields("assistant_speech_ended");
const userInputTimeout = noFields("user_input_timeout");
const sessionEnd = noFields("session_end");

// Without words the turn is still a turn: an empty text takes the engine's "did not catch that" path.
const userSpeak = z
  .object({
    type: z.literal("user_speak"),
    ...base,
    text: tolerant(z.string()),
    transcript: tolerant(z.string()), // the older name of `text`
    barged_in: tolerant(z.boolean()),
  })
  .transform((e) => ({ type: "user_speak" as const, session: e.session, text: e.text ?? e.transcript ?? "", barged_in: e.barged_in === true }));

/** Deprecated separate event for an interrupting caller: a user_speak with barged_in. */
const userBargeIn = z
  .object({ type: z.literal("user_barge_in"), ...base, text: tolerant(z.string()), transcript: tolerant(z.string()) })
  .transform((e) => ({ type: "user_speak" as const, session: e.session, text: e.text ?? e.transcript ?? "", barged_in: true }));

// No readable key: an empty digit string, which the keypad entry ignores.
const dtmfReceived = z
  .object({
    type: z.literal("dtmf_received"),
    ...base,
    digit: tolerant(oneKey),
    digits: tolerant(keys), // a third-party name for `digit`; as a JSON number it would lose leading zeros
  })
  .transform((e) => ({ type: "dtmf_received" as const, session: e.session, digit: e.digit ?? e.digits ?? "" }));

const assistantSpeak = z
  .object({
    type: z.literal("assistant_speak"),
    ...base,
    text: tolerant(z.string()),
    ssml: tolerant(z.string()),
    duration_ms: tolerant(z.number().finite().nonnegative()),
    speech_started_at: tolerant(z.number().finite()),
  })
  .transform((e) => ({ type: "assistant_speak" as const, session: e.session, text: e.text, duration_ms: e.duration_ms }));

/**
 * An SMS failed. Even without a readable recipient or reason it is news the caller must hear
 * (the flow matches it to the last SMS sent). A reason outside the five documented ones is
 * handled as `unknown`; the value sent is kept as `rawReason` for the log, and never becomes a
 * metric label (those come from `reason` only, so their number stays bounded).
 */
const smsFailed = z
  .object({
    type: z.literal("sms_failed"),
    ...base,
    recipient: tolerant(phoneNumber),
    reason: z.unknown(),
    message: tolerant(z.string()),
  })
  .transform((e) => {
    const known = isSmsFailureReason(e.reason);
    return {
      type: "sms_failed" as const,
      session: e.session,
      recipient: e.recipient ?? "",
      reason: isSmsFailureReason(e.reason) ? e.reason : ("unknown" as const),
      rawReason: known || e.reason === undefined || e.reason === null ? undefined : rawText(e.reason),
      message: e.message ?? "",
    };
  });

/** The schema of each event type we understand, by type name; each outputs the normalized event. */
export const knownEventSchemas = {
  session_start: sessionStart,
  user_speech_started: userSpeechStarted,
  user_speak: userSpeak,
  user_barge_in: userBargeIn,
  dtmf_received: dtmfReceived,
  assistant_speak: assistantSpeak,
  assistant_speech_ended: assistantSpeechEnded,
  user_input_timeout: userInputTimeout,
  session_end: sessionEnd,
  sms_failed: smsFailed,
} as const;
export type KnownEventType = keyof typeof knownEventSchemas;

/**
 * The normalized event the engine sees, as the schemas output it: legacy shapes are mapped onto
 * current ones (`transcript` → `text`, `user_barge_in` → `user_speak` with `barged_in`,
 * `digits` → `digit`), tolerated fields are `undefined` (or "" where the engine needs a string).
 */
export type AiFlowEvent = z.output<(typeof knownEventSchemas)[KnownEventType]>;

export type ParsedEvent =
  | { kind: "event"; event: AiFlowEvent }
  | { kind: "unknown"; type: string; sessionId?: string };

export class InvalidEventError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InvalidEventError";
  }
}

function describeZodError(err: z.ZodError): string {
  return err.issues
    .map((i) => (i.path.length ? `${i.path.join(".")}: ${i.message}` : i.message))
    .join("; ");
}

const envelope = z.object({ type: z.string({ required_error: "missing type field", invalid_type_error: "type must be a string" }) }).passthrough();

/**
 * Validate a raw JSON body as an AI Flow event. Throws InvalidEventError naming the bad field;
 * only the body's shape, `type` and `session.id` can cause that.
 */
export function parseEvent(body: unknown): ParsedEvent {
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new InvalidEventError("Invalid event: body must be a JSON object");
  }
  const env = envelope.safeParse(body);
  if (!env.success) throw new InvalidEventError(`Invalid event: ${describeZodError(env.error)}`);
  const type = env.data.type;
  // Own keys only: a type named "toString" or "__proto__" is an unknown type, not a prototype member.
  const schema = Object.hasOwn(knownEventSchemas, type) ? knownEventSchemas[type as KnownEventType] : undefined;
  if (!schema) {
    const session = (body as { session?: { id?: unknown } }).session;
    return { kind: "unknown", type, sessionId: typeof session?.id === "string" ? session.id : undefined };
  }
  const parsed = schema.safeParse(body);
  if (!parsed.success) throw new InvalidEventError(`Invalid ${type} event: ${describeZodError(parsed.error)}`);
  return { kind: "event", event: parsed.data };
}
