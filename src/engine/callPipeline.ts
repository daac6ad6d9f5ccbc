import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import { actions as build, type AiFlowAction } from "../aiflow/actions.js";
import type { AiFlowEvent } from "../aiflow/events.js";
import { COLLECTING, CONVERSATIONAL, HOLDING_FOLLOW_UPS, StoreUnavailableError, type CallStore, type CommitResult, type OutboxEntry, type QueuedEvent, type Transport } from "../store/callStore.js";
import type { Clock } from "./clock.js";
import type { Engine, TurnOutcome } from "./engine.js";
import type { FlowTypes } from "./define.js";
import type { EngineOptions } from "./options.js";
import type { PromptLibrary } from "./promptLibrary.js";
import { speakOptions } from "./speech.js";
import type { CallState } from "../core/callState.js";
import { emptyTurnRecord, type TurnRecord } from "../core/turnRecord.js";

/**
 * A turn that killed its instance this often is skipped (and counts as a possible "no"), so one
 * poisonous event cannot take down every instance in turn. Lease losses of a live instance do not count.
 */
const MAX_ATTEMPTS = 3;
/** Why a wait is woken: a constant, since abort() without a reason builds a DOMException (with a stack trace) every time. */
const WOKEN = "woken";
/** How long an instance keeps trying to get a queued event processed (taking over a dead holder's lease). */
const MAX_WATCH_MS = 10 * 60_000;

export interface PipelineDeps<F extends FlowTypes = FlowTypes> {
  engine: Engine<F>;
  store: CallStore<F["state"]>;
  options: EngineOptions;
  prompts: PromptLibrary;
  log: Logger;
  /** Deadlines only (answers within `server.answerWithinMs`); leases and polling use real time. */
  clock: Clock;
  /** Every committed turn (metrics, evals, the log line). */
  onTurn?: (turn: TurnRecord, event: AiFlowEvent, via: Transport) => void;
  /** How an answer was made, for metrics: a holding line, giving up, or a store outage. */
  onAnswer?: (kind: AnswerKind) => void;
  /** How often a shared store is asked whether another instance finished an event. */
  pollMs?: number;
}

export type AnswerKind = "actions" | "holding" | "gave_up" | "nothing" | "store_unavailable";

export interface Answer {
  kind: AnswerKind;
  actions: AiFlowAction[];
}

/** What a WebSocket lends the turn of an event that arrived on it. */
interface LocalStream {
  sink?: (a: AiFlowAction) => void;
  signal?: AbortSignal;
  /** Actions already pushed by the sink: not delivered again after the commit. */
  pushed: WeakSet<AiFlowAction>;
  /** The turn record, for callers that want it (tests, evals, bench). */
  record?: TurnRecord;
}

/**
 * How a turn meets the transports. Every event is queued for its call; whichever instance holds
 * the call's lease runs the turns in order and commits each one, fenced, to the shared store;
 * answers are collected from the call's outbox. So an answer never waits longer than the
 * deadline: a slow turn gets a holding line and its actions leave with the call's next event
 * (HTTP) or are pushed when ready (WebSocket); each action leaves exactly once, and an
 * instance that dies mid-turn costs the call at most one lease.
 */
/** What a transport needs of the pipeline: an answer for a webhook event, pushes for a socket's. */
export interface CallAnswerer {
  answerHttp(event: AiFlowEvent, key: string): Promise<Answer>;
  handleWs(event: AiFlowEvent, key: string, push: (a: AiFlowAction) => void, signal?: AbortSignal): Promise<void>;
}

export class CallPipeline<F extends FlowTypes = FlowTypes> implements CallAnswerer {
  private readonly pumps = new Map<string, Promise<void>>();
  /** Each call's after-commit work still running (snapshots), in turn order. */
  private readonly afterCommits = new Map<string, Promise<void>>();
  private readonly rekick = new Set<string>();
  private readonly streams = new Map<string, LocalStream>();
  private readonly listeners = new Map<string, Set<() => void>>();
  private readonly watchers = new Set<Promise<void>>();
  private closing = false;
  /** Calls whose socket just got a holding line: its assistant_speech_ended is not the flow's business. */
  private readonly wsHeld = new Set<string>();
  /** Per call on the socket: how many holding lines' assistant_speech_ended are still to come (not the flow's business). */
  private readonly wsEchoes = new Map<string, number>();
  private readonly pollMs: number;

