import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

/** `npm run bench` end to end at minimum size: every part runs and reports (numbers are for bench/results.md, not asserted). */
describe("npm run bench", () => {
  it("measures (a) to (i) and writes results.md and results.json", () => {
    const out = mkdtempSync(join(tmpdir(), "bench-"));
    const r = spawnSync(process.execPath, ["--expose-gc", "--import", "tsx", "bench/run.ts"], {
      env: { ...process.env, BENCH_RUNS: "1", BENCH_SECONDS: "1", BENCH_CALLS: "300", BENCH_DEADLINE_CALLS: "2", BENCH_CONCURRENT_CALLS: "20", BENCH_LEDGER_APPENDS: "10", BENCH_TRACING_CALLS: "20", BENCH_TRACING_ROUNDS: "1", BENCH_PEER_MODEL_MS: "0", BENCH_CONSENT_CALLS: "2", BENCH_OUT: out,
        // (i): one level of 2 paced calls (a call at a caller's pace takes about half a minute).
        BENCH_CAPACITY_FROM: "2", BENCH_CAPACITY_MAX: "2", BENCH_CAPACITY_HOLD: "1", BENCH_CAPACITY_BISECT: "0", BENCH_CAPACITY_CALLERS: "1" },
      encoding: "utf8",
      timeout: 380_000,
    });
    expect(r.status, r.stderr).toBe(0);
    const json = JSON.parse(readFileSync(join(out, "results.json"), "utf8"));
    expect(json.webhook.agentRps).toBeGreaterThan(0);
    expect(json.webhook.ceilingRps).toBeGreaterThan(0);
    for (const k of ["ceilingCpuUs", "intakeCpuUs", "agentCpuUs"]) expect(json.webhook[k]).toBeGreaterThan(0);
    expect(json.roundTrips.happyPath.callerTurns).toBeGreaterThan(10);
    // (b) side by side with OpenAI Agents JS: every design sent each call's SMS.
    expect(json.peer.problems).toEqual([]);
    expect(json.peer.peerDefault.requestsPerTurn).toBeGreaterThan(json.peer.ours.requestsPerTurn);
    expect(json.firstSpeech.samples.length).toBeGreaterThanOrEqual(5);
    expect(json.memory.calls).toBe(300);
    expect(json.deadline.webhook.map((r: { modelMs: number }) => r.modelMs)).toEqual([3000, 300]);
    for (const r of json.deadline.webhook) expect(r.calls).toBe(2);
    expect(json.deadline.websocket.map((w: { ttftMs: number; streamSentences: boolean }) => `${w.ttftMs}/${w.streamSentences}`)).toEqual(["300/true", "300/false", "1000/true", "1000/false"]);
    // (f): every call completes with its SMS, and the service's Redis commands and store operations were counted.
    expect(json.concurrency.calls).toBe(20);
    expect(json.concurrency.problems).toEqual([]);
    expect(json.concurrency.completedCalls).toBe(20);
    expect(json.concurrency.service.redisCommandsPerEvent).toBeGreaterThan(1);
    expect(json.concurrency.service.storeOpsPerEvent.commitAndNext).toBeGreaterThan(0);
    // (g): every append timed, four instances against one alone, and every chain the writers left verified.
    expect(json.ledger.postgres.alone.n).toBe(10);
    expect(json.ledger.postgres.fourAtOnce.n).toBe(40);
    expect(json.ledger.postgres.fourAtOnce.p50Ms).toBeGreaterThan(0);
    expect(json.ledger.postgres.ratioP99).toBeGreaterThan(0);
    expect(json.ledger.postgres.chain).toEqual({ records: 60, ok: true });
    expect(json.ledger.file.oneWriter.n).toBe(10);
    expect(json.ledger.file.chain).toEqual({ records: 15, ok: true });
    // (h): tracing off and on over the same calls, spans exported, the no-op's calls counted and timed.
    expect(json.tracing.offCpuUsPerEvent).toBeGreaterThan(0);
    expect(json.tracing.onCpuUsPerEvent).toBeGreaterThan(0);
    expect(json.tracing.spansPerEvent).toBeGreaterThan(1);
    expect(json.tracing.facadeCallsPerEvent).toBeGreaterThan(1);
    // (m): the consent turn with the rule off (the model) and on (no model request).
    expect(json.consentTurn.before.consentModelRequests).toBe(2);
    expect(json.consentTurn.after.consentModelRequests).toBe(0);
    expect(json.consentTurn.after.correct).toBe(2);
    expect(Object.keys(json.targets)).toEqual(["webhookThroughput", "engineP99", "happyPathRequests", "promptTokens", "peerWallTime", "firstSpeech", "memory", "concurrency", "capacity", "ledgerAppend", "tracingOff", "consentTurn"]);
    // (i): the level ran, every call checked by the caller-side oracle.
    expect(json.capacity.levels.length).toBe(1);
    expect(json.capacity.levels[0].callsStarted).toBeGreaterThan(0);
    expect(json.capacity.levels[0].violations).toEqual([]);
    const md = readFileSync(join(out, "results.md"), "utf8");
    for (const row of ["(a) webhook throughput", "(b) LLM requests per caller turn", "(b) side by side: wall time per call", "(c) time to first speech", "(d) memory per live call", "(e) webhook answer time", "(e) WebSocket", "(a) server CPU per event", "(f) webhook answer time", "(f) where the time goes", "(f) Redis per event", "(g) consent-ledger append p50 / p99, PostgreSQL, 4 instances", "(g) consent-ledger append p50 / p99, file ledger", "(h) server CPU per event, tracing off / on", "(h) tracing off: the no-op tracer's share", "(f) overload: admitted / refused calls", "(i) capacity at a caller's pace", "(m) consent turn answer p50 / p99", "(m) LLM requests per caller turn"]) expect(md).toContain(row);
  }, 400_000);
});
