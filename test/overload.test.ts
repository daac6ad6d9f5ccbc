import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { reply } from "./support/fakeOpenAI.js";
import { ev } from "./support/events.js";
import { spoken, startTestService, testConfig, type TestService } from "./support/harness.js";
import { loadConfigFile } from "../src/appConfig.js";
import { PromptLibrary } from "../src/engine/promptLibrary.js";
import { PROMPTS_DIR } from "../src/service.js";

/**
 * Issue 21, point 3: an instance over its load limits refuses NEW calls with a short line and a
 * hangup (or a transfer), counted in /metrics and /healthz, while a call already running keeps
 * being answered. The expected line comes from prompts/<lang>/lines.md.
 */

const lines = new PromptLibrary(PROMPTS_DIR, "de-DE");
const BUSY = lines.line("overloaded");
const BUSY_TRANSFER = lines.line("overloaded_transfer");

let svc: TestService;
beforeAll(async () => {
  svc = await startTestService();
});
afterAll(async () => svc?.close());

async function get(path: string) {
  const r = await svc.app.inject({ method: "GET", url: path });
  return { status: r.statusCode, body: r.body };
}

describe("overload: running calls go on, new calls are refused", () => {
  it("forced over its limit: a new call hears the line and is hung up; the running call keeps being answered; /healthz 503, /metrics counts it", async () => {
    const running = "overload-running";
    await svc.post(ev.start(running));
    expect((await get("/healthz")).status).toBe(200);

    svc.load.force("cpu");
    try {
      const refused = await svc.post(ev.start("overload-new"));
      expect(refused.actions.map((a) => a.type)).toEqual(["speak", "hangup"]);
      expect(spoken(refused.actions)).toEqual([BUSY]);
      // Its later events are nobody's business here: nothing is said, no state is kept.
      expect((await svc.post(ev.assistantSpeak("overload-new", BUSY))).status).toBe(204);
      expect((await svc.post(ev.end("overload-new"))).status).toBe(204);
      expect(await svc.store.get("overload-new")).toBeUndefined();

      // The call that was running is answered as ever, by the model.
      svc.fake.enqueue(reply.text("Wir haben Montag bis Freitag geöffnet."));
      const answer = await svc.post(ev.speak(running, "Wann haben Sie geöffnet?"));
      expect(spoken(answer.actions)).toEqual(["Wir haben Montag bis Freitag geöffnet."]);

      const health = await get("/healthz");
      expect(health.status).toBe(503);
      expect(JSON.parse(health.body)).toMatchObject({ status: "overloaded", reason: "cpu" });
      const metrics = (await get("/metrics")).body;
      expect(metrics).toMatch(/^aiflow_calls_refused_total\{reason="cpu"\} 1$/m);
      expect(metrics).toMatch(/^aiflow_overloaded 1$/m);
    } finally {
      svc.load.force(undefined);
    }
    expect((await get("/healthz")).status).toBe(200);
    expect((await get("/metrics")).body).toMatch(/^aiflow_overloaded 0$/m);
    // Below the limit again: new calls are taken.
    const taken = await svc.post(ev.start("overload-after"));
    expect(taken.actions.map((a) => a.type)).toEqual(["speak"]);
  });

  it("with server.overload.transferTo, a refused call is transferred instead of hung up", async () => {
    const local = await startTestService({ config: testConfig({ server: { overload: { transferTo: "4930123456789", callerIdName: "Zentrale" } } }) });
    try {
      local.load.force("in_flight_turns");
      const refused = await local.post(ev.start("overload-transfer"));
      expect(refused.actions).toEqual([
        expect.objectContaining({ type: "speak", text: BUSY_TRANSFER }),
        expect.objectContaining({ type: "transfer", target_phone_number: "4930123456789", caller_id_name: "Zentrale" }),
      ]);
    } finally {
      await local.close();
    }
  });

  it("the shipped defaults are on, at the values the capacity bench admits (docs/performance.md); the test helper turns them off", () => {
    const { overload } = loadConfigFile("config/agent.yaml").server;
    expect(overload).toMatchObject({ maxEventLoopDelayMs: 500, maxCpuCores: 0, maxInFlightTurns: 1000, maxNewCallsPerSecond: 100 });
    // Tests that are not about overload must not be refused on a loaded test machine.
    expect(testConfig().server.overload).toMatchObject({ maxEventLoopDelayMs: 0, maxCpuCores: 0, maxInFlightTurns: 0, maxNewCallsPerSecond: 0 });
  });

  it("a burst of new calls is stopped at its start: beyond maxNewCallsPerSecond in one second, a new call is refused; the next second takes calls again", async () => {
    const local = await startTestService({ config: testConfig({ server: { overload: { maxNewCallsPerSecond: 3 } } }) });
    try {
      const kinds: string[][] = [];
      for (let i = 0; i < 5; i++) kinds.push((await local.post(ev.start(`burst-${i}`))).actions.map((a) => a.type));
      expect(kinds).toEqual([["speak"], ["speak"], ["speak"], ["speak", "hangup"], ["speak", "hangup"]]);
      // A refused call is not taken on, so it does not count against the next second.
      await new Promise((r) => setTimeout(r, 1100));
      expect((await local.post(ev.start("burst-later"))).actions.map((a) => a.type)).toEqual(["speak"]);
      expect((await local.app.inject({ method: "GET", url: "/metrics" })).body).toMatch(/^aiflow_calls_refused_total\{reason="new_calls"\} 2$/m);
    } finally {
      await local.close();
    }
  });

  it("a redelivered session_start of a refused call gets the same refusal (its first answer may have been lost)", async () => {
    svc.load.force("event_loop_delay");
    try {
      const first = await svc.post(ev.start("overload-redelivered"));
      svc.load.force(undefined);
      const again = await svc.post(ev.start("overload-redelivered"));
      expect(again.actions).toEqual(first.actions);
      expect(spoken(again.actions)).toEqual([BUSY]);
    } finally {
      svc.load.force(undefined);
    }
  });

  it("a redelivered session_start of an admitted call is never refused, even over the limit, and counts as one new call", async () => {
    const local = await startTestService({ config: testConfig({ server: { overload: { maxNewCallsPerSecond: 2 } } }) });
    try {
      const first = await local.post(ev.start("admitted-redelivered"));
      expect(first.actions.map((a) => a.type)).toEqual(["speak"]);
      // Its answer was lost: sipgate sends the session_start again. Not a second new call.
      const again = await local.post(ev.start("admitted-redelivered"));
      expect(spoken(again.actions)).not.toContain(BUSY);
      expect(again.actions.map((a) => a.type)).not.toContain("hangup");
      // One more new call fits in this second (2 a second): the redelivery did not take its place.
      expect((await local.post(ev.start("admitted-second"))).actions.map((a) => a.type)).toEqual(["speak"]);
      // Over the limit now (and forced): the admitted call's session_start, redelivered once more, is still not refused.
      local.load.force("cpu");
      const late = await local.post(ev.start("admitted-redelivered"));
      expect(late.actions.map((a) => a.type)).not.toContain("hangup");
      expect(spoken(late.actions)).not.toContain(BUSY);
      // A new call is.
      expect(spoken((await local.post(ev.start("admitted-third"))).actions)).toEqual([BUSY]);
      local.load.force(undefined);
      // After its session_end the id is forgotten: the same id later is a new call again.
      expect((await local.post(ev.end("admitted-redelivered"))).status).toBe(204);
    } finally {
      local.load.force(undefined);
      await local.close();
    }
  });
});