  constructor(private readonly deps: PipelineDeps<F>) {
    this.pollMs = deps.pollMs ?? 20;
  }

  private get answer() {
    return this.deps.options.answer;
  }

  /** The webhook: one event in, its answer within the deadline. */
  async answerHttp(event: AiFlowEvent, key: string): Promise<Answer> {
    const callId = event.session.id;
    const { clock } = this.deps;
    const deadline = this.answer.withinMs > 0 ? clock.now() + this.answer.withinMs : undefined;
    try {
      const arrival = await this.deps.store.arrive(callId, { key, event, via: "http", holdingFollowUp: HOLDING_FOLLOW_UPS.has(event.type) });
      const seq = arrival.kind === "queued" ? arrival.seq : undefined;
      if (seq !== undefined) this.startProcessing(callId, seq);
      await this.waitUntil(
        callId,
        async () => {
          const p = await this.deps.store.progress(callId);
          // A queued event waits for its own turn; a holding line's follow-up for anything to collect.
          return seq !== undefined ? p.processed >= seq : p.ready.http > 0 || p.processed >= p.queued;
        },
        deadline,
      );
      const collecting = COLLECTING.has(event.type);
      const collected = await this.deps.store.collect(callId, {
        via: "http",
        seq,
        collecting,
        // The end of the holding line's speech is no reason for another one: its short input timeout comes next.
        mayHold: collecting && event.type !== "assistant_speech_ended",
        maxHoldingLines: this.answer.maxHoldingLines,
      });
      switch (collected.kind) {
        case "actions":
          return this.answered("actions", collected.actions);
        case "hold":
          this.deps.log.info({ sessionId: callId, event: event.type, holdingLine: collected.count }, "turn not done within the deadline: holding line");
          return this.answered("holding", [this.holdingLine(callId, this.answer.holdingTimeoutSeconds)]);
        case "give_up":
          this.deps.log.warn({ sessionId: callId, event: event.type, droppedThrough: collected.droppedThrough }, "turn still not done after the last holding line: apology, late result dropped");
          return this.answered("gave_up", [build.speak(callId, this.deps.prompts.line("holding_gave_up"), speakOptions(this.deps.options.speech, this.deps.options.speech.userInputTimeoutSeconds))]);
        case "nothing":
          return this.answered("nothing", []);
      }
    } catch (e) {
      if (!(e instanceof StoreUnavailableError)) throw e;
      return this.storeUnavailable(event, e);
    }
  }

