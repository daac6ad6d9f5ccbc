import type { Logger } from "pino";
import type { AiFlowAction } from "../../aiflow/actions.js";
import type { AiFlowEvent } from "../../aiflow/events.js";
import type { TurnRecord } from "../../core/turnRecord.js";
import type { CallStore, Transport } from "../../store/callStore.js";
import type { Clock } from "../clock.js";
import type { FlowTypes } from "../define.js";
import type { Engine } from "../engine.js";
import type { EngineOptions } from "../options.js";
import type { PromptLibrary } from "../promptLibrary.js";

/** What the call pipeline is built from (see CallPipeline). */
export interface PipelineDeps<F extends FlowTypes = FlowTypes> {
  engine: Engine<F>;
  store: CallStore<F["state"]>;
  options: EngineOptions;
  prompts: PromptLibrary;
  log: Logger;
  /** Answer deadlines (`server.answerWithinMs`). */
  clock: Clock;
  /** Every committed turn (metrics, evals, the log line). */
  onTurn?: (turn: TurnRecord, event: AiFlowEvent, via: Transport) => void;
  /** How an answer was made, for metrics and the call review: a holding line, giving up, or a store outage, and what it said. */
  onAnswer?: (kind: AnswerKind, actions: readonly AiFlowAction[]) => void;
  /** How often a shared store is asked whether another instance finished an event. */
  pollMs?: number;
  /**
   * Time for leases, renewals, polls and the watchers' limits (default: the system clock). Apart
   * from `clock` because tests move answer deadlines by hand while leases keep real time; a
   * simulation passes one virtual clock for both.
   */
  timers?: Clock;
}

export type AnswerKind = "actions" | "holding" | "gave_up" | "nothing" | "store_unavailable" | "refused";

export interface Answer {
  kind: AnswerKind;
  actions: AiFlowAction[];
  /**
   * The transport could not write this answer (the connection was gone): its actions go back to
   * the call's outbox, to leave with the next answer or be withdrawn when the call ends. Idempotent.
   */
  lost?: () => Promise<void>;
  /** The transport wrote the whole answer: its actions are handed to sipgate. */
  written?: () => Promise<void>;
}

/** What a transport needs of the pipeline: an answer for a webhook event, pushes for a socket's. */
export interface CallAnswerer {
  answerHttp(event: AiFlowEvent, key: string): Promise<Answer>;
  handleWs(event: AiFlowEvent, key: string, push: (a: AiFlowAction) => boolean | void, signal?: AbortSignal): Promise<void>;
  /** The caller started speaking on the socket (user_speech_started, a barge-in): a holding line playing was cut off. */
  callerSpeaking(callId: string): void;
  /** A socket closed: the per-call bookkeeping of the calls it carried goes. */
  socketClosed(callIds: Iterable<string>): void;
}

/** What a transport lends the turn of an event that arrived on it. */
export interface LocalStream {
  sink?: (a: AiFlowAction) => void;
  signal?: AbortSignal;
  /** Actions already pushed by the sink: not delivered again after the commit. */
  pushed: WeakSet<AiFlowAction>;
  /** The turn record, for callers that want it (tests, evals, bench). */
  record?: TurnRecord;
}

/** An event as it is queued. */
export type { Arriving } from "../../store/callStore.js";

/**
 * How long an instance keeps trying to get a queued event processed (taking over a dead holder's
 * lease), and so the longest any answer waits for its event's turn: after that nobody will
 * process it, so no wait (and no poll) outlives it.
 */
export const MAX_WATCH_MS = 10 * 60_000;
