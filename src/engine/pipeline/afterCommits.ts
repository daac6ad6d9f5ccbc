import type { Logger } from "pino";
import type { CallState } from "../../core/callState.js";
import type { FlowTypes } from "../define.js";
import type { Engine } from "../engine.js";

/**
 * The flow's after-commit work (a report snapshot) runs off the answer path: the answer and the
 * call's next turn never wait for it. Chained per call, so snapshots are saved in turn order; on
 * a copy of the state, which the next turn does not touch.
 */
export class AfterCommits<F extends FlowTypes = FlowTypes> {
  /** Each call's after-commit work still running, in turn order. */
  private readonly running = new Map<string, Promise<void>>();

  constructor(
    private readonly engine: Engine<F>,
    private readonly log: Logger,
  ) {}

  get size(): number {
    return this.running.size;
  }

  all(): Array<Promise<void>> {
    return [...this.running.values()];
  }

  run(callId: string, state: CallState<F["state"]>, seq: number): void {
    if (!this.engine.hasAfterCommit) return;
    const snapshot = structuredClone(state);
    const previous = this.running.get(callId) ?? Promise.resolve();
    const work = previous
      .then(() => this.engine.committed(snapshot, seq))
      .catch((e: Error) => this.log.error({ sessionId: callId, err: e.message }, "after-commit work failed"))
      .finally(() => {
        if (this.running.get(callId) === work) this.running.delete(callId);
      });
    this.running.set(callId, work);
  }
}
