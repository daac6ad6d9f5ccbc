import { Stop, type Clock } from "../clock.js";
import type { OutcomeEntry } from "../recovery.js";
import { MAX_WATCH_MS } from "./types.js";

/** How long the call's end waits for this instance's lost answers still being settled (its last word, a report, waits with it). */
export const END_WAITS_FOR_SETTLING_MS = 2_000;

/**
 * This instance's own knowledge of a call's committed sends that never left (their answer could
 * not be written): the store's note (`markNotSent`) reaches the call's next turn, but a note that is
 * still on its way (the store slow or down, a put-back not yet answered) would miss a turn that
 * starts meanwhile, the call's last above all. Every turn here also gets what this instance knows
 * (applying it twice changes nothing: the flow forgets by approval), and the call's end first waits
 * a moment for the settlements still under way here.
 */
export class LostHere {
  private readonly lost = new Map<string, { entries: OutcomeEntry[]; at: number }>();
  private readonly settling = new Map<string, Set<Promise<unknown>>>();

  constructor(private readonly timers: Clock) {}

  /** Entries recorded not written for this call (kept for the call's later turns here). */
  add(callId: string, entries: readonly OutcomeEntry[]): void {
    this.sweep();
    const known = this.lost.get(callId) ?? { entries: [], at: 0 };
    for (const e of entries) if (!known.entries.some((k) => k.seq === e.seq)) known.entries.push({ seq: e.seq, actions: e.actions });
    known.at = this.timers.now();
    this.lost.set(callId, known);
  }

  /** A lost answer's settlement under way for this call (a put-back and what follows it). */
  track<T>(callId: string, work: Promise<T>): Promise<T> {
    let set = this.settling.get(callId);
    if (!set) this.settling.set(callId, (set = new Set()));
    set.add(work);
    const done = () => {
      set.delete(work);
      if (!set.size && this.settling.get(callId) === set) this.settling.delete(callId);
    };
    work.then(done, done);
    return work;
  }

  /** What a turn of this call gets besides the store's note. At the call's end: after the settlements under way (bounded), and then forgotten. */
  async forTurn(callId: string, ending: boolean): Promise<OutcomeEntry[]> {
    if (ending) {
      const under = [...(this.settling.get(callId) ?? [])];
      if (under.length) {
        const timer = new Stop();
        await Promise.race([Promise.allSettled(under), this.timers.sleep(END_WAITS_FOR_SETTLING_MS, timer)]).finally(() => timer.abort());
      }
      const entries = this.lost.get(callId)?.entries ?? [];
      this.lost.delete(callId);
      return entries;
    }
    return this.lost.get(callId)?.entries ?? [];
  }

  /** Calls whose last loss is older than any watch: their state is long settled or gone. */
  private sweep(): void {
    const t = this.timers.now();
    for (const [id, k] of this.lost) if (t - k.at > MAX_WATCH_MS) this.lost.delete(id);
  }
}
