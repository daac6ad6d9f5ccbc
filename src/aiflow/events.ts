import { z } from "zod";

/**
 * AI Flow events (service → us). Tolerant of the older shapes sipgate has sent:
 * `+`-prefixed numbers, missing `direction` / caller numbers, `transcript` instead
 * of `text`, and the deprecated `user_barge_in` event.
 */

export const sessionSchema = z
  .object({
    id: z.string().min(1, "session.id must not be empty"),
    account_id: z.string().optional(),
    phone_number: z.string().optional(),
    direction: z.enum(["inbound", "outbound"]).optional(),
    from_phone_number: z.string().optional(),
    to_phone_number: z.string().optional(),
  })
  .passthrough();
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

const sessionStart = z.object({ type: z.literal("session_start"), ...base }).passthrough();
const userSpeechStarted = z.object({ type: z.literal("user_speech_started"), ...base }).passthrough();
const userSpeakRaw = z
  .object({
    type: z.literal("user_speak"),
    ...base,
    text: z.string().optional(),
    transcript: z.string().optional(),
    barged_in: z.boolean().optional(),
  })
  .passthrough()
  .refine((e) => e.text !== undefined || e.transcript !== undefined, {
    message: "user_speak needs a string field `text` (or the legacy `transcript`)",
    path: ["text"],
  });
const userBargeIn = z
  .object({ type: z.literal("user_barge_in"), ...base, text: z.string().optional(), transcript: z.string().optional() })
  .passthrough();
const dtmfReceived = z
  .object({
    type: z.literal("dtmf_received"),
    ...base,
    digit: z.string().regex(/^[0-9*#]$/, "digit must be one of 0-9, * or #").optional(),
    digits: z.string().regex(/^[0-9*#]+$/, "digits must contain only 0-9, * or #").optional(),
  })
  .passthrough()
  .refine((e) => e.digit !== undefined || e.digits !== undefined, {
    message: "dtmf_received needs a field `digit`",
    path: ["digit"],
  });
const assistantSpeak = z
  .object({
    type: z.literal("assistant_speak"),
    ...base,
    text: z.string().optional(),
    ssml: z.string().optional(),
    duration_ms: z.number().nonnegative().optional(),
    speech_started_at: z.number().optional(),
  })
  .passthrough();
const assistantSpeechEnded = z.object({ type: z.literal("assistant_speech_ended"), ...base }).passthrough();
const userInputTimeout = z.object({ type: z.literal("user_input_timeout"), ...base }).passthrough();
const sessionEnd = z.object({ type: z.literal("session_end"), ...base }).passthrough();
const smsFailed = z
  .object({
    type: z.literal("sms_failed"),
    ...base,
    recipient: z.string(),
    reason: z.enum(SMS_FAILURE_REASONS),
    message: z.string().optional(),
  })
  .passthrough();

/** The schema of each event type we understand, by type name. */
export const knownEventSchemas = {
  session_start: sessionStart,
  user_speech_started: userSpeechStarted,
  user_speak: userSpeakRaw,
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
 * The normalized event the engine sees: legacy shapes are mapped onto current ones
 * (`transcript` → `text`, `user_barge_in` → `user_speak` with `barged_in`, `digits` → `digit`).
 */
export type AiFlowEvent =
  | { type: "session_start"; session: Session }
  | { type: "user_speech_started"; session: Session }
  | { type: "user_speak"; session: Session; text: string; barged_in: boolean }
  | { type: "dtmf_received"; session: Session; digit: string }
  | { type: "assistant_speak"; session: Session; text?: string; duration_ms?: number }
  | { type: "assistant_speech_ended"; session: Session }
  | { type: "user_input_timeout"; session: Session }
  | { type: "session_end"; session: Session }
  | { type: "sms_failed"; session: Session; recipient: string; reason: SmsFailureReason; message: string };

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

/** Validate a raw JSON body as an AI Flow event. Throws InvalidEventError naming the bad field. */
export function parseEvent(body: unknown): ParsedEvent {
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new InvalidEventError("Invalid event: body must be a JSON object");
  }
  const env = envelope.safeParse(body);
  if (!env.success) throw new InvalidEventError(`Invalid event: ${describeZodError(env.error)}`);
  const type = env.data.type;
  // Own keys only: a type named "toString" or "__proto__" is an unknown type, not a prototype member.
  const schema = Object.hasOwn(knownEventSchemas, type) ? (knownEventSchemas as Record<string, z.ZodTypeAny>)[type] : undefined;
  if (!schema) {
    const session = (body as { session?: { id?: unknown } }).session;
    return { kind: "unknown", type, sessionId: typeof session?.id === "string" ? session.id : undefined };
  }
  const parsed = schema.safeParse(body);
  if (!parsed.success) throw new InvalidEventError(`Invalid ${type} event: ${describeZodError(parsed.error)}`);
  return { kind: "event", event: normalizeEvent(parsed.data) };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function normalizeEvent(e: any): AiFlowEvent {
  const session = e.session as Session;
  switch (e.type as KnownEventType) {
    case "user_speak":
      return { type: "user_speak", session, text: e.text ?? e.transcript ?? "", barged_in: e.barged_in === true };
    case "user_barge_in":
      return { type: "user_speak", session, text: e.text ?? e.transcript ?? "", barged_in: true };
    case "dtmf_received":
      return { type: "dtmf_received", session, digit: e.digit ?? e.digits };
    case "sms_failed":
      return { type: "sms_failed", session, recipient: e.recipient, reason: e.reason, message: e.message ?? "" };
    case "assistant_speak":
      return { type: "assistant_speak", session, text: e.text, duration_ms: e.duration_ms };
    default:
      return { type: e.type, session } as AiFlowEvent;
  }
}
