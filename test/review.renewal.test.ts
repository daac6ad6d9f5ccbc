import { expect, it } from "vitest";
import { MemoryCallStore } from "../src/store/memoryCallStore.js";
import type { SmsSlice } from "../src/tasks/sms/state.js";
import { StoreUnavailableError } from "../src/store/callStore.js";
import { reply } from "./support/fakeOpenAI.js";
import { ev } from "./support/events.js";
import { spoken, startTestService, testConfig } from "./support/harness.js";
import { until } from "./support/deadline.js";

/** A store whose lease renewal fails now and then, as a Redis blip would. */
class FlakyRenewStore extends MemoryCallStore<SmsSlice> {
  failNext = 0;
  override async renewLease(callId: string, token: string, ttlMs: number) {
    if (this.failNext > 0) {
      this.failNext--;
      throw new StoreUnavailableError("Redis: connection reset (simulated blip)");
    }
    return super.renewLease(callId, token, ttlMs);
  }
}

// Found by an adversarial review of the answer deadline: kept as a regression test.
it("one failed lease renewal (a blip) aborts the turn without committing it: the event runs again and the caller gets an answer", async () => {
  const store = new FlakyRenewStore();
  const svc = await startTestService({ config: testConfig({ server: { leaseMs: 300 } }), store });
  try {
    const id = "rv-renew";
    await svc.post(ev.start(id));
    const gate = svc.fake.block();
    svc.fake.enqueue(reply.text("Die Antwort."));
    store.failNext = 1;
    const answer = svc.post(ev.speak(id, "Wann haben Sie geöffnet?"));
    await gate.arrived;
    // One renewal tick (100 ms) fails while the model request hangs: waited for, not timed (a slow
    // machine's timers run late). The aborted attempt may still take a scripted reply: the rerun has its own.
    await until(() => store.failNext === 0, "the renewal failed", { tries: 500, everyMs: 10 });
    svc.fake.enqueue(reply.text("Die Antwort."));
    gate.release();
    const a = await answer;
    const st = (await svc.store.get(id))!;
    expect(a.status).toBe(200);
    expect(spoken(a.actions)).toEqual(["Die Antwort."]);
    // The caller's words are in the history once, answered.
    expect(st.history.filter((m) => m.role === "user" && m.content === "Wann haben Sie geöffnet?")).toHaveLength(1);
    expect(st.history.at(-1)).toMatchObject({ role: "assistant", content: "Die Antwort." });
  } finally {
    await svc.close();
  }
});
