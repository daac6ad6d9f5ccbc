import { describe, expect, it } from "vitest";
import { describeFailure, runSeed, simulate } from "../sim/run.js";
import type { Transport } from "../src/store/callStore.js";

/**
 * The deterministic simulation (sim/): whole calls through the service (one to three instances on
 * one store with faults injected, the model, the clock) in one process under a seeded scheduler,
 * with a simulated sipgate and caller. The oracle sees only what the caller said and heard, what
 * the model answered and the ledger. A failing seed prints the one command that replays it.
 * SIM_SEEDS sets how many seeds each transport runs (CI: 10,000).
 */

const SEEDS = Number(process.env.SIM_SEEDS ?? 10_000);

/**
 * Seeds that once broke an invariant, with what they found; each failed before its fix. They run
 * whatever SIM_SEEDS says (some lie beyond the CI range).
 */
const REGRESSIONS: Array<{ seed: number; transport: Transport; found: string }> = [
  // Lost store replies, resent with their request id (sim/faultyStore.ts).
  { seed: 738, transport: "ws", found: "a collect ran, its reply was lost and the resend failed: the send it took never left and had no sms_withdrawn (ledger_disagrees)" },
  { seed: 7535, transport: "http", found: "the same over HTTP: what a lost collect took is now put back by its request id (ledger_disagrees)" },
  { seed: 34, transport: "http", found: "a progress poll whose reply took a reconnect made the answer late (answer_late)" },
  { seed: 2006, transport: "http", found: "another store reply near the deadline took a reconnect: the answer left late (answer_late)" },
  { seed: 3122, transport: "http", found: "a collect's reply came after a reconnect, and the send it took left after the caller's 'Nein' had arrived (send_before_verdict)" },
  { seed: 9950, transport: "ws", found: "a 'Ja' kept through the reconnect was queued late and judged against the question delivered after it was said (send_without_heard_yes)" },
  { seed: 3159, transport: "ws", found: "session_end's discard of the outbox lost its collect reply: the send it took had no sms_withdrawn (ledger_disagrees)" },
  { seed: 1571, transport: "http", found: "the same over HTTP (ledger_disagrees)" },
  { seed: 591, transport: "ws", found: "a commit ran, its reply was lost and the resend failed: the next event took it for failed and recorded sms_not_sent for a send that then left (ledger_disagrees); the commit is now resent, and asked again, by its request id" },
];

describe("simulation regressions: seeds that broke an invariant once", () => {
  it.each(REGRESSIONS)("seed $seed over $transport: $found", async ({ seed, transport }) => {
    const r = await runSeed(seed, transport);
    expect(r.violations, describeFailure(r)).toEqual([]);
  });
});

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

/**
 * Seeds whose instance died between collecting an approved send and writing the answer that
 * carried it. Under the old records (sms_sent at approval, sms_withdrawn when it never left) the
 * ledger claimed a send that never reached sipgate. Now the approval stands with no outcome, which
 * the oracle accepts only because an instance died after it (verify's `outcome_unknown`).
 */
describe("regression seeds: an instance dies between the approval and the handover", () => {
  // Under the old records (sms_sent at approval, sms_withdrawn when it never left) these seeds showed
  // a ledger claiming a send that never reached sipgate. The lost-reply fault drawn since changed
  // their timing, so they no longer die at that point; they stay as regressions, and the situation
  // itself (a real server killed between approval and handover) is test/ledger.handover.kill.test.ts.
  it.each([11303, 22868])("seed %i over http: every invariant holds", async (seed) => {
    const r = await runSeed(seed, "http");
    expect(r.violations, describeFailure(r)).toEqual([]);
  });
});
