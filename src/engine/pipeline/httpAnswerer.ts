import type { AiFlowEvent } from "../../aiflow/events.js";
import { COLLECTING, HOLDING_FOLLOW_UPS } from "../../aiflow/eventKinds.js";
import { emptyTurnRecord, type TurnRecord } from "../../core/turnRecord.js";
import { StoreUnavailableError, type CallStore, type OutboxEntry } from "../../store/callStore.js";
import type { FlowTypes } from "../define.js";
import type { Answers } from "./answers.js";
import { HELD_BACK, LostCollects, STORE_ROUND_TRIP_MS } from "./lostCollects.js";
import { MAX_WATCH_MS, type Answer, type LocalStream, type PipelineDeps } from "./types.js";
import type { CallWorker } from "./worker.js";
import { telemetry } from "../../core/telemetry.js";
import { InvariantError } from "../../core/errors.js";

/**
 * The webhook's answerer: one event in, its answer within the deadline (`server.answerWithinMs`):
 * the event's own turn's actions with whatever earlier turns left for it, or a holding line (the
 * store decides when, atomically), and the apology after the last one. An answer the transport
 * could not write is put back (`Answer.lost`).
 */
export class HttpAnswerer<F extends FlowTypes = FlowTypes> {
  private readonly store: CallStore<F["state"]>;
  private readonly collects: LostCollects;

  constructor(
    private readonly deps: PipelineDeps<F>,
    private readonly worker: CallWorker<F>,
    private readonly answers: Answers,
  ) {
    this.store = deps.store;
    this.collects = new LostCollects(deps.store, worker, worker.timers, deps.clock, deps.log);
  }

  /** The webhook: one event in, its answer within the deadline. */
  async answer(event: AiFlowEvent, key: string): Promise<Answer> {
    const callId = event.session.id;
    const { clock } = this.deps;
    const withinMs = this.deps.options.answer.withinMs;
    const deadline = withinMs > 0 ? clock.now() + withinMs : undefined;
    // The answer's last store request (the collect) gets a round trip of the deadline: one that needs
    // a reconnect does not fit, and the answer leaves without it (see LostCollects.take).
    const waitUntil = deadline === undefined ? undefined : deadline - Math.min(STORE_ROUND_TRIP_MS, Math.floor(withinMs / 4));
    try {
      const arrival = await this.worker.arrive(callId, { key, event, via: "http", holdingFollowUp: HOLDING_FOLLOW_UPS.has(event.type) });
      const seq = arrival.kind === "queued" ? arrival.seq : undefined;
      const until = this.worker.timers.now() + MAX_WATCH_MS;
      if (seq !== undefined) {
        // A queued event waits for its own turn (never longer than the deadline allows, if there is one).
        this.worker.startProcessing(callId, seq);
        const turn = await this.worker.progress.forTurn(callId, seq, waitUntil, until);
        if (turn === "vanished" || turn === "timed_out") return this.answers.turnLost(event, seq, turn);
      } else {
        // A holding line's follow-up waits for anything to collect.
        await this.worker.progress.until(
          callId,
          async () => {
            const p = await this.store.progress(callId);
            return p.ready.http > 0 || p.processed >= p.queued || this.worker.timers.now() >= until;
          },
          waitUntil,
          undefined,
          until,
        );
      }
      const collecting = COLLECTING.has(event.type);
      // The end of the holding line's speech is no reason for another one: its short input timeout comes next.
      const mayHold = collecting && event.type !== "assistant_speech_ended";
      const collected = await this.collects.take(callId, { via: "http", seq, collecting, mayHold, maxHoldingLines: this.deps.options.answer.maxHoldingLines }, deadline);
      if (collected === HELD_BACK) {
        // What the collect took leaves with a later answer.
        return mayHold ? this.answers.answered("holding", [this.answers.holdingLine(callId, this.deps.options.answer.holdingTimeoutSeconds)]) : this.answers.answered("nothing", []);
      }
      switch (collected.kind) {
        case "actions":
          telemetry.delivered(callId, "http", collected.entries);
          return {
            ...this.answers.answered("actions", collected.actions),
            // Run later, by the transport: their writes (the handover record) stay in the event's trace.
            lost: telemetry.bind(this.putBackOnce(callId, collected.entries, collected.processed)),
            written: telemetry.bind(() => this.worker.outcomes.handedOver(callId, collected.entries)),
          };
        case "hold":
          telemetry.event("holding_line", { "aiflow.holding_line": collected.count });
          this.deps.log.info({ sessionId: callId, event: event.type, holdingLine: collected.count }, "turn not done within the deadline: holding line");
          return this.answers.answered("holding", [this.answers.holdingLine(callId, this.deps.options.answer.holdingTimeoutSeconds)]);
        case "give_up":
          this.deps.log.warn({ sessionId: callId, event: event.type, droppedThrough: collected.droppedThrough }, "turn still not done after the last holding line: apology, late result dropped");
          return this.answers.answered("gave_up", [this.answers.gaveUp(callId)]);
        case "nothing":
          return this.answers.answered("nothing", []);
      }
    } catch (e) {
      if (!(e instanceof StoreUnavailableError)) throw e;
      return this.answers.storeUnavailable(event, e);
    }
  }

  /**
   * One event, waited for without a deadline: what tests, evals and benchmarks use to look at a
   * turn's record. The event's own actions are taken from the outbox like any answer.
   */
  async process(event: AiFlowEvent, key: string = JSON.stringify(event)): Promise<TurnRecord> {
    const callId = event.session.id;
    const { store } = this.deps;
    try {
      const arrival = await store.arrive(callId, { key, event, via: "http", holdingFollowUp: false });
      if (arrival.kind !== "queued") throw new InvariantError("unreachable: process() never collects");
      const seq = arrival.seq;
      this.worker.progress.queued(callId, seq);
      const stream: LocalStream = { pushed: new WeakSet() };
      const giveBack = this.worker.lend(callId, seq, stream);
      try {
        this.worker.startProcessing(callId, seq);
        const turn = (await this.worker.progress.forTurn(callId, seq, undefined, this.worker.timers.now() + MAX_WATCH_MS)) ?? "timed_out";
        if (turn !== "done") {
          const record = stream.record ?? emptyTurnRecord(callId, event.type);
          record.actions = this.answers.turnLost(event, seq, turn).actions;
          record.guardDecisions.push({ subject: "turn", allowed: false, reason: "store_unavailable", detail: turn === "vanished" ? "the call vanished from the store" : "the turn was not done in time" });
          return record;
        }
        await store.collect(callId, { via: "http", seq, collecting: false, mayHold: false, maxHoldingLines: 0 });
        return stream.record ?? emptyTurnRecord(callId, event.type);
      } finally {
        giveBack();
      }
    } catch (e) {
      if (!(e instanceof StoreUnavailableError)) throw e;
      const record = emptyTurnRecord(callId, event.type);
      record.actions = this.answers.storeUnavailable(event, e).actions;
      record.guardDecisions.push({ subject: "turn", allowed: false, reason: "store_unavailable", detail: e.message });
      return record;
    }
  }

  /** Put a lost answer's entries back, once (see LostCollects.putBack). */
  private putBackOnce(callId: string, entries: OutboxEntry[], processedAtCollect: number): () => Promise<void> {
    let done: Promise<void> | undefined;
    return () => (done ??= this.collects.putBack(callId, entries, processedAtCollect));
  }
}
