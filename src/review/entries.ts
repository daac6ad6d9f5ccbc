import { z } from "zod";

/**
 * What the call review keeps of a call: a list of timeline entries, appended by whichever
 * instance saw the fact, in the shared review store. Numbers are masked before an entry is
 * built (masking.ts); caller and agent words (`text`, tool arguments, model answers) are kept
 * only when `review.transcripts` is on. The same schema reads them back from the store and
 * from `GET /calls/<id>.json` (`npm run eval -- --from-call`).
 */

const at = z.number().int().nonnegative();

/** A caller event as it arrived (before its turn ran). */
export const arrivalEntrySchema = z.object({
  kind: z.literal("arrival"),
  at,
  via: z.enum(["http", "ws"]),
  event: z.string(),
  /** user_speak: what the caller said (transcripts only, numbers masked). */
  text: z.string().optional(),
  /** dtmf_received: the key (transcripts only). */
  digit: z.string().optional(),
  /** sms_failed: sipgate's reason. */
  reason: z.string().optional(),
  /** session_start: the caller's number, masked. */
  caller: z.string().optional(),
  agent: z.string().optional(),
});

/** One thing the caller got back: an HTTP answer, or a frame pushed on the WebSocket. */
export const answerEntrySchema = z.object({
  kind: z.literal("answer"),
  at,
  /** holding, gave_up, store_unavailable, actions (HTTP) or pushed (WebSocket). */
  answer: z.string(),
  actions: z.array(
    z.object({
      type: z.string(),
      /** speak: the line (transcripts only, numbers masked). */
      text: z.string().optional(),
      /** send_sms / transfer: the masked number. */
      to: z.string().optional(),
    }),
  ),
});

export const toolEntrySchema = z.object({
  name: z.string(),
  ok: z.boolean(),
  origin: z.enum(["model", "code", "rule"]),
  /** Transcripts only, numbers masked. */
  args: z.unknown().optional(),
  result: z.string().optional(),
});

export const modelRequestEntrySchema = z.object({
  step: z.string(),
  model: z.string(),
  ms: z.number(),
  promptTokens: z.number(),
  completionTokens: z.number(),
  error: z.string().optional(),
  /** What the model answered (transcripts only, numbers masked): the replay of `--from-call`. */
  answer: z.object({ text: z.string(), toolCalls: z.array(z.object({ name: z.string(), arguments: z.string() })) }).optional(),
});

/** A committed turn: steps, tool calls, guard decisions, model requests. */
export const turnEntrySchema = z.object({
  kind: z.literal("turn"),
  at,
  event: z.string(),
  stepBefore: z.string(),
  stepAfter: z.string(),
  tools: z.array(toolEntrySchema),
  refusals: z.array(z.object({ subject: z.string(), reason: z.string(), detail: z.string().optional() })),
  model: z.array(modelRequestEntrySchema),
  modelMs: z.number(),
  totalMs: z.number(),
  duplicate: z.boolean().optional(),
});

/** A durable consent ledger record of the call. */
export const ledgerEntrySchema = z.object({
  kind: z.literal("ledger"),
  at,
  record: z.string(),
  id: z.string(),
  outcome: z.string().optional(),
  reason: z.string().optional(),
  to: z.string().optional(),
});

export const reviewEntrySchema = z.discriminatedUnion("kind", [arrivalEntrySchema, answerEntrySchema, turnEntrySchema, ledgerEntrySchema]);

export type ReviewEntry = z.infer<typeof reviewEntrySchema>;
export type ArrivalEntry = z.infer<typeof arrivalEntrySchema>;
export type AnswerEntry = z.infer<typeof answerEntrySchema>;
export type TurnEntry = z.infer<typeof turnEntrySchema>;
export type LedgerEntry = z.infer<typeof ledgerEntrySchema>;
