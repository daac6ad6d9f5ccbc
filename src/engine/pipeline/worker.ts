import { randomUUID } from "node:crypto";
import { actions as build } from "../../aiflow/actions.js";
import { CONVERSATIONAL } from "../../aiflow/eventKinds.js";
import type { CallState } from "../../core/callState.js";
import { emptyTurnRecord } from "../../core/turnRecord.js";
import { StoreUnavailableError, type Arrival, type CommitResult, type NotedEntry, type OutboxEntry, type QueuedEvent } from "../../store/callStore.js";
import { systemClock, type Clock } from "../clock.js";
import type { FlowTypes, OutcomeEntry } from "../define.js";
import type { Engine, TurnOutcome } from "../engine.js";
import { speakOptions } from "../speech.js";
import { Arrivals } from "./arrivals.js";
import { ActionOutcomes } from "./outcomes.js";
import { committedAnyway, ranAfterAll } from "./commitCheck.js";
import { untilAnswered } from "./resend.js";
import { CallProgress } from "./progress.js";
import { MAX_WATCH_MS, type Arriving, type LocalStream, type PipelineDeps } from "./types.js";
import { telemetry } from "../../core/telemetry.js";

/** A turn that killed its instance this often is skipped (a possible "no"): one poisonous event cannot take down every instance in turn; lease losses and store errors do not count. */
const MAX_ATTEMPTS = 3;

/**
 * The worker that runs a call's turns: every event is queued for its call; whichever instance
 * holds the call's lease runs the queued turns one at a time, in arrival order, and commits each
 * one, fenced, to the shared store (state, the turn's actions into the outbox, the event off the
 * queue). It knows no transport: answers are collected from the outbox by the answerers.
 */
export class CallWorker<F extends FlowTypes = FlowTypes> {
  readonly progress: CallProgress;
  /** What became of the call's actions, as the flow hears it (the answerers report theirs here too). */
  readonly outcomes: ActionOutcomes<F>;
  readonly timers: Clock;
  private readonly pollMs: number;
  private readonly pumps = new Map<string, Promise<void>>();
  /** Each call's after-commit work still running (snapshots), in turn order. */
  private readonly afterCommits = new Map<string, Promise<void>>();
  private readonly rekick = new Set<string>();
  /** What the transports lend the turns of their events, by call and seq. */
  private readonly streams = new Map<string, LocalStream>();
  private readonly watchers = new Set<Promise<void>>();
  private closing = false;
  readonly arrivals: Arrivals;
  /** Per call: a turn whose commit failed (the store did not answer), to be committed as it was. */
  /** Turns whose commit threw: with the request id it went out under, so the store can be asked again what became of it. */
  private readonly uncommitted = new Map<string, { seq: number; outcome: TurnOutcome<F["state"]>; droppable: boolean; requestId: string }>();

  constructor(
    private readonly deps: PipelineDeps<F>,
    /** What a socket took from the outbox after session_end arrived and never pushed (the session_end turn's undelivered too). */
    private readonly takeWithheld?: (callId: string) => OutboxEntry[],
  ) {
    this.pollMs = deps.pollMs ?? 20;
    this.timers = deps.timers ?? systemClock;
    this.progress = new CallProgress(deps.store, deps.clock, this.timers, this.pollMs, (callId) => this.pumps.has(callId));
    this.outcomes = new ActionOutcomes(deps, this.timers, this.pollMs, () => this.closing, (work) => this.background(work));
    this.arrivals = new Arrivals(deps.store, this.timers, Math.max(this.pollMs, 100), deps.log, {
      queued: (callId, seq) => this.startProcessing(callId, seq),
      settled: (callId) => void this.kick(callId),
      closing: () => this.closing,
      background: (work) => this.background(work),
    });
  }

  /** Lend the turn of event `seq` a transport's stream (sink, signal); its record is left there. */
  lend(callId: string, seq: number, stream: LocalStream): () => void {
    const key = streamKey(callId, seq);
    this.streams.set(key, stream);
    return () => this.streams.delete(key);
  }