  /**
   * The WebSocket: the event's turn runs with the socket's sink (speech may stream); a holding
   * line is pushed at the deadline if nothing was said yet, the actions when the turn is committed.
   */
  async handleWs(event: AiFlowEvent, key: string, push: (a: AiFlowAction) => boolean | void, signal?: AbortSignal): Promise<void> {
    const callId = event.session.id;
    const { clock, store } = this.deps;
    const deadline = this.answer.withinMs > 0 ? clock.now() + this.answer.withinMs : undefined;
    if (event.type === "assistant_speech_ended" && this.swallowEcho(callId)) return;
    if (event.type === "session_end") {
      this.wsHeld.delete(callId);
      this.wsEchoes.delete(callId);
    }
    try {
      const arrival = await store.arrive(callId, { key, event, via: "ws", holdingFollowUp: false });
      if (arrival.kind !== "queued") return;
      const seq = arrival.seq;
      let spoke = false;
      const pushed = new WeakSet<AiFlowAction>();
      const stream: LocalStream = {
        pushed,
        signal,
        sink: this.deps.options.speech.streamSentences
          ? (a) => {
              spoke = true;
              pushed.add(a);
              push(a);
            }
          : undefined,
      };
      this.streams.set(streamKey(callId, seq), stream);
      try {
        this.startProcessing(callId, seq);
        const done = async () => (await store.progress(callId)).processed >= seq;
        // One holding line at a time per call, and only where the caller waits for an answer.
        const waits = CONVERSATIONAL.has(event.type) && !this.wsHeld.has(callId);
        if (!(await this.waitUntil(callId, done, deadline)) && waits && !spoke && !signal?.aborted) {
          // No input timeout on the socket's holding line: its silence must not reach the flow.
          push(this.holdingLine(callId));
          this.wsHeld.add(callId);
          this.wsEchoes.set(callId, (this.wsEchoes.get(callId) ?? 0) + 1);
          this.deps.onAnswer?.("holding");
        }
        // The caller's voice cancels generation, not delivery: what the turn committed still goes out.
        await this.waitUntil(callId, done, undefined);
        // Every ws entry ready by now, in order: one held back for this event's verdict leaves here.
        const collected = await store.collect(callId, { via: "ws", seq, collecting: true, mayHold: false, maxHoldingLines: 0 });
        // This event's answer is out: the next turn may get a holding line of its own.
        this.wsHeld.delete(callId);
        if (collected.kind === "actions") {
          const lost = collected.actions.filter((a) => push(a) === false);
          // The socket closed meanwhile: an approved SMS that could not be pushed was not sent.
          if (lost.length) await this.withdrawn(callId, { ...emptyTurnRecord(callId, event.type), actions: lost }, "dropped");
        }
      } finally {
        this.streams.delete(streamKey(callId, seq));
      }
    } catch (e) {
      if (!(e instanceof StoreUnavailableError)) throw e;
      for (const a of this.storeUnavailable(event, e).actions) push(a);
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
      if (arrival.kind !== "queued") throw new Error("unreachable: process() never collects");
      const seq = arrival.seq;
      const stream: LocalStream = { pushed: new WeakSet() };
      this.streams.set(streamKey(callId, seq), stream);
      try {
        this.startProcessing(callId, seq);
        await this.waitUntil(callId, async () => (await store.progress(callId)).processed >= seq, undefined);
        await store.collect(callId, { via: "http", seq, collecting: false, mayHold: false, maxHoldingLines: 0 });
        return stream.record ?? emptyTurnRecord(callId, event.type);
      } finally {
        this.streams.delete(streamKey(callId, seq));
      }
    } catch (e) {
      if (!(e instanceof StoreUnavailableError)) throw e;
      const record = emptyTurnRecord(callId, event.type);
      record.actions = this.storeUnavailable(event, e).actions;
      record.guardDecisions.push({ subject: "turn", allowed: false, reason: "store_unavailable", detail: e.message });
      return record;
    }
  }

  /** Graceful shutdown: turns still running in the background finish before the store closes. */
  async drain(): Promise<void> {
    this.closing = true;
    while (this.pumps.size > 0 || this.watchers.size > 0 || this.afterCommits.size > 0) {
      await Promise.allSettled([...this.pumps.values(), ...this.watchers, ...this.afterCommits.values()]);
    }
  }

  private swallowEcho(callId: string): boolean {
    const n = this.wsEchoes.get(callId) ?? 0;
    if (n === 0) return false;
    if (n === 1) this.wsEchoes.delete(callId);
    else this.wsEchoes.set(callId, n - 1);
    return true;
  }

  private answered(kind: AnswerKind, actions: AiFlowAction[]): Answer {
    this.deps.onAnswer?.(kind);
    return { kind, actions };
  }

  /** Not part of the conversation: not in history, not the line a re-prompt repeats, not "a line after the question". */
  private holdingLine(callId: string, inputTimeoutSeconds?: number): AiFlowAction {
    return build.speak(callId, this.deps.prompts.line("holding"), speakOptions(this.deps.options.speech, inputTimeoutSeconds));
  }

  /** Nothing can be decided without the store: an apology for events the caller waits on, no state, no SMS. */
  private storeUnavailable(event: AiFlowEvent, e: Error): Answer {
    this.deps.log.error({ sessionId: event.session.id, event: event.type, err: e.message }, "event not processed: store unavailable");
    const speaks = event.type === "user_speak" || event.type === "session_start" || event.type === "user_input_timeout";
    return this.answered("store_unavailable", speaks ? [build.speak(event.session.id, this.deps.prompts.line("store_unavailable"), speakOptions(this.deps.options.speech))] : []);
  }

