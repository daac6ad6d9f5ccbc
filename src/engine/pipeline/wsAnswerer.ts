import type { AiFlowAction } from "../../aiflow/actions.js";
import type { AiFlowEvent } from "../../aiflow/events.js";
import { StoreUnavailableError, type Collected, type OutboxEntry } from "../../store/callStore.js";
import type { FlowTypes } from "../define.js";
import type { Answers } from "./answers.js";
import { HELD_BACK, LostCollects } from "./lostCollects.js";
import { MAX_WATCH_MS, type LocalStream, type PipelineDeps } from "./types.js";
import type { CallWorker } from "./worker.js";
import { telemetry } from "../../core/telemetry.js";

/** A call on this instance's socket, while any of its events is being handled here. */
interface WsCall {
  /** Handlers of the call's events running here: the record goes with the last one. */
  inFlight: number;
  /**
   * session_end arrived (or the call was hung up here): nothing more is pushed for the call; what
   * still waits in the outbox is the session_end turn's to withdraw.
   */
  ended: boolean;
  /** Collects under way: session_end waits for them before it is queued, so what they took is known. */
  collects: Set<Promise<unknown>>;
  /** Entries a collect took after session_end arrived, so never pushed: the session_end turn's undelivered too. */
  withheld: OutboxEntry[];
}

/**
 * The WebSocket's answerer: the event's turn runs with the socket's sink (speech may stream); a
 * holding line is pushed at the deadline if nothing was said yet, the actions when the turn is
 * committed, and nothing at all once the call's session_end arrived.
 */
export class WsAnswerer<F extends FlowTypes = FlowTypes> {
  /** Calls with events being handled on this instance's socket (see WsCall). */
  private readonly calls = new Map<string, WsCall>();
  private readonly collects: LostCollects;

  constructor(
    private readonly deps: PipelineDeps<F>,
    private readonly worker: CallWorker<F>,
    private readonly answers: Answers,
  ) {
    this.collects = new LostCollects(deps.store, worker, worker.timers, deps.clock, deps.log);
  }

  /** What a collect took after the call's session_end arrived (never pushed): the session_end turn's undelivered too. */
  takeWithheld(callId: string): OutboxEntry[] {
    return this.calls.get(callId)?.withheld.splice(0) ?? [];
  }

  /**
   * The WebSocket: the event's turn runs with the socket's sink (speech may stream); a holding
   * line is pushed at the deadline if nothing was said yet, the actions when the turn is committed.
   */
  async handle(event: AiFlowEvent, key: string, push: (a: AiFlowAction) => boolean | void, signal?: AbortSignal): Promise<void> {
    const callId = event.session.id;
    const { clock } = this.deps;
    const deadline = this.deps.options.answer.withinMs > 0 ? clock.now() + this.deps.options.answer.withinMs : undefined;
    if (event.type === "assistant_speech_ended" && this.answers.swallowEcho(callId)) return;
    if (event.type === "user_speak" && event.barged_in) this.answers.callerSpeaking(callId);
    let call = this.calls.get(callId);
    if (!call) this.calls.set(callId, (call = { inFlight: 0, ended: false, collects: new Set(), withheld: [] }));
    call.inFlight++;
    try {
      if (event.type === "session_end") {
        this.answers.forget(callId);
        // Nothing is pushed for the call from now on: what still waits is withdrawn by the session_end turn.
        call.ended = true;
        // A collect already under way finishes first: what it took is known before the session_end turn runs.
        if (call.collects.size) await Promise.allSettled([...call.collects]);
      }
      await this.handleEvent(event, key, push, call, deadline, signal);
    } finally {
      if (--call.inFlight === 0 && this.calls.get(callId) === call) this.calls.delete(callId);
    }
  }

