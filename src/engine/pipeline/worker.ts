import { randomUUID } from "node:crypto";
import { actions as build } from "../../aiflow/actions.js";
import { CONVERSATIONAL } from "../../aiflow/eventKinds.js";
import { emptyTurnRecord } from "../../core/turnRecord.js";
import { StoreUnavailableError, type Arrival, type CommitThen, type CommitRequest, type NextEvent, type NotedEntry, type OutboxEntry, type QueuedEvent } from "../../store/callStore.js";
import { Stop, systemClock, type Clock } from "../clock.js";
import type { FlowTypes } from "../define.js";
import type { Engine, TurnOutcome } from "../engine.js";
import { speakOptions } from "../speech.js";
import { Arrivals } from "./arrivals.js";
import { ActionOutcomes } from "./outcomes.js";
import { committedAnyway, ranAfterAll } from "./commitCheck.js";
import { untilAnswered } from "./resend.js";
import { CallProgress } from "./progress.js";
import { Pumps, type TakenLease } from "./pumps.js";
import { AfterCommits } from "./afterCommits.js";
import { discardOutbox } from "./discard.js";
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
  readonly pumps: Pumps<F["state"]>;
  /** Each call's after-commit work still running (snapshots), in turn order. */
  private readonly afterCommits: AfterCommits<F>;
  /** What the transports lend the turns of their events, by call and seq. */
  private readonly streams = new Map<string, LocalStream>();
  private readonly watchers = new Set<Promise<void>>();
  /** Events (call, seq) whose call's lease another instance held when they arrived. */
  private readonly heldElsewhere = new Set<string>();
  private closing = false;
  readonly arrivals: Arrivals<F["state"]>;
  /** Turns whose commit threw: with the request id it went out under, so the store can be asked again what became of it. */
  private readonly uncommitted = new Map<string, { seq: number; outcome: TurnOutcome<F["state"]>; droppable: boolean; requestId: string }>();

  constructor(
    private readonly deps: PipelineDeps<F>,
    /** What a socket took from the outbox after session_end arrived and never pushed (the session_end turn's undelivered too). */
    private readonly takeWithheld?: (callId: string) => OutboxEntry[],
  ) {
    this.pollMs = deps.pollMs ?? 20;
    this.timers = deps.timers ?? systemClock;
    this.afterCommits = new AfterCommits(deps.engine, deps.log);
    this.pumps = new Pumps(
      (callId, taken) => this.pump(callId, taken),
      (callId, e) => this.deps.log.error({ sessionId: callId, err: e.stack ?? e.message }, "call pump failed"),
      (callId) => this.progress.notify(callId),
      (callId) => this.arrivals.waiting(callId),
    );
    this.progress = new CallProgress(deps.store, deps.clock, this.timers, deps.options.answer.leaseMs, (callId) => this.pumps.has(callId));
    this.outcomes = new ActionOutcomes(deps, this.timers, this.pollMs, () => this.closing, (work) => this.background(work));
    this.arrivals = new Arrivals(deps.store, this.timers, Math.max(this.pollMs, 100), deps.log, {
      queued: (callId, seq) => {
        this.progress.queued(callId, seq);
        this.startProcessing(callId, seq);
      },
      settled: (callId) => void this.pumps.kick(callId),
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
      await Promise.allSettled([...this.pumps.all(), ...this.watchers, ...this.afterCommits.all()]);
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

  /**
   * Queue an event (see Arrivals: words kept through a store outage go first). When no pump of the
   * call runs here, the arrival takes the call's lease if it is free, with the event to run: the
   * turn starts without asking the store again.
   */
  async arrive(callId: string, e: Arriving): Promise<Arrival> {
    const mayTake = !this.closing && !this.pumps.has(callId) && !this.arrivals.waiting(callId);
    const lease = mayTake ? { token: randomUUID(), ttlMs: this.deps.options.answer.leaseMs } : undefined;
    const arrival = await this.arrivals.arrive(callId, e, lease);
    if (arrival.kind === "queued") this.progress.queued(callId, arrival.seq);
    if (arrival.kind === "queued" && lease && !arrival.taken && this.deps.store.shared) this.heldElsewhere.add(streamKey(callId, arrival.seq));
    if (arrival.kind === "queued" && arrival.taken && lease) {
      // Run by startProcessing, once the transport has lent the turn its stream; at the latest after this tick.
      this.pumps.took(callId, { token: lease.token, next: arrival.taken, seq: arrival.seq });
      return { kind: "queued", seq: arrival.seq };
    }
    return arrival.kind === "queued" ? { kind: "queued", seq: arrival.seq } : arrival;
  }

  /**
   * Get the call's queue worked off: here, if the lease is free; otherwise by its holder. Until
   * the event is done this instance keeps watching, so a holder that died (its lease ran out) is
   * replaced by the next instance that has an event of the call waiting. The watch asks the store
   * nothing while this instance's own pump runs the call (it notifies); another instance's progress
   * is announced by the store, and a dead holder shows by its lease running out, so the store is
   * asked after a lease's time at most.
   */
  startProcessing(callId: string, seq: number): void {
    this.pumps.start(callId);
    // Held elsewhere when it arrived: its holder takes the event with its commit (no lease to ask for now).
    if (!this.heldElsewhere.delete(streamKey(callId, seq))) void this.pumps.kick(callId, seq);
    if (!this.deps.store.shared) return;
    const watcher = (async () => {
      const started = this.timers.now();
      const leaseMs = this.deps.options.answer.leaseMs;
      while (!this.closing && this.timers.now() - started < MAX_WATCH_MS) {
        await this.progress.change(callId, leaseMs);
        if (this.progress.doneHere(callId, seq)) return;
        if (this.pumps.has(callId)) continue;
        try {
          const p = await this.deps.store.progress(callId);
          // Done, or the store no longer knows the event (the call's keys are gone): nothing left to get processed.
          if (p.processed >= seq || p.queued < seq) return;
        } catch {
          // The store is down: try again; answers meanwhile apologize.
        }
        void this.pumps.kick(callId, seq);
      }
    })();
    this.background(watcher);
  }

  private async pump(callId: string, taken?: TakenLease<F["state"]>): Promise<void> {
    const { store, log } = this.deps;
    const leaseMs = this.deps.options.answer.leaseMs;
    const token = taken?.token ?? randomUUID();
    if (!taken && !(await store.acquireLease(callId, token, leaseMs))) return;
    // Set when a renewal finds the lease gone (or cannot tell): the running turn still finishes
    // (a caller event is never given up on while this instance lives), but its commit is fenced
    // and the event runs again wherever the lease is now.
    const lost = new Stop();
    const stopRenewing = new Stop();
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
    /** The lease went with the last commit (nothing was queued): nothing to release. */
    let released = false;
    try {
      let next = taken?.next ?? (await store.nextEvent(callId, token));
      for (;;) {
        if (!next.held || !next.event) break;
        if (lost.signal.aborted) {
          // Taken with the last commit, but this instance no longer knows it owns the call: given back.
          await store.yieldEvent(callId, next.event.seq).catch(() => undefined);
          break;
        }
        const event = next.event;
        this.pumps.saw(callId, event.seq);
        let step: CommitThen<F["state"]>;
        try {
          const noted = next.notSent ?? [];
          step = await telemetry.turn(callId, event.key, event.seq, event.event.type, () => this.runQueued(callId, token, event, next.pendingSends ?? [], next.current, noted), event.trace);
        } catch (e) {
          // A store error is no crash of this instance: its attempt does not count (given back once the store answers).
          if (e instanceof StoreUnavailableError) await store.yieldEvent(callId, event.seq).catch(() => undefined);
          throw e;
        }
        if (step.result !== "lease_lost") this.progress.processed(callId, event.seq);
        if (step.released) {
          released = true;
          this.pumps.saw(callId, step.released.queued);
        }
        this.progress.notify(callId);
        if (step.result === "lease_lost") {
          // Not a crash: the attempt is given back, so only turns that killed an instance count.
          await store.yieldEvent(callId, event.seq).catch((e: Error) => log.warn({ sessionId: callId, err: e.message }, "giving back an attempt failed"));
          // Maybe only a blip (one failed renewal): look again once the lease is released.
          this.pumps.again(callId);
          break;
        }
        if (released) break;
        next = step.next ?? (await store.nextEvent(callId, token));
      }
    } finally {
      stopRenewing.abort();
      if (!released) await store.releaseLease(callId, token).catch((e: Error) => log.warn({ sessionId: callId, err: e.message }, "lease release failed (it expires)"));
    }
  }

  private async runQueued(callId: string, token: string, q: QueuedEvent, pendingSends: OutboxEntry[], read: NextEvent<F["state"]>["current"], noted: NotedEntry[]): Promise<CommitThen<F["state"]>> {
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
    // Read with the event (the store's own copy): no second request for it.
    const current = read ? read.state : await store.get(callId);
    // Sends noted as never sent after their commit: the state stops counting them (see ActionOutcomes.notesFor).
    const notSentSeen = current ? await this.outcomes.applyNoted(callId, await this.outcomes.notesFor(callId, q.event.type === "session_end", noted), current) : [];
    if (q.attempts > MAX_ATTEMPTS) {
      log.error({ sessionId: callId, event: q.event.type, attempts: q.attempts }, "event skipped: its turn crashed an instance several times; it counts as a possible no");
      if (!CONVERSATIONAL.has(q.event.type)) {
        const skipped = await store.commitAndNext(callId, token, { seq: q.seq, state: undefined, ttlSeconds, droppable: false });
        if (skipped.result === "committed") await this.outcomes.rerunDone(callId, q.seq, "instance_stopped");
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
      return store.commitAndNext(callId, token, { seq: q.seq, state: undefined, ttlSeconds, droppable: false });
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
      const undelivered = q.event.type === "session_end" ? await discardOutbox(store, this.timers, callId, this.takeWithheld?.(callId) ?? []) : undefined;
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
  private async commitOutcome(callId: string, token: string, q: QueuedEvent, outcome: TurnOutcome<F["state"]>, local: LocalStream | undefined, droppable: boolean, notSentSeen: number[] = []): Promise<CommitThen<F["state"]>> {
    const { store, options } = this.deps;
    const { record, next } = outcome;
    // A redelivery over the socket pushes nothing twice; over HTTP the lost answer is given again,
    // unless the first answer is still waiting in the outbox (then that one is collected instead).
    const firstStillWaiting = record.duplicate && (await store.progress(callId)).ready[q.via] > 0;
    const deliver = (q.via === "ws" && record.duplicate) || firstStillWaiting ? [] : record.actions.filter((a) => !local?.pushed.has(a));
    // The store decides, atomically: committed, dropped (an answer gave up on it) or lease_lost (fenced).
    let then: CommitThen<F["state"]>;
    // Sent under one request id until the store answers: a try whose reply was lost is answered as it ran.
    const requestId = randomUUID();
    try {
      const request: CommitRequest<F["state"]> = {
        seq: q.seq,
        state: next.kind === "save" ? next.state : next.kind === "delete" ? null : undefined,
        ttlSeconds: options.limits.sessionTtlSeconds,
        entry: { seq: q.seq, via: q.via, actions: deliver, ...(next.kind === "save" ? { spokenThrough: next.state.spoken } : {}) },
        // A "no" is never dropped: the caller heard the apology, and the decline still holds.
        droppable: droppable && !record.withdrawal,
        ...(outcome.withdrawn?.length ? { withdraw: outcome.withdrawn } : {}),
        ...(notSentSeen.length && next.kind === "save" ? { notSentSeen } : {}),
      };
      then = await untilAnswered(this.timers, (rid) => store.commitAndNext(callId, token, request, rid), requestId);
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
    const result = then.result;
    const produced = [{ seq: q.seq, actions: record.actions }];
    if (result === "committed") {
      this.deps.onTurn?.(record, q.event, q.via);
      if (next.kind === "save") this.afterCommits.run(callId, next.state, q.seq);
    } else if (result === "dropped") await this.outcomes.notSent(callId, produced, "dropped", q.event.type);
    else {
      // Fenced out: the event runs again where the lease is now, maybe producing the same actions
      // (same evidence ids); what this attempt produced is settled once the event is done.
      await this.outcomes.notSent(callId, produced, "lease_lost", q.event.type, true);
      if (record.actions.length) this.outcomes.settleWhenDone(callId, q.seq, produced);
    }
    // An earlier attempt died with its instance: what it left (an approval) that this result does not carry never left.
    if (result !== "lease_lost" && q.attempts > 1) await this.outcomes.rerunDone(callId, q.seq, "instance_stopped", undefined, result === "committed" && next.kind === "save" ? next.state : undefined);
    return then;
  }
}

function streamKey(callId: string, seq: number): string {
  return `${callId}\u0000${seq}`;
}
