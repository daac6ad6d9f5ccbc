import type { NextEvent } from "../../store/callStore.js";

/** A lease an arrival took for this instance, with the event to run first. */
export interface TakenLease<S extends object = object> {
  token: string;
  next: NextEvent<S>;
  seq: number;
}

/**
 * Which call's pump runs on this instance: one per call at a time. A kick while a pump runs is
 * remembered only if the pump may not have seen the kicked event queued (`wanted` above
 * `covered`): then the pump looks once more after it stops. So an event that the running pump
 * takes with its commit (or that an arrival took the lease for) costs no second pump, which would
 * take the lease and look at the queue again for nothing.
 */
export class Pumps<S extends object = object> {
  private readonly running = new Map<string, Promise<void>>();
  /** Per call, while its pump runs: the highest seq a kick asked for (Infinity: anything). */
  private readonly wanted = new Map<string, number>();
  /** Per call, while its pump runs: the highest seq it knows was queued when it looked. */
  private readonly covered = new Map<string, number>();
  /** Per call: a lease an arrival took, until its pump starts. */
  private readonly taken = new Map<string, TakenLease<S>>();

  constructor(
    /** Runs the call's turns (with a lease an arrival took, or taking it). */
    private readonly pump: (callId: string, taken?: TakenLease<S>) => Promise<void>,
    private readonly failed: (callId: string, e: Error) => void,
    /** The pump stopped (the call's waits are told). */
    private readonly stopped: (callId: string) => void,
    /** Caller words still waiting to be queued here: nothing of the call runs before them. */
    private readonly held: (callId: string) => boolean,
  ) {}

  has(callId: string): boolean {
    return this.running.has(callId) || this.taken.has(callId);
  }

  get size(): number {
    return this.running.size;
  }

  all(): Array<Promise<void>> {
    return [...this.running.values()];
  }

  /** An arrival took the call's lease: its pump starts at `start` (once the transport lent the turn its stream), at the latest after this tick. */
  took(callId: string, lease: TakenLease<S>): void {
    this.taken.set(callId, lease);
    setImmediate(() => this.start(callId));
  }

  /** Start the pump with a lease an arrival took, if one waits. */
  start(callId: string): void {
    const lease = this.taken.get(callId);
    if (!lease) return;
    this.taken.delete(callId);
    void this.run(callId, lease);
  }

  /** Get the call's queue worked off here; a kick while its pump runs makes it look once more, unless it saw event `seq` queued. */
  kick(callId: string, seq = Infinity): Promise<void> {
    if (this.held(callId)) return Promise.resolve();
    const running = this.running.get(callId);
    if (running) {
      this.wanted.set(callId, Math.max(this.wanted.get(callId) ?? 0, seq));
      return running;
    }
    return this.run(callId);
  }

  /** The pump saw events through `seq` queued. */
  saw(callId: string, seq: number): void {
    this.covered.set(callId, Math.max(this.covered.get(callId) ?? 0, seq));
  }

  /** The pump must look again once it stopped (it gave the lease up after a blip). */
  again(callId: string): void {
    this.wanted.set(callId, Infinity);
  }

  private run(callId: string, lease?: TakenLease<S>): Promise<void> {
    const before = this.running.get(callId);
    if (lease) this.saw(callId, lease.seq);
    const pump: Promise<void> = (before ?? Promise.resolve())
      .then(() => this.pump(callId, lease))
      .catch((e: Error) => this.failed(callId, e))
      .finally(() => {
        if (this.running.get(callId) !== pump) return;
        this.running.delete(callId);
        const again = (this.wanted.get(callId) ?? 0) > (this.covered.get(callId) ?? 0);
        this.wanted.delete(callId);
        this.covered.delete(callId);
        this.stopped(callId);
        if (again) void this.kick(callId);
      });
    this.running.set(callId, pump);
    return pump;
  }
}