  private async handleEvent(event: AiFlowEvent, key: string, push: (a: AiFlowAction) => boolean | void, call: WsCall, deadline: number | undefined, signal?: AbortSignal): Promise<void> {
    const callId = event.session.id;
    try {
      const arrival = await this.worker.arrive(callId, { key, event, via: "ws", holdingFollowUp: false });
      if (arrival.kind !== "queued") return;
      const seq = arrival.seq;
      const until = this.worker.timers.now() + MAX_WATCH_MS;
      let spoke = false;
      const pushed = new WeakSet<AiFlowAction>();
      const stream: LocalStream = {
        pushed,
        signal,
        sink: this.deps.options.speech.streamSentences
          ? (a) => {
              // After session_end nothing is pushed: the line stays in the turn's entry, which the call's end discards.
              if (call.ended) return;
              spoke = true;
              pushed.add(a);
              push(a);
            }
          : undefined,
      };
      const giveBack = this.worker.lend(callId, seq, stream);
      try {
        this.worker.startProcessing(callId, seq);
        // One holding line at a time per call, and only where the caller waits for an answer.
        const waits = this.answers.wsMayHold(callId, event);
        const first = await this.worker.progress.forTurn(callId, seq, deadline, until);
        if (first === undefined && waits && !spoke && !signal?.aborted && !call.ended) {
          // No input timeout on the socket's holding line: its silence must not reach the flow.
          push(this.answers.wsHolding(callId));
          telemetry.event("holding_line", {});
        }
        // The caller's voice cancels generation, not delivery: what the turn committed still goes out.
        // Bounded all the same: a call the store lost, or a turn nobody finishes, ends the wait.
        const turn = first ?? (await this.worker.progress.forTurn(callId, seq, undefined, until)) ?? "timed_out";
        if (turn !== "done") {
          this.answers.wsAnswered(callId);
          const lost = this.answers.turnLost(event, seq, turn, call.ended);
          if (lost.actions.length) {
            // The call ends here: nothing more is pushed for it.
            call.ended = true;
            for (const a of lost.actions) push(a);
          }
          return;
        }
        // session_end arrived: nothing is pushed after it; what waits is the session_end turn's to withdraw.
        if (call.ended) return;
        // Every ws entry ready by now, in order: one held back for this event's verdict leaves here.
        let withheld = false;
        const taking = this.collects.take(callId, { via: "ws", seq, collecting: true, mayHold: false, maxHoldingLines: 0 }).then((c): Collected => {
          // Back in the outbox (a send the caller's words may have overtaken): it leaves with a later event.
          if (c === HELD_BACK) return { kind: "nothing" };
          // session_end arrived while the collect was under way: what it took is never pushed, and
          // is handed to the session_end turn (which waits for this) as undelivered.
          if (call.ended && c.kind === "actions") {
            call.withheld.push(...c.entries);
            withheld = true;
          }
          return c;
        });
        call.collects.add(taking);
        let collected: Collected;
        try {
          collected = await taking;
        } finally {
          call.collects.delete(taking);
        }
        // This event's answer is out: the next turn may get a holding line of its own.
        this.answers.wsAnswered(callId);
        if (collected.kind !== "actions") return;
        if (call.ended) {
          // Withheld: the session_end turn tells the flow; ended only since: nothing is pushed after it.
          if (!withheld) await this.worker.outcomes.notSent(callId, collected.entries, "call_ended", event.type);
          return;
        }
        // Pushed frame by frame, in order; each action's fate stays with the entry (the event) that produced it.
        const pushed = collected.entries.map((e) => {
          const lost = e.actions.filter((a) => push(a) === false);
          return { sent: { seq: e.seq, actions: e.actions.filter((a) => !lost.includes(a)) }, lost: { seq: e.seq, actions: lost } };
        });
        telemetry.delivered(callId, "ws", pushed.map((p) => p.sent));
        await this.worker.outcomes.handedOver(callId, pushed.map((p) => p.sent));
        // The socket closed meanwhile: an approved SMS that could not be pushed was not sent.
        await this.worker.outcomes.notSent(callId, pushed.map((p) => p.lost), "not_written", event.type);
      } finally {
        giveBack();
      }
    } catch (e) {
      if (!(e instanceof StoreUnavailableError)) throw e;
      const actions = this.answers.storeUnavailable(event, e).actions;
      if (!call.ended) for (const a of actions) push(a);
    }
  }
}
