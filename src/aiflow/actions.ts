import { z } from "zod";

/**
 * AI Flow actions (us → service). Every action leaving the service is built here and
 * validated against its schema, so an invalid action cannot be produced anywhere else. Built
 * actions are frozen: what was validated is what leaves.
 */

const sessionId = z.string().min(1);
/** E.164 digits without `+`, the format sipgate asks for in send_sms and transfer. */
export const aiFlowNumberSchema = z.string().regex(/^[1-9]\d{6,14}$/, "phone number must be E.164 digits without +");

export const bargeInConfigSchema = z.object({
  strategy: z.enum(["none", "manual", "minimum_characters", "immediate"]),
  minimum_characters: z.number().int().min(1).max(100).optional(),
  allow_after_ms: z.number().int().min(0).max(10000).optional(),
});
export const vadSchema = z.object({ end_of_turn_silence_ms: z.number().int().min(150).max(2000).optional() });
export const ttsSchema = z.discriminatedUnion("provider", [
  z.object({ provider: z.literal("azure"), language: z.string().optional(), voice: z.string().optional() }),
  z.object({ provider: z.literal("eleven_labs"), voice: z.string().optional(), language: z.string().optional() }),
]);

const speakOptions = {
  tts: ttsSchema.optional(),
  barge_in: bargeInConfigSchema.optional(),
  user_input_timeout_seconds: z.number().positive().max(600).optional(),
  vad: vadSchema.optional(),
};

export const speakActionSchema = z
  .object({ type: z.literal("speak"), session_id: sessionId, text: z.string().min(1).optional(), ssml: z.string().min(1).optional(), ...speakOptions })
  .strict()
  .refine((a) => (a.text === undefined) !== (a.ssml === undefined), { message: "speak needs exactly one of text or ssml" });
export const audioActionSchema = z
  .object({ type: z.literal("audio"), session_id: sessionId, audio: z.string().min(1), barge_in: bargeInConfigSchema.optional() })
  .strict();
export const hangupActionSchema = z.object({ type: z.literal("hangup"), session_id: sessionId }).strict();
export const bargeInActionSchema = z.object({ type: z.literal("barge_in"), session_id: sessionId }).strict();
export const transferActionSchema = z
  .object({
    type: z.literal("transfer"),
    session_id: sessionId,
    target_phone_number: aiFlowNumberSchema,
    caller_id_name: z.string().min(1),
    caller_id_number: aiFlowNumberSchema,
    timeout: z.number().int().min(5).max(120).optional(),
  })
  .strict();
export const sendSmsActionSchema = z
  .object({ type: z.literal("send_sms"), session_id: sessionId, phone_number: aiFlowNumberSchema, message: z.string().min(1) })
  .strict();
export const configureTranscriptionActionSchema = z
  .object({
    type: z.literal("configure_transcription"),
    session_id: sessionId,
    provider: z.enum(["AZURE", "DEEPGRAM", "ELEVEN_LABS"]).optional(),
    languages: z.array(z.string().min(2)).min(1).max(4).optional(),
    custom_vocabulary: z.array(z.string().max(200)).max(100).optional(),
    vad: vadSchema.optional(),
  })
  .strict();
export const mixAudioActionSchema = z
  .object({
    type: z.literal("mix_audio"),
    session_id: sessionId,
    audio: z.string().min(1).optional(),
    volume: z.number().min(0).max(1).optional(),
    stop: z.boolean().optional(),
  })
  .strict()
  .refine((a) => a.stop === true || a.audio !== undefined, { message: "mix_audio needs audio unless stop is true" });

export const actionSchema = z.union([
  speakActionSchema,
  audioActionSchema,
  hangupActionSchema,
  bargeInActionSchema,
  transferActionSchema,
  sendSmsActionSchema,
  configureTranscriptionActionSchema,
  mixAudioActionSchema,
]);

export type SpeakAction = z.infer<typeof speakActionSchema>;
export type SendSmsAction = z.infer<typeof sendSmsActionSchema>;
export type TransferAction = z.infer<typeof transferActionSchema>;
export type AiFlowAction = z.infer<typeof actionSchema>;
export type SpeakOptions = Omit<SpeakAction, "type" | "session_id" | "text" | "ssml">;

/** Thrown when code tries to build an action the protocol does not allow: a bug, never caller input. */
export class InvalidActionError extends Error {
  constructor(type: string, detail: string) {
    super(`refusing to build invalid ${type} action: ${detail}`);
    this.name = "InvalidActionError";
  }
}

/**
 * Actions made by the builders below: validated when built and frozen (deeply), so they cannot
 * have changed since. Private to this module: nothing else can put an object in here.
 */
const built = new WeakSet<object>();

function deepFreeze<T>(v: T): T {
  if (typeof v === "object" && v !== null && !Object.isFrozen(v)) {
    for (const x of Object.values(v)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}

function build<T extends object>(schema: z.ZodType<T>, value: unknown, type: string): T {
  const r = schema.safeParse(value);
  if (!r.success) throw new InvalidActionError(type, r.error.issues.map((i) => `${i.path.join(".") || type}: ${i.message}`).join("; "));
  // zod's output is a fresh object (nested options too), so freezing it freezes nothing shared (config).
  built.add(deepFreeze(r.data));
  return r.data;
}

/** Whether `action` is exactly as a builder made and validated it (frozen since). */
export function isBuiltAction(action: unknown): boolean {
  return typeof action === "object" && action !== null && built.has(action);
}

export type ActionCheck = { success: true } | { success: false; issues: string[] };

/**
 * The protocol check of an action about to leave. A builder-made action passed this very
 * schema when it was built and cannot have changed since, so it is not parsed a second time;
 * any other object (a raw literal, a copy, something a tool put together) is parsed now.
 */
export function checkAction(action: unknown): ActionCheck {
  if (isBuiltAction(action)) return { success: true };
  const r = actionSchema.safeParse(action);
  return r.success ? { success: true } : { success: false, issues: r.error.issues.map((i) => i.message) };
}

export const actions = {
  speak: (session_id: string, text: string, options: SpeakOptions = {}): SpeakAction =>
    build(speakActionSchema, { type: "speak", session_id, text, ...options }, "speak"),
  hangup: (session_id: string) => build(hangupActionSchema, { type: "hangup", session_id }, "hangup"),
  bargeIn: (session_id: string) => build(bargeInActionSchema, { type: "barge_in", session_id }, "barge_in"),
  transfer: (session_id: string, t: Omit<TransferAction, "type" | "session_id">): TransferAction =>
    build(transferActionSchema, { type: "transfer", session_id, ...t }, "transfer"),
  sendSms: (session_id: string, phone_number: string, message: string): SendSmsAction =>
    build(sendSmsActionSchema, { type: "send_sms", session_id, phone_number, message }, "send_sms"),
};
