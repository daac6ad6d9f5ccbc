import type { AiFlowAction } from "../aiflow/actions.js";
import { actions as build } from "../aiflow/actions.js";
import type { AiFlowEvent } from "../aiflow/events.js";
import { flowOwnNumber } from "../aiflow/sessionNumbers.js";
import type { Answer, CallAnswerer } from "../engine/callPipeline.js";
import type { PromptLibrary } from "../engine/promptLibrary.js";
import type { EngineOptions } from "../engine/options.js";
import { speakOptions } from "../engine/speech.js";
import type { LoadMonitor, OverloadReason } from "./load.js";

/** Refused calls remembered (their later events are not the service's business); beyond it the oldest is forgotten. */
const MAX_REMEMBERED_CALLS = 10_000;

export interface AdmissionOptions {
  transferTo?: string;
  callerIdName: string;
  onRefused?: (reason: OverloadReason) => void;
}

/**
 * Admission: while the instance is over its limits (LoadMonitor), a new call (session_start) is
 * not taken on: the caller hears the `overloaded` line and is hung up, or transferred when
 * `server.overload.transferTo` is set. Calls already running are never refused: their events go
 * to the pipeline as always, so they keep their deadline. A refused call's later events (its
 * speech ending, session_end) are answered with nothing: the call has no state here.
 */
export class Admission implements CallAnswerer {
  /** Refused calls and what their session_start was answered (a redelivery gets the same answer). */
  private readonly refused = new Map<string, AiFlowAction[]>();
  /**
   * Calls this instance admitted, until their session_end: sipgate sends a session_start again when
   * its answer was lost, and that call is running, so it is never refused (even if the instance is
   * over its limits by now) and not counted as a new call a second time.
   */
  private readonly admitted = new Set<string>();

  constructor(
    private readonly inner: CallAnswerer,
    private readonly load: LoadMonitor,
    private readonly prompts: PromptLibrary,
    private readonly options: EngineOptions,
    private readonly o: AdmissionOptions,
  ) {}

  answerHttp(event: AiFlowEvent, key: string): Promise<Answer> {
    const refusal = this.check(event);
    return refusal ? Promise.resolve({ kind: "refused", actions: refusal }) : this.inner.answerHttp(event, key);
  }

  async handleWs(event: AiFlowEvent, key: string, push: (a: AiFlowAction) => boolean | void, signal?: AbortSignal): Promise<void> {
    const refusal = this.check(event);
    if (!refusal) return this.inner.handleWs(event, key, push, signal);
    for (const a of refusal) push(a);
  }

  callerSpeaking(callId: string): void {
    this.inner.callerSpeaking(callId);
  }

  socketClosed(callIds: Iterable<string>): void {
    this.inner.socketClosed(callIds);
  }

  /** The actions that refuse the event's call, or undefined: the pipeline handles it. */
  private check(event: AiFlowEvent): AiFlowAction[] | undefined {
    const callId = event.session.id;
    const earlier = this.refused.get(callId);
    if (earlier) {
      if (event.type === "session_end") this.refused.delete(callId);
      // sipgate sends a session_start again when its answer was lost: the caller hears the refusal.
      return event.type === "session_start" ? earlier : [];
    }
    if (event.type === "session_end") this.admitted.delete(callId);
    if (event.type !== "session_start" || this.admitted.has(callId)) return undefined;
    const reason = this.load.over();
    if (!reason) {
      this.load.took();
      this.admitted.add(callId);
      // Bounded as `refused` is: a call whose session_end never came here (it ended on another instance) goes first.
      if (this.admitted.size > MAX_REMEMBERED_CALLS) this.admitted.delete(this.admitted.values().next().value!);
      return undefined;
    }
    this.o.onRefused?.(reason);
    const own = flowOwnNumber(event.session);
    const speech = speakOptions(this.options.speech);
    const refusal =
      this.o.transferTo && own
        ? [
            build.speak(callId, this.prompts.line("overloaded_transfer"), speech),
            build.transfer(callId, { target_phone_number: this.o.transferTo, caller_id_name: this.o.callerIdName, caller_id_number: own }),
          ]
        : [build.speak(callId, this.prompts.line("overloaded"), speech), build.hangup(callId)];
    this.refused.set(callId, refusal);
    if (this.refused.size > MAX_REMEMBERED_CALLS) this.refused.delete(this.refused.keys().next().value!);
    return refusal;
  }
}
