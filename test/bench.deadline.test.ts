import { describe, expect, it } from "vitest";
import { deadlineScenario, openLimits } from "../bench/deadline.js";
import { loadConfigFile, parseConfig } from "../src/appConfig.js";

/**
 * Bench (e)'s call player at minimum size: whole calls over real HTTP, played as sipgate does
 * (holding lines included), end with exactly one SMS to each caller. No timing is asserted.
 */
describe("bench (e): whole calls against the answer deadline", () => {
  it("with a 300 ms model and the default deadline every call completes with one SMS to its own caller", async () => {
    const r = await deadlineScenario({ modelMs: 300, calls: 3, concurrency: 3, speechMs: 50 });
    expect(r.problems).toEqual([]);
    expect(r.completedCalls).toBe(3);
    expect(r.unexpectedModelRequests).toBe(0);
    expect(r.http.n).toBeGreaterThan(3 * 5);
    expect(r.previousAnswer.n).toBeGreaterThanOrEqual(6);
  }, 20_000);

  it("when every turn outlasts the deadline, the holding lines are played through and every call still completes", async () => {
    const base = openLimits(loadConfigFile("config/agent.yaml"));
    // The model takes at least 300 ms, the deadline is 100 ms: both model turns of every call get a holding line.
    const config = parseConfig({ ...base, server: { ...base.server, answerWithinMs: 100, holdingTimeoutSeconds: 1 } });
    const r = await deadlineScenario({ modelMs: 300, calls: 2, concurrency: 2, speechMs: 50, config });
    expect(r.problems).toEqual([]);
    expect(r.completedCalls).toBe(2);
    expect(r.holdingLines).toBeGreaterThanOrEqual(4);
    expect(r.unexpectedModelRequests).toBe(0);
  }, 20_000);
});