  /**
   * Get the call's queue worked off: here, if the lease is free; otherwise by its holder. Until
   * the event is done this instance keeps asking, so a holder that died (its lease ran out)
   * is replaced by the next instance that has an event of the call waiting.
   */
  private startProcessing(callId: string, seq: number): void {
    void this.kick(callId);
    if (!this.deps.store.shared) return;
    const watcher = (async () => {
      const started = Date.now();
      const retryEvery = Math.max(this.pollMs, Math.floor(this.answer.leaseMs / 4));
      while (!this.closing && Date.now() - started < MAX_WATCH_MS) {
        // First a while: the pump kicked above has most events done by then.
        await new Promise((r) => setTimeout(r, retryEvery));
        try {
          if ((await this.deps.store.progress(callId)).processed >= seq) return;
        } catch {
          // The store is down: try again; answers meanwhile apologize.
        }
        void this.kick(callId);
      }
    })();
    this.watchers.add(watcher);
    void watcher.finally(() => this.watchers.delete(watcher));
  }

  /** One pump per call and instance; a kick while it runs makes it look once more before it stops. */
  private kick(callId: string): Promise<void> {
    const running = this.pumps.get(callId);
    if (running) {
      this.rekick.add(callId);
      return running;
    }
    const pump = this.pump(callId)
      .catch((e: Error) => this.deps.log.error({ sessionId: callId, err: e.stack ?? e.message }, "call pump failed"))
      .finally(() => {
        this.pumps.delete(callId);
        this.notify(callId);
        if (this.rekick.delete(callId)) void this.kick(callId);
      });
    this.pumps.set(callId, pump);
    return pump;
  }

  private async pump(callId: string): Promise<void> {
    const { store, log } = this.deps;
    const leaseMs = this.answer.leaseMs;
    const token = randomUUID();
    if (!(await store.acquireLease(callId, token, leaseMs))) return;
    // Set when a renewal finds the lease gone (or cannot tell): the running turn still finishes
    // (a caller event is never given up on while this instance lives), but its commit is fenced
    // and the event runs again wherever the lease is now.
    const lost = new AbortController();
    const renew = setInterval(() => {
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
    }, Math.max(50, Math.floor(leaseMs / 3)));
    try {
      while (!lost.signal.aborted) {
        const next = await store.nextEvent(callId, token);
        if (!next.held || !next.event) break;
        const outcome = await this.runQueued(callId, token, next.event, next.pendingSends ?? []);
        this.notify(callId);
        if (outcome === "lease_lost") {
          // Not a crash: the attempt is given back, so only turns that killed an instance count.
          await store.yieldEvent(callId, next.event.seq).catch((e: Error) => log.warn({ sessionId: callId, err: e.message }, "giving back an attempt failed"));
          // Maybe only a blip (one failed renewal): look again once the lease is released.
          this.rekick.add(callId);
          break;
        }
      }
    } finally {
      clearInterval(renew);
      await store.releaseLease(callId, token).catch((e: Error) => log.warn({ sessionId: callId, err: e.message }, "lease release failed (it expires)"));
    }
  }

