import { afterEach, describe, expect, it } from "vitest";
import { ev } from "./support/events.js";
import { startTestService, type TestService } from "./support/harness.js";
import { until } from "./support/deadline.js";
import { MemoryCallStore } from "../src/store/memoryCallStore.js";
import { StoreUnavailableError, type CallStore, type LeaseTake } from "../src/store/callStore.js";
import type { SmsSlice } from "../src/tasks/sms/state.js";

let local: TestService | undefined;
afterEach(async () => {
  await local?.close();
  local = undefined;
});

type ArriveArg = Parameters<CallStore["arrive"]>[1];

describe("review17b: kept caller events vs. a new event racing the background retry", () => {
  it("every kept caller event is queued exactly once, in order (none lost, none doubled)", async () => {
    const inner = new MemoryCallStore<SmsSlice>();
    let down = false;
    let gate: Promise<void> | undefined;
    let blockNextOf: string | undefined;
    const queuedTexts: string[] = [];
    // Every way an event is queued (arrive, and arriveAndTake for an idle call): down, slow, recorded alike.
    const queuing = async <R extends { kind: string }>(e: ArriveArg, queue: () => Promise<R>): Promise<R> => {
      if (down) throw new StoreUnavailableError("call store: connection lost");
      const text = e.event.type === "user_speak" ? e.event.text : e.event.type;
      if (blockNextOf && text === blockNextOf) {
        blockNextOf = undefined;
        await gate;
      }
      const r = await queue();
      if (r.kind === "queued") queuedTexts.push(text);
      return r;
    };
    const store = Object.assign(Object.create(inner) as MemoryCallStore<SmsSlice>, {
      arrive: (callId: string, e: ArriveArg) => queuing(e, () => inner.arrive(callId, e)),
      arriveAndTake: (callId: string, e: ArriveArg, lease: LeaseTake) => queuing(e, () => inner.arriveAndTake(callId, e, lease)),
    });
    local = await startTestService({ store });
    const svc = local;
    const id = "review17b-arrivals-race";
    await svc.post(ev.start(id));
    // The store is down: two caller utterances are kept, in order.
    down = true;
    await svc.post(ev.speak(id, "A eins"));
    await svc.post(ev.speak(id, "A zwei"));
    // The store comes back; the caller speaks again before the background retry woke up. The
    // new event's arrive() re-queues the kept ones first, and its store call for "A eins" is slow.
    let release!: () => void;
    gate = new Promise<void>((r) => (release = r));
    blockNextOf = "A eins";
    down = false;
    const third = svc.post(ev.speak(id, "B drei"));
    // Meanwhile the background retry (every 100 ms) wakes up and tries the same list: it must wait
    // for the drain in progress, not queue "A eins" a second time (nor drop "A zwei").
    await new Promise((r) => setTimeout(r, 250));
    release();
    await until(() => queuedTexts.includes("B drei"), "the new event was queued", { tries: 200, everyMs: 5 });
    svc.deadlineClock.advance(5000);
    await third;
    // Let the background retry (if anything is left for it) run once more.
    await new Promise((r) => setTimeout(r, 300));
    expect(queuedTexts.filter((t) => t !== "session_start")).toEqual(["A eins", "A zwei", "B drei"]);
  });
});
