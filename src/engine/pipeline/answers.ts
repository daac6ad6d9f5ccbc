import type { Logger } from "pino";
import { actions as build, type AiFlowAction } from "../../aiflow/actions.js";
import { AWAITS_ANSWER, CONVERSATIONAL } from "../../aiflow/eventKinds.js";
import type { AiFlowEvent } from "../../aiflow/events.js";
import type { EngineOptions } from "../options.js";
import type { PromptLibrary } from "../promptLibrary.js";
import { speakOptions } from "../speech.js";
import type { Answer, AnswerKind } from "./types.js";

/**
 * What the caller hears when a turn's own answer is not there: the holding line, the apology after
 * the last one, the store apology, and the rule for the socket's holding lines. The one place that
 * decides them for both transports (the store decides, atomically, when a webhook answer holds or
 * gives up; this says what is spoken then). None of these lines is part of the conversation: not in
 * history, not the line a re-prompt repeats, not "a line after the consent question".
 */
export class Answers {
  /** Calls whose socket just got a holding line: one at a time per call. */
  private readonly wsHeld = new Set<string>();
  /** Per call on the socket: how many holding lines' assistant_speech_ended are still to come (not the flow's business). */
  private readonly wsEchoes = new Map<string, number>();

  constructor(
    private readonly options: EngineOptions,
    private readonly prompts: PromptLibrary,
    private readonly log: Logger,
    private readonly onAnswer?: (kind: AnswerKind, actions: readonly AiFlowAction[]) => void,
  ) {}

  answered(kind: AnswerKind, actions: AiFlowAction[]): Answer {
    this.onAnswer?.(kind, actions);
    return { kind, actions };
  }

  /** The webhook's holding line arms a short input timeout (its follow-up collects); the socket's none (its silence must not reach the flow). */
  holdingLine(callId: string, inputTimeoutSeconds?: number): AiFlowAction {
    return build.speak(callId, this.prompts.line("holding"), speakOptions(this.options.speech, inputTimeoutSeconds));
  }

  /** Still nothing after the last holding line: the caller is asked to say it again. */
  gaveUp(callId: string): AiFlowAction {
    return build.speak(callId, this.prompts.line("holding_gave_up"), speakOptions(this.options.speech, this.options.speech.userInputTimeoutSeconds));
  }

  /** Nothing can be decided without the store: an apology for events the caller waits on, no state, no SMS. */
  storeUnavailable(event: AiFlowEvent, e: Error): Answer {
    this.log.error({ sessionId: event.session.id, event: event.type, err: e.message }, "event not processed: store unavailable");
    const speaks = AWAITS_ANSWER.has(event.type);
    return this.answered("store_unavailable", speaks ? [build.speak(event.session.id, this.prompts.line("store_unavailable"), speakOptions(this.options.speech))] : []);
  }

  /**
   * An event whose turn will never be done: the store lost the call (its keys expired or were
   * deleted mid-turn: nobody will process the event), or nobody finished the turn in time. Without
   * the call's state nothing can be decided: the caller hears the store apology and the call
   * ends. Nothing for session_end (the call ended already), nor when the call was ended here before.
   */
  turnLost(event: AiFlowEvent, seq: number, why: "vanished" | "timed_out", ended = false): Answer {
    const callId = event.session.id;
    const says = !ended && event.type !== "session_end";
    this.log.error(
      { sessionId: callId, event: event.type, seq, why },
      `${why === "vanished" ? "event's call vanished from the store" : "event's turn not done in time"}: ${says ? "apology, call ended" : "nothing to answer"}`,
    );
    if (!says) return this.answered("store_unavailable", []);
    return this.answered("store_unavailable", [build.speak(callId, this.prompts.line("store_unavailable"), speakOptions(this.options.speech)), build.hangup(callId)]);
  }

  /** The socket: a holding line only where the caller waits for an answer, and one at a time per call. */
  wsMayHold(callId: string, event: AiFlowEvent): boolean {
    return CONVERSATIONAL.has(event.type) && !this.wsHeld.has(callId);
  }

  /** A holding line went out on the socket: its assistant_speech_ended will be swallowed. */
  wsHolding(callId: string): AiFlowAction {
    this.wsHeld.add(callId);
    this.wsEchoes.set(callId, (this.wsEchoes.get(callId) ?? 0) + 1);
    const line = this.holdingLine(callId);
    this.onAnswer?.("holding", [line]);
    return line;
  }

  /** The event's answer is out: the next turn may get a holding line of its own. */
  wsAnswered(callId: string): void {
    this.wsHeld.delete(callId);
  }

  /** A holding line's own assistant_speech_ended: not the flow's business. */
  swallowEcho(callId: string): boolean {
    const n = this.wsEchoes.get(callId) ?? 0;
    if (n === 0) return false;
    if (n === 1) this.wsEchoes.delete(callId);
    else this.wsEchoes.set(callId, n - 1);
    return true;
  }

  /**
   * sipgate stops a line the caller talks over: a cut-off holding line may send no
   * assistant_speech_ended, so none is waited for (a later one is the flow's again).
   */
  callerSpeaking(callId: string): void {
    this.wsEchoes.delete(callId);
  }

  /** The call ended or its socket closed: its bookkeeping goes. */
  forget(callId: string): void {
    this.wsHeld.delete(callId);
    this.wsEchoes.delete(callId);
  }
}