  /** Graceful shutdown: turns still running in the background finish before the store closes. */
  async drain(): Promise<void> {
    this.closing = true;
    while (this.pumps.size > 0 || this.watchers.size > 0 || this.afterCommits.size > 0) {
      await Promise.allSettled([...this.pumps.values(), ...this.watchers, ...this.afterCommits.values()]);
    }
    // Turns whose commit never went through: what they approved never leaves from here.
    for (const [callId, { seq, outcome }] of this.uncommitted) await this.outcomes.stoppedUncommitted(callId, seq, outcome.record.actions, outcome.record.event);
    this.uncommitted.clear();
  }

  /** Work that outlives the request that started it: a graceful shutdown waits for it. */
  background(work: Promise<void>): void {
    this.watchers.add(work);
    void work.finally(() => this.watchers.delete(work));
  }

  /** Queue an event (see Arrivals: words kept through a store outage go first). */
  arrive(callId: string, e: Arriving): Promise<Arrival> {
    return this.arrivals.arrive(callId, e);
  }

  /**
   * Get the call's queue worked off: here, if the lease is free; otherwise by its holder. Until
   * the event is done this instance keeps asking, so a holder that died (its lease ran out)
   * is replaced by the next instance that has an event of the call waiting.
   */
  startProcessing(callId: string, seq: number): void {
    void this.kick(callId);
    if (!this.deps.store.shared) return;
    const watcher = (async () => {
      const started = this.timers.now();
      const retryEvery = Math.max(this.pollMs, Math.floor(this.deps.options.answer.leaseMs / 4));
      while (!this.closing && this.timers.now() - started < MAX_WATCH_MS) {
        // First a while: the pump kicked above has most events done by then.
        await this.timers.sleep(retryEvery);
        try {
          const p = await this.deps.store.progress(callId);
          // Done, or the store no longer knows the event (the call's keys are gone): nothing left to get processed.
          if (p.processed >= seq || p.queued < seq) return;
        } catch {
          // The store is down: try again; answers meanwhile apologize.
        }
        void this.kick(callId);
      }
    })();
    this.background(watcher);
  }

  /** One pump per call and instance; a kick while it runs makes it look once more before it stops. */
  private kick(callId: string): Promise<void> {
    // Caller words still waiting to be queued come first: nothing of the call runs here before them.
    if (this.arrivals.waiting(callId)) return Promise.resolve();
    const running = this.pumps.get(callId);
    if (running) {
      this.rekick.add(callId);
      return running;
    }
    const pump = this.pump(callId)
      .catch((e: Error) => this.deps.log.error({ sessionId: callId, err: e.stack ?? e.message }, "call pump failed"))
      .finally(() => {
        this.pumps.delete(callId);
        this.progress.notify(callId);
        if (this.rekick.delete(callId)) void this.kick(callId);
      });
    this.pumps.set(callId, pump);
    return pump;
  }

