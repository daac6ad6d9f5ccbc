import type { AiFlowAction } from "../aiflow/actions.js";
import type { AiFlowEvent } from "../aiflow/events.js";
import type { TurnRecord } from "../core/turnRecord.js";
import { telemetry } from "../core/telemetry.js";
import type { FlowTypes } from "./define.js";
import { Answers } from "./pipeline/answers.js";
import { HttpAnswerer } from "./pipeline/httpAnswerer.js";
import type { Answer, CallAnswerer, PipelineDeps } from "./pipeline/types.js";
import { CallWorker } from "./pipeline/worker.js";
import { WsAnswerer } from "./pipeline/wsAnswerer.js";

export type { Answer, AnswerKind, CallAnswerer, PipelineDeps } from "./pipeline/types.js";

/**
 * How a turn meets the transports. Every event is queued for its call; whichever instance holds
 * the call's lease runs the turns in order and commits each one, fenced, to the shared store (the
 * worker); answers are collected from the call's outbox (one answerer per transport). So an
 * answer never waits longer than the deadline: a slow turn gets a holding line and its actions
 * leave with the call's next event (HTTP) or are pushed when ready (WebSocket); each action leaves
 * at most once, and an instance that dies mid-turn costs the call at most one lease.
 *   src/engine/pipeline/worker.ts       lease, queue, turns, fenced commits
 *   src/engine/pipeline/outcomes.ts     what became of each action (handed over, not sent, an uncommitted attempt's)
 *   src/engine/pipeline/arrivals.ts     queuing, words kept through a store outage
 *   src/engine/pipeline/progress.ts     bounded waits for a call's progress
 *   src/engine/pipeline/answers.ts      holding lines, apologies, the socket's holding rule
 *   src/engine/pipeline/httpAnswerer.ts the webhook's answer (and a lost one put back)
 *   src/engine/pipeline/wsAnswerer.ts   the socket's pushes (and nothing after session_end)
 *   src/engine/pipeline/lostCollects.ts what a lost, late or stale collect took goes back to the outbox
 *   src/engine/pipeline/resend.ts       a request sent again with one request id until the store answers
 */
export class CallPipeline<F extends FlowTypes = FlowTypes> implements CallAnswerer {
  private readonly worker: CallWorker<F>;
  private readonly answers: Answers;
  private readonly http: HttpAnswerer<F>;
  private readonly ws: WsAnswerer<F>;

  constructor(deps: PipelineDeps<F>) {
    this.answers = new Answers(deps.options, deps.prompts, deps.log, deps.onAnswer);
    // The worker asks the socket's answerer what it took and never pushed after session_end.
    this.worker = new CallWorker(deps, (callId) => this.ws.takeWithheld(callId));
    this.http = new HttpAnswerer(deps, this.worker, this.answers);
    this.ws = new WsAnswerer(deps, this.worker, this.answers);
  }

  /** The webhook: one event in, its answer within the deadline. */
  answerHttp(event: AiFlowEvent, key: string): Promise<Answer> {
    // One trace per event: its answer's kind (actions, a holding line, an apology) on the event's span.
    return telemetry.callEvent(event, "http", key, async (span) => {
      const answer = await this.http.answer(event, key);
      span.set(() => ({ "aiflow.answer.kind": answer.kind, "aiflow.answer.actions": answer.actions.map((a) => a.type) }));
      return answer;
    });
  }

  /** The WebSocket: pushes for one event (see WsAnswerer). */
  handleWs(event: AiFlowEvent, key: string, push: (a: AiFlowAction) => boolean | void, signal?: AbortSignal): Promise<void> {
    return telemetry.callEvent(event, "ws", key, () => this.ws.handle(event, key, push, signal));
  }

  callerSpeaking(callId: string): void {
    this.answers.callerSpeaking(callId);
  }

  socketClosed(callIds: Iterable<string>): void {
    for (const id of callIds) this.answers.forget(id);
  }

  /** One event, waited for without a deadline: tests, evals and benchmarks look at its turn's record. */
  process(event: AiFlowEvent, key: string = JSON.stringify(event)): Promise<TurnRecord> {
    return this.http.process(event, key);
  }

  /** Calls whose turns are running on this instance now (the overload limit `server.overload.maxInFlightTurns`). */
  inFlightTurns(): number {
    return this.worker.pumps.size;
  }

  /** Graceful shutdown: turns still running in the background finish before the store closes. */
  drain(): Promise<void> {
    return this.worker.drain();
  }
}
