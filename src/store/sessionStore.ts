import type { CallState } from "../engine/state.js";

/**
 * Where call state lives between events. `withLock` runs the work for one session id
 * strictly one at a time, so two events of one call never interleave.
 */
export interface SessionStore {
  withLock<T>(sessionId: string, work: () => Promise<T>): Promise<T>;
  get(sessionId: string): Promise<CallState | undefined>;
  set(state: CallState, ttlSeconds: number): Promise<void>;
  delete(sessionId: string): Promise<void>;
  /** Number of live calls (for health and metrics). */
  size(): Promise<number>;
  close(): Promise<void>;
}

/** The store could not be reached: the event cannot be processed safely (no state, no send). */
export class StoreUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StoreUnavailableError";
  }
}
