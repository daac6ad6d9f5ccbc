import { describe, expect, it } from "vitest";
import { describeFailure, simulate } from "../sim/run.js";

/**
 * The deterministic simulation (sim/): whole calls through the service (one to three instances on
 * one store with faults injected, the model, the clock) in one process under a seeded scheduler,
 * with a simulated sipgate and caller. The oracle sees only what the caller said and heard, what
 * the model answered and the ledger. A failing seed prints the one command that replays it.
 * SIM_SEEDS sets how many seeds each transport runs (CI: 10,000).
 */

const SEEDS = Number(process.env.SIM_SEEDS ?? 10_000);

describe.each(["http", "ws"] as const)("simulated calls over %s", (transport) => {
  it(`${SEEDS} seeds: every invariant holds`, { timeout: 600_000 }, async () => {
    const s = await simulate(1, SEEDS, [transport]);
    const shown = s.failing.slice(0, 2).map(describeFailure).join("\n\n");
    console.log(`${transport}: ${s.runs} calls in ${(s.ms / 1000).toFixed(1)} s, ${s.sends} SMS sent, ${s.declines} declines; violations ${JSON.stringify(s.byInvariant)}`);
    expect(s.failing.length, shown).toBe(0);
    // Not vacuous: SMS are sent and callers decline.
    expect(s.sends).toBeGreaterThan(SEEDS / 10);
    expect(s.declines).toBeGreaterThan(SEEDS / 50);
  });
});