  private async runQueued(callId: string, token: string, q: QueuedEvent, pendingSends: OutboxEntry[]): Promise<CommitResult> {
    const { store, engine, options, log } = this.deps;
    const droppable = CONVERSATIONAL.has(q.event.type);
    const ttlSeconds = options.limits.sessionTtlSeconds;
    const local = this.streams.get(streamKey(callId, q.seq));
    const current = await store.get(callId);
    if (q.attempts > MAX_ATTEMPTS) {
      log.error({ sessionId: callId, event: q.event.type, attempts: q.attempts }, "event skipped: its turn crashed an instance several times; it counts as a possible no");
      if (!CONVERSATIONAL.has(q.event.type)) return store.commit(callId, token, { seq: q.seq, state: undefined, ttlSeconds, droppable: false });
      // Never evaluated is a possible "no": pending sends are withdrawn and an offer ends.
      const outcome = await engine.runUnevaluated(current, q.event, { pendingSends });
      if (local) local.record = outcome.record;
      return this.commitOutcome(callId, token, q, outcome, local, false);
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
      outcome = await engine.runTurn(current, q.event, q.key, { sink: local?.sink, signal: local?.signal, stillOwner, undelivered, heard: q.heard, pendingSends });
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
    return this.commitOutcome(callId, token, q, outcome, local, droppable);
  }

  /** Commit a turn's outcome (fenced), and record what never left. */
  private async commitOutcome(callId: string, token: string, q: QueuedEvent, outcome: TurnOutcome<F["state"]>, local: LocalStream | undefined, droppable: boolean): Promise<CommitResult> {
    const { store, options } = this.deps;
    const { record, next } = outcome;
    // A redelivery over the socket pushes nothing twice; over HTTP the lost answer is given again,
    // unless the first answer is still waiting in the outbox (then that one is collected instead).
    const firstStillWaiting = record.duplicate && (await store.progress(callId)).ready[q.via] > 0;
    const deliver = (q.via === "ws" && record.duplicate) || firstStillWaiting ? [] : record.actions.filter((a) => !local?.pushed.has(a));
    // The store decides, atomically: committed, dropped (an answer gave up on it) or lease_lost (fenced).
    const result = await store.commit(callId, token, {
      seq: q.seq,
      state: next.kind === "save" ? next.state : next.kind === "delete" ? null : undefined,
      ttlSeconds: options.limits.sessionTtlSeconds,
      entry: { seq: q.seq, via: q.via, actions: deliver, ...(next.kind === "save" ? { spokenThrough: next.state.spoken } : {}) },
      // A "no" is never dropped: the caller heard the apology, and the decline still holds.
      droppable: droppable && !record.withdrawal,
      ...(outcome.withdrawn?.length ? { withdraw: outcome.withdrawn } : {}),
    });
    if (result === "committed") {
      this.deps.onTurn?.(record, q.event, q.via);
      if (next.kind === "save") this.afterCommit(callId, next.state, q.seq);
    } else await this.withdrawn(callId, record, result);
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

  /** Take every action still waiting in the call's outbox, for a call that ends: none of it will be said. Returns them. */
  private async discardOutbox(callId: string): Promise<AiFlowAction[]> {
    const discarded: AiFlowAction[] = [];
    for (const via of ["http", "ws"] as const) {
      const left = await this.deps.store.collect(callId, { via, collecting: true, mayHold: false, maxHoldingLines: 0 });
      if (left.kind === "actions" && left.actions.length) {
        discarded.push(...left.actions);
        await this.withdrawn(callId, { ...emptyTurnRecord(callId, "session_end"), actions: left.actions }, "dropped");
      }
    }
    return discarded;
  }

  /** A turn whose result never left: the flow records what that means (an SMS approved but never sent). */
  private async withdrawn(callId: string, record: TurnRecord, why: "dropped" | "lease_lost"): Promise<void> {
    this.deps.log.warn({ sessionId: callId, event: record.event, why }, "turn result not delivered");
    await this.deps.engine.undelivered(record, why).catch((e: Error) => this.deps.log.error({ sessionId: callId, err: e.message }, "recording an undelivered turn failed"));
  }

  private notify(callId: string): void {
    for (const l of this.listeners.get(callId) ?? []) l();
  }

  /**
   * Wait until `ready()` or the deadline (undefined: no deadline). Local progress wakes the wait
   * at once; another instance's progress is seen by polling a shared store.
   */
  private async waitUntil(callId: string, ready: () => Promise<boolean>, deadline: number | undefined, signal?: AbortSignal): Promise<boolean> {
    const { clock, store } = this.deps;
    for (;;) {
      if (await ready()) return true;
      if (signal?.aborted) return false;
      if (deadline !== undefined && clock.now() >= deadline) return false;
      const wake = new AbortController();
      const onProgress = () => wake.abort(WOKEN);
      let set = this.listeners.get(callId);
      if (!set) this.listeners.set(callId, (set = new Set()));
      set.add(onProgress);
      signal?.addEventListener("abort", onProgress, { once: true });
      try {
        const waits: Array<Promise<unknown>> = [new Promise((r) => wake.signal.addEventListener("abort", r, { once: true }))];
        if (deadline !== undefined) waits.push(clock.sleep(deadline - clock.now(), wake.signal));
        // Another instance's progress is polled for; this instance's pump wakes the wait itself, also when it stops.
        if (store.shared && !this.pumps.has(callId)) waits.push(new Promise((r) => setTimeout(r, this.pollMs)));
        await Promise.race(waits);
      } finally {
        wake.abort(WOKEN);
        set.delete(onProgress);
        if (set.size === 0) this.listeners.delete(callId);
        signal?.removeEventListener("abort", onProgress);
      }
    }
  }
}

function streamKey(callId: string, seq: number): string {
  return `${callId}\u0000${seq}`;
}