  private async pump(callId: string): Promise<void> {
    const { store, log } = this.deps;
    const leaseMs = this.deps.options.answer.leaseMs;
    const token = randomUUID();
    if (!(await store.acquireLease(callId, token, leaseMs))) return;
    // Set when a renewal finds the lease gone (or cannot tell): the running turn still finishes
    // (a caller event is never given up on while this instance lives), but its commit is fenced
    // and the event runs again wherever the lease is now.
    const lost = new AbortController();
    const stopRenewing = new AbortController();
    const renewEvery = Math.max(50, Math.floor(leaseMs / 3));
    const renewOnce = () => {
      store
        .renewLease(callId, token, leaseMs)
        .then((r) => {
          if (!r.held && !lost.signal.aborted) {
            log.error({ sessionId: callId }, "lease lost mid-turn: the turn's result will not be committed here");
            lost.abort();
          }
        })
        .catch((e: Error) => {
          // Without a renewal this instance cannot know it still owns the call: it stops taking events.
          log.error({ sessionId: callId, err: e.message }, "lease renewal failed: no further events taken here");
          lost.abort();
        });
    };
    void (async () => {
      for (;;) {
        await this.timers.sleep(renewEvery, stopRenewing.signal);
        if (stopRenewing.signal.aborted) return;
        renewOnce();
      }
    })();
    try {
      while (!lost.signal.aborted) {
        const next = await store.nextEvent(callId, token);
        if (!next.held || !next.event) break;
        let outcome: CommitResult;
        try {
          outcome = await telemetry.turn(callId, next.event.key, next.event.seq, next.event.event.type, () => this.runQueued(callId, token, next.event!, next.pendingSends ?? [], next.notSent ?? []), next.event.trace);
        } catch (e) {
          // A store error is no crash of this instance: its attempt does not count (given back once the store answers).
          if (e instanceof StoreUnavailableError) await store.yieldEvent(callId, next.event.seq).catch(() => undefined);
          throw e;
        }
        this.progress.notify(callId);
        if (outcome === "lease_lost") {
          // Not a crash: the attempt is given back, so only turns that killed an instance count.
          await store.yieldEvent(callId, next.event.seq).catch((e: Error) => log.warn({ sessionId: callId, err: e.message }, "giving back an attempt failed"));
          // Maybe only a blip (one failed renewal): look again once the lease is released.
          this.rekick.add(callId);
          break;
        }
      }
    } finally {
      stopRenewing.abort();
      await store.releaseLease(callId, token).catch((e: Error) => log.warn({ sessionId: callId, err: e.message }, "lease release failed (it expires)"));
    }
  }

