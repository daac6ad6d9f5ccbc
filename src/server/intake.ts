import { createHash } from "node:crypto";
import type { FastifyBaseLogger } from "fastify";
import secureJson from "secure-json-parse";
import { InvalidEventError, parseEvent, type AiFlowEvent } from "../aiflow/events.js";
import type { Transport } from "../store/callStore.js";

/**
 * The one event intake of both transports. The webhook hands it the raw body, the WebSocket the
 * raw frame; what comes back is an event with its redelivery key, an unknown type, or a
 * rejection naming the problem. Every log line about an incoming event (rejected, unknown type,
 * an unexpected error while handling it) is written here, the same for both transports but for
 * the `transport` field. Each transport only maps the outcome to its wire: HTTP answers 400, 204
 * or the pipeline's answer; the WebSocket sends nothing but actions, ever.
 */

export type Problem =
  /** Not JSON at all (also: an empty body). */
  | "not_json"
  /** JSON with a `__proto__` or `constructor.prototype` key: refused rather than silently kept. */
  | "forbidden_key"
  /** JSON, but not an event: not an object, no string `type`, no `session.id` for a known type. */
  | "invalid_event"
  /** Refused before the intake saw it (HTTP content type, size, length; a binary WebSocket frame). */
  | "transport";

export type Rejected = { kind: "rejected"; problem: Problem; message: string };

export type Intake =
  | { kind: "event"; event: AiFlowEvent; key: string }
  | { kind: "unknown"; type: string; sessionId?: string }
  | Rejected;

/** Where an event came in: its transport, and the logger of the request or socket it came with. */
export interface Arrival {
  transport: Transport;
  log: FastifyBaseLogger;
}

// The same rules as Fastify's own JSON body parser: a prototype-poisoning key is an error.
const JSON_OPTIONS = { protoAction: "error", constructorAction: "error" } as const;

/**
 * Reads one event from exactly what the sender sent. Pure: no logging (see `takeIn`).
 *
 * The redelivery key is a hash of the raw text, not of the parsed event: AI Flow events carry no
 * id, a byte-identical body is what a redelivery is, and re-serialising a parsed body can fail on
 * very deep nesting.
 */
export function readEvent(raw: string): Intake {
  let body: unknown;
  try {
    body = secureJson.parse(raw, JSON_OPTIONS);
  } catch {
    return rejection(isJson(raw) ? "forbidden_key" : "not_json");
  }
  let parsed;
  try {
    parsed = parseEvent(body);
  } catch (e) {
    if (e instanceof InvalidEventError) return { kind: "rejected", problem: "invalid_event", message: e.message };
    throw e;
  }
  if (parsed.kind === "unknown") return parsed;
  return { kind: "event", event: parsed.event, key: createHash("sha256").update(raw).digest("hex") };
}

/** `readEvent`, with the log line for a rejection or an unknown type. */
export function takeIn(raw: string, at: Arrival): Intake {
  const intake = readEvent(raw);
  if (intake.kind === "rejected") logRejected(at, intake, Buffer.byteLength(raw));
  else if (intake.kind === "unknown") at.log.info({ transport: at.transport, eventType: intake.type, sessionId: intake.sessionId }, "unknown event type ignored");
  return intake;
}

/** A rejection decided by the transport before the intake saw the text (content type, size, binary frame), logged like any other. */
export function reject(at: Arrival, message: string, bytes?: number): Rejected {
  const rejected: Rejected = { kind: "rejected", problem: "transport", message };
  logRejected(at, rejected, bytes);
  return rejected;
}

/**
 * Runs the handling of an event. An unexpected exception is logged, the same way for both
 * transports, and handled as "nothing to say": the webhook answers 204 (never a 500: sipgate
 * might end the call), the WebSocket sends nothing.
 */
export async function handleSafely<T>(at: Arrival, event: AiFlowEvent, work: () => Promise<T>): Promise<T | undefined> {
  try {
    return await work();
  } catch (e) {
    logFailure(at, e, event);
    return undefined;
  }
}

/** The one line for an unexpected error while an event was handled (also from Fastify's error handler). */
export function logFailure(at: Arrival, err: unknown, event?: AiFlowEvent): void {
  at.log.error({ transport: at.transport, sessionId: event?.session.id, event: event?.type, err }, "unexpected error while handling an event");
}

const MESSAGES: Record<Exclude<Problem, "invalid_event" | "transport">, string> = {
  not_json: "Invalid event: not valid JSON",
  forbidden_key: "Invalid event: forbidden prototype key (__proto__ or constructor.prototype)",
};

function rejection(problem: keyof typeof MESSAGES): Rejected {
  return { kind: "rejected", problem, message: MESSAGES[problem] };
}

function logRejected(at: Arrival, r: Rejected, bytes: number | undefined): void {
  at.log.warn({ transport: at.transport, problem: r.problem, error: r.message, bytes }, "event rejected");
}

/** Whether the text is JSON (only asked after the secure parse refused it: syntax or a forbidden key?). */
function isJson(raw: string): boolean {
  try {
    JSON.parse(raw.charCodeAt(0) === 0xfeff ? raw.slice(1) : raw);
    return true;
  } catch {
    return false;
  }
}
