import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { parseEvent, type AiFlowEvent } from "../src/aiflow/events.js";
import type { CallState } from "../src/core/callState.js";
import { CallPipeline } from "../src/engine/callPipeline.js";
import { ManualClock } from "../src/engine/clock.js";
import { defineStep, type FlowTypes } from "../src/engine/define.js";
import { defineFlow } from "../src/engine/defineFlow.js";
import { Engine } from "../src/engine/engine.js";
import { PromptLibrary } from "../src/engine/promptLibrary.js";
import { ScriptedModel } from "../src/llm/scriptedModel.js";
import { engineOptions, PROMPTS_DIR } from "../src/service.js";
import type { CommitRequest, CommitResult, CommitThen } from "../src/store/callStore.js";
import { MemoryCallStore } from "../src/store/memoryCallStore.js";
import { ev } from "./support/events.js";
import { testConfig } from "./support/harness.js";

/**
 * afterCommit (issue 13): work outside the call store that must match what is stored (the
 * callback agent's report snapshot) runs once per committed turn, and never for a turn whose
 * instance lost the call (fenced out), so a stalled instance cannot overwrite newer work.
 */

interface Counted extends FlowTypes {
  state: { seen: number };
}

const committed: Array<{ sessionId: string; seen: number; turn: number }> = [];
/** While set, afterCommit waits for it: a slow snapshot write. */
let slow: Promise<void> | undefined;
const step = defineStep<Counted>();
const flow = defineFlow<Counted>({
  name: "counted",
  initialStep: "main",
  steps: [step({ name: "main", kind: "llm", prompt: "reception/main", tools: [] })],
  initialState: () => ({ seen: 0 }),
  lines: [],
  notes: [],
  hooks: {
    promptValues: () => ({ business_name: "B", business_purpose: "P", business_facts: "F" }),
    afterTurn: (ctx) => void ctx.state.seen++,
    afterCommit: async (state: CallState<{ seen: number }>) => {
      await slow;
      committed.push({ sessionId: state.sessionId, seen: state.seen, turn: state.turn });
    },
  },
});

/** A store that fences out the next commit, as if another instance had taken the call's lease. */
class FencingStore extends MemoryCallStore<{ seen: number }> {
  fenceNext = false;
  override async commit(callId: string, token: string, r: CommitRequest<{ seen: number }>): Promise<CommitResult> {
    if (this.fenceNext) {
      this.fenceNext = false;
      return "lease_lost";
    }
    return super.commit(callId, token, r);
  }
  override async commitAndNext(callId: string, token: string, r: CommitRequest<{ seen: number }>): Promise<CommitThen<{ seen: number }>> {
    if (this.fenceNext) {
      this.fenceNext = false;
      return { result: "lease_lost" };
    }
    return super.commitAndNext(callId, token, r);
  }
}

function pipeline(store: FencingStore) {
  const config = testConfig({ server: { answerWithinMs: 0 } });
  const options = engineOptions(config);
  const prompts = new PromptLibrary(PROMPTS_DIR, "de-DE");
  const log = pino({ level: "silent" });
  const engine = new Engine<Counted>({ flow, services: {}, options, prompts, model: new ScriptedModel(), log, now: Date.now });
  return new CallPipeline<Counted>({ engine, store, options, prompts, log, clock: new ManualClock() });
}

const event = (e: unknown): AiFlowEvent => {
  const p = parseEvent(e);
  if (p.kind !== "event") throw new Error("not an event");
  return p.event;
};

/** afterCommit runs off the answer path: wait for it (synchronisation, not an expectation). */
async function settled(n: number): Promise<void> {
  for (let i = 0; i < 500 && committed.length < n; i++) await new Promise((r) => setTimeout(r, 2));
}

describe("afterCommit", () => {
  it("runs once per committed turn with the stored state, not for a fenced-out turn, not for session_end", async () => {
    committed.length = 0;
    const store = new FencingStore();
    const p = pipeline(store);
    const id = "after-commit";
    await p.process(event(ev.start(id)));
    await settled(1);
    expect(committed).toEqual([{ sessionId: id, seen: 1, turn: 0 }]);
    // The first run of this event is fenced out (lease lost): nothing of it is stored and nothing
    // runs after it; the event stays queued and runs again, and that run is committed: one more.
    store.fenceNext = true;
    await p.process(event(ev.timeout(id)));
    await settled(2);
    expect(committed.map((c) => c.seen)).toEqual([1, 2]);
    expect((await store.get(id))!.seen).toBe(2);
    await p.process(event(ev.speechEnded(id)));
    await settled(3);
    expect(committed.map((c) => c.seen)).toEqual([1, 2, 3]);
    const before = committed.length;
    await p.process(event(ev.end(id)));
    expect(committed).toHaveLength(before);
    await p.drain();
  });

  it("never holds up the answer or the next turn: a slow snapshot write finishes in the background, in turn order", async () => {
    committed.length = 0;
    let release!: () => void;
    slow = new Promise<void>((r) => (release = r));
    const store = new FencingStore();
    const p = pipeline(store);
    const id = "after-commit-slow";
    // Both turns answer while the first snapshot write is still waiting.
    await p.process(event(ev.start(id)));
    await p.process(event(ev.speechEnded(id)));
    expect(committed).toEqual([]);
    release();
    slow = undefined;
    await settled(2);
    expect(committed.map((c) => c.seen)).toEqual([1, 2]);
    // Shutdown waits for work still running.
    await p.drain();
  });
});
