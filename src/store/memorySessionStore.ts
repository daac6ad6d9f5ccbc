import type { CallState } from "../engine/state.js";
import { KeyedQueue } from "./keyedQueue.js";
import type { SessionStore } from "./sessionStore.js";

/**
 * Single-instance store. State is kept as JSON text: the same round trip Redis will do,
 * so nothing that cannot be serialized slips into state, and callers never share objects.
 */
export class MemorySessionStore implements SessionStore {
  private readonly data = new Map<string, { json: string; expiresAt: number }>();
  private readonly queue = new KeyedQueue();
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    private readonly now: () => number = Date.now,
    sweepIntervalMs = 60_000,
  ) {
    this.sweeper = setInterval(() => this.sweep(), sweepIntervalMs);
    this.sweeper.unref();
  }

  withLock<T>(sessionId: string, work: () => Promise<T>): Promise<T> {
    return this.queue.run(sessionId, work);
  }

  async get(sessionId: string): Promise<CallState | undefined> {
    const entry = this.data.get(sessionId);
    if (!entry) return undefined;
    if (entry.expiresAt <= this.now()) {
      this.data.delete(sessionId);
      return undefined;
    }
    return JSON.parse(entry.json) as CallState;
  }

  async set(state: CallState, ttlSeconds: number): Promise<void> {
    this.data.set(state.sessionId, { json: JSON.stringify(state), expiresAt: this.now() + ttlSeconds * 1000 });
  }

  async delete(sessionId: string): Promise<void> {
    this.data.delete(sessionId);
  }

  async size(): Promise<number> {
    this.sweep();
    return this.data.size;
  }

  /** Drop expired calls: after a successful transfer sipgate may never send session_end. */
  sweep(): void {
    const t = this.now();
    for (const [id, e] of this.data) if (e.expiresAt <= t) this.data.delete(id);
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
  }
}
