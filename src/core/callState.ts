import type { AiFlowAction } from "../aiflow/actions.js";

/**
 * Everything the service knows about one call, below every layer: the engine runs it, stores
 * keep it, models read its history. Plain JSON (no classes, no Dates) so a store can serialize
 * it. A flow adds its own slice (`S`): the SMS task its `sms` state, say; the engine never
 * looks inside.
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

/** The languages the prompts exist in. */
export const LANGUAGES = ["de-DE", "en-US"] as const;
export type Language = (typeof LANGUAGES)[number];

/** One running task: which, the step that started it (its result goes to that step's onResult), the step it returns to. */
export interface TaskFrame {
  task: string;
  startedBy: string;
  returnTo: string;
}

/** What every call has, whatever its flow. */
export interface CallCore {
  sessionId: string;
  accountId?: string;
  direction: "inbound" | "outbound";
  /** The remote party's number (AI Flow format), if it is a usable number. */
  callerNumber?: string;
  language: Language;
  step: string;
  /** The tasks running now, innermost last (see src/engine/tasks.ts): where each returns, whose result it is. */
  tasks?: TaskFrame[];
  /** Each task that ran in this call, by name: the step that started it last (its later events go there). */
  taskStarters?: Record<string, string>;
  /** Caller turns so far (spoken answers and keyed-in numbers). */
  turn: number;
  /** Lines spoken to the caller so far (a repeated line does not count again). */
  spoken: number;
  /** `spoken` when the current caller turn began: tells what the caller was answering. */
  spokenBeforeTurn: number;
  /** `spoken` at the caller's latest barge-in: lines through it may not have been heard in full (see src/engine/heard.ts). */
  bargedIn?: number;
  /** History index where the current step began (for steps that only see their own part). */
  stepHistoryStart?: number;
  /** The last line spoken that was not a repeat: what a re-prompt after silence repeats. */
  lastLine?: string;
  history: HistoryMessage[];
  /** Keypad digits collected so far in a number-entry step. */
  dtmf: string;
  inputTimeouts: number;
  /** Set after a goodbye: hang up once the goodbye has been played. */
  pendingHangup: boolean;
  /** The hangup action left: later caller events get no answer and cause no model request. */
  ended?: boolean;
  /**
   * The last event's key and answer (redelivery detection). `quiet`: its turn said nothing on
   * purpose (words that arrived before the line they answered): the same words again are a new
   * answer, not a redelivery.
   */
  lastEvent?: { key: string; at: number; actions: AiFlowAction[]; quiet?: boolean; /** Its words were taken as possibly repeated (no yes): the same words again are new. */ fresh?: boolean };
  createdAt: number;
  updatedAt: number;
}

/** A call's state: the core every call has, plus its flow's slice. */
export type CallState<S extends object = object> = CallCore & S;

/** A call's core before anything happened in it. */
export function initialCallCore(init: Pick<CallCore, "sessionId" | "direction" | "language" | "step"> & Partial<CallCore>): CallCore {
  return {
    turn: 0,
    spoken: 0,
    spokenBeforeTurn: 0,
    history: [],
    dtmf: "",
    inputTimeouts: 0,
    pendingHangup: false,
    createdAt: 0,
    updatedAt: 0,
    ...init,
  };
}