  private async runQueued(callId: string, token: string, q: QueuedEvent, pendingSends: OutboxEntry[], noted: NotedEntry[]): Promise<CommitResult> {
    const { store, engine, options, log } = this.deps;
    const droppable = CONVERSATIONAL.has(q.event.type);
    const ttlSeconds = options.limits.sessionTtlSeconds;
    const local = this.streams.get(streamKey(callId, q.seq));
    const unsaved = this.uncommitted.get(callId);
    if (unsaved) {
      this.uncommitted.delete(callId);
      // The turn ran here and only its commit failed: it is committed as it was, not run again (the
      // caller's words were judged once; a "no" stays a "no"). Processed elsewhere meanwhile: what
      // it approved never left.
      if (unsaved.seq === q.seq) return this.commitOutcome(callId, token, q, unsaved.outcome, local, unsaved.droppable);
      // The queue went on: that commit may have gone through with its reply lost. The store answers
      // its request id as it did then; only if it never ran did what it approved never leave.
      if (!(await ranAfterAll(this.deps.store, callId, token, unsaved, this.deps.options.limits.sessionTtlSeconds))) await this.outcomes.commitFailedDone(callId, unsaved.seq, unsaved.outcome.record.actions, q.event.type);
    }
    const current = await store.get(callId);
    // Sends noted as never sent after their commit: the state stops counting them (see ActionOutcomes.notesFor).
    const notSentSeen = current ? await this.outcomes.applyNoted(callId, await this.outcomes.notesFor(callId, q.event.type === "session_end", noted), current) : [];
    if (q.attempts > MAX_ATTEMPTS) {
      log.error({ sessionId: callId, event: q.event.type, attempts: q.attempts }, "event skipped: its turn crashed an instance several times; it counts as a possible no");
      if (!CONVERSATIONAL.has(q.event.type)) {
        const skipped = await store.commit(callId, token, { seq: q.seq, state: undefined, ttlSeconds, droppable: false });
        if (skipped === "committed") await this.outcomes.rerunDone(callId, q.seq, "instance_stopped");
        return skipped;
      }
      // Never evaluated is a possible "no": pending sends are withdrawn and an offer ends.
      const outcome = await engine.runUnevaluated(current, q.event, { pendingSends, attempt: q.attempts, seq: q.seq });
      if (local) local.record = outcome.record;
      return this.commitOutcome(callId, token, q, outcome, local, false, notSentSeen);
    }
    if (!current && CONVERSATIONAL.has(q.event.type) && (await store.progress(callId)).ended) {
      // A late or redelivered caller event of a call that ended starts no new conversation
      // (an explicit session_start does; sms_failed still gets its bookkeeping).
      log.info({ sessionId: callId, event: q.event.type }, "event after session_end ignored");
      return store.commit(callId, token, { seq: q.seq, state: undefined, ttlSeconds, droppable: false });
    }
    let outcome: Awaited<ReturnType<Engine<F>["runTurn"]>>;
    try {
      // Only the lease and a given-up answer decide whether a send may still leave; the caller's
      // voice cancels generation, not the send. A caller event given up on (the caller heard the
      // apology) still runs: it may be a "no", which is committed even then.
      const stillOwner = async () => {
        const r = await store.renewLease(callId, token, options.answer.leaseMs);
        return r.held && !(droppable && r.droppedThrough >= q.seq);
      };
      // The call ends: late actions still waiting for an answer never leave; an SMS among them was
      // not sent. Taken before the turn, so the flow's last bookkeeping knows.
      const undelivered = q.event.type === "session_end" ? await this.discardOutbox(callId) : undefined;
      outcome = await engine.runTurn(current, q.event, q.key, { sink: local?.sink, signal: local?.signal, stillOwner, undelivered, heard: q.heard, barged: q.barged, pendingSends, attempt: q.attempts, seq: q.seq });
    } catch (e) {
      // A bug outside the turn's own error handling: the queue must move on, and the caller hears an apology.
      log.error({ sessionId: callId, event: q.event.type, err: (e as Error).stack ?? String(e) }, "turn failed outside the engine's recovery");
      const record = emptyTurnRecord(callId, q.event.type);
      record.guardDecisions.push({ subject: "turn", allowed: false, reason: "internal_error", detail: (e as Error).message });
      if (CONVERSATIONAL.has(q.event.type) || q.event.type === "session_start") record.actions = [build.speak(callId, this.deps.prompts.line("fallback"), speakOptions(options.speech, options.speech.userInputTimeoutSeconds))];
      outcome = { record, next: { kind: "keep" } };
    }
    // The caller spoke over this turn (a barge-in cancelled it): what it queued may not have been
    // heard before their words, so nothing of it counts as the last line they answered.
    if (local?.signal?.aborted && outcome.next.kind === "save") outcome.next.state.spoken++;
    if (local) local.record = outcome.record;
    return this.commitOutcome(callId, token, q, outcome, local, droppable, notSentSeen);
  }

  /** Commit a turn's outcome (fenced), and record what never left. */
  private async commitOutcome(callId: string, token: string, q: QueuedEvent, outcome: TurnOutcome<F["state"]>, local: LocalStream | undefined, droppable: boolean, notSentSeen: number[] = []): Promise<CommitResult> {
    const { store, options } = this.deps;
    const { record, next } = outcome;
    // A redelivery over the socket pushes nothing twice; over HTTP the lost answer is given again,
    // unless the first answer is still waiting in the outbox (then that one is collected instead).
    const firstStillWaiting = record.duplicate && (await store.progress(callId)).ready[q.via] > 0;
    const deliver = (q.via === "ws" && record.duplicate) || firstStillWaiting ? [] : record.actions.filter((a) => !local?.pushed.has(a));
    // The store decides, atomically: committed, dropped (an answer gave up on it) or lease_lost (fenced).
    let result: CommitResult;
    // Sent under one request id until the store answers: a try whose reply was lost is answered as it ran.
    const requestId = randomUUID();
    try {
      const request = {
        seq: q.seq,
        state: next.kind === "save" ? next.state : next.kind === "delete" ? null : undefined,
        ttlSeconds: options.limits.sessionTtlSeconds,
        entry: { seq: q.seq, via: q.via, actions: deliver, ...(next.kind === "save" ? { spokenThrough: next.state.spoken } : {}) },
        // A "no" is never dropped: the caller heard the apology, and the decline still holds.
        droppable: droppable && !record.withdrawal,
        ...(outcome.withdrawn?.length ? { withdraw: outcome.withdrawn } : {}),
        ...(notSentSeen.length && next.kind === "save" ? { notSentSeen } : {}),
      };
      result = await untilAnswered(this.timers, (rid) => store.commit(callId, token, request, rid), requestId);
    } catch (e) {
      // Nothing of the turn was written (unless the store says it was after all). The outcome is kept
      // and committed as it is when this instance takes the event up again; if the store cannot be
      // asked, or this instance is closing, what the gate approved never leaves from here.
      if (!(await committedAnyway(this.deps.store, callId, q.seq))) {
        if (this.closing) await this.outcomes.stoppedUncommitted(callId, q.seq, record.actions, q.event.type);
        else this.uncommitted.set(callId, { seq: q.seq, outcome, droppable, requestId });
      }
      throw e;
    }
    const produced = [{ seq: q.seq, actions: record.actions }];
    if (result === "committed") {
      this.deps.onTurn?.(record, q.event, q.via);
      if (next.kind === "save") this.afterCommit(callId, next.state, q.seq);
    } else if (result === "dropped") await this.outcomes.notSent(callId, produced, "dropped", q.event.type);
    else {
      // Fenced out: the event runs again where the lease is now, maybe producing the same actions
      // (same evidence ids); what this attempt produced is settled once the event is done.
      await this.outcomes.notSent(callId, produced, "lease_lost", q.event.type, true);
      if (record.actions.length) this.outcomes.settleWhenDone(callId, q.seq, produced);
    }
    // An earlier attempt died with its instance: what it left (an approval) that this result does not carry never left.
    if (result !== "lease_lost" && q.attempts > 1) await this.outcomes.rerunDone(callId, q.seq, "instance_stopped", undefined, result === "committed" && next.kind === "save" ? next.state : undefined);
    return result;
  }

  /**
   * The flow's after-commit work (a report snapshot) runs off the answer path: the answer and the
   * call's next turn never wait for it. Chained per call, so snapshots are saved in turn order; on
   * a copy of the state, which the next turn does not touch.
   */
  private afterCommit(callId: string, state: CallState<F["state"]>, seq: number): void {
    if (!this.deps.engine.hasAfterCommit) return;
    const snapshot = structuredClone(state);
    const previous = this.afterCommits.get(callId) ?? Promise.resolve();
    const work = previous
      .then(() => this.deps.engine.committed(snapshot, seq))
      .catch((e: Error) => this.deps.log.error({ sessionId: callId, err: e.message }, "after-commit work failed"))
      .finally(() => {
        if (this.afterCommits.get(callId) === work) this.afterCommits.delete(callId);
      });
    this.afterCommits.set(callId, work);
  }

  /** Take every entry still waiting in the call's outbox, for a call that ends: none of it will be said. Returns them. */
  private async discardOutbox(callId: string): Promise<OutcomeEntry[]> {
    const discarded: OutcomeEntry[] = [];
    for (const via of ["http", "ws"] as const) {
      // Sent again under its request id until the store answers: a try whose reply was lost took them all the same.
      const left = await untilAnswered(this.timers, (rid) => this.deps.store.collect(callId, { via, collecting: true, mayHold: false, maxHoldingLines: 0, ignoreVerdicts: true }, rid));
      // The session_end turn tells the flow (with the call's last state).
      if (left.kind === "actions") discarded.push(...left.entries);
    }
    // What a socket's collect took after session_end arrived (never pushed): not sent either.
    discarded.push(...(this.takeWithheld?.(callId) ?? []));
    return discarded;
  }
}

function streamKey(callId: string, seq: number): string {
  return `${callId}\u0000${seq}`;
}
