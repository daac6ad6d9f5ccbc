import type { TrialResult } from "./runTrial.js";

/** Numbers across trials: pass^k (tau-bench), rates, latency percentiles, tokens and cost. */

/** C(n, k) as a float; fine for the small n of eval trials. */
export function choose(n: number, k: number): number {
  if (k < 0 || k > n) return 0;
  let r = 1;
  for (let i = 1; i <= k; i++) r = (r * (n - k + i)) / i;
  return r;
}

/** pass^k over scenarios: mean of C(c,k)/C(n,k), with c passes of n trials each. */
export function passHatK(perScenario: Array<{ passes: number; trials: number }>, k: number): number {
  if (perScenario.length === 0) return 0;
  const sum = perScenario.reduce((a, s) => a + (s.trials >= k ? choose(s.passes, k) / choose(s.trials, k) : 0), 0);
  return sum / perScenario.length;
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx]!;
}

export interface ScenarioSummary {
  scenario: string;
  model: string;
  trials: number;
  passes: number;
  expectFailure: boolean;
  /** For a self-check scenario: it failed as it should, in every trial. */
  selfCheckOk: boolean;
  failures: string[];
}

export interface ModelSummary {
  model: string;
  scenarios: number;
  trials: number;
  passes: number;
  passRate: number;
  passHatK: Record<number, number>;
  consentViolations: number;
  guardTrips: number;
  falseClaims: number;
  harnessErrors: number;
  avgCallerTurns: number;
  llmRequestsPerCallerTurn: number;
  latencyByStep: Record<string, { p50: number; p95: number; n: number }>;
  avgPromptTokensPerRequest: number;
  avgTokensPerCall: number;
  avgCostPerCallUsd: number;
}

export function summarizeScenarios(results: TrialResult[], expectFailure: (id: string) => boolean): ScenarioSummary[] {
  const groups = new Map<string, TrialResult[]>();
  for (const r of results) {
    const key = `${r.model}\u0000${r.scenario}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  return [...groups.values()].map((trials) => {
    const first = trials[0]!;
    const passes = trials.filter((t) => t.passed).length;
    const ef = expectFailure(first.scenario);
    return {
      scenario: first.scenario,
      model: first.model,
      trials: trials.length,
      passes,
      expectFailure: ef,
      selfCheckOk: ef && passes === 0 && trials.every((t) => !t.error),
      failures: [...new Set(trials.flatMap((t) => t.failures))],
    };
  });
}

export function summarizeModel(model: string, results: TrialResult[], scenarios: ScenarioSummary[], maxK: number): ModelSummary {
  const mine = results.filter((r) => r.model === model);
  // Self-check scenarios test the harness, not the model: they do not count towards pass rates.
  const graded = scenarios.filter((s) => s.model === model && !s.expectFailure);
  const gradedIds = new Set(graded.map((s) => s.scenario));
  const gradedTrials = mine.filter((r) => gradedIds.has(r.scenario));
  const passHat: Record<number, number> = {};
  for (let k = 1; k <= maxK; k++) passHat[k] = passHatK(graded.map((s) => ({ passes: s.passes, trials: s.trials })), k);
  const latency: Record<string, number[]> = {};
  for (const r of mine) for (const [step, ms] of Object.entries(r.metrics.latencyByStep)) (latency[step] ??= []).push(...ms);
  const sum = (f: (r: TrialResult) => number) => mine.reduce((a, r) => a + f(r), 0);
  const turns = sum((r) => r.metrics.callerTurns);
  const requests = sum((r) => r.metrics.llmRequests);
  return {
    model,
    scenarios: graded.length,
    trials: gradedTrials.length,
    passes: gradedTrials.filter((r) => r.passed).length,
    passRate: gradedTrials.length ? gradedTrials.filter((r) => r.passed).length / gradedTrials.length : 0,
    passHatK: passHat,
    consentViolations: sum((r) => r.metrics.consentViolations),
    guardTrips: sum((r) => r.metrics.guardTrips),
    falseClaims: sum((r) => r.metrics.falseClaims),
    harnessErrors: mine.filter((r) => r.error).length,
    avgCallerTurns: mine.length ? turns / mine.length : 0,
    llmRequestsPerCallerTurn: turns ? requests / turns : 0,
    latencyByStep: Object.fromEntries(Object.entries(latency).map(([s, v]) => [s, { p50: percentile(v, 50), p95: percentile(v, 95), n: v.length }])),
    avgPromptTokensPerRequest: requests ? sum((r) => r.metrics.promptTokens) / requests : 0,
    avgTokensPerCall: mine.length ? sum((r) => r.metrics.promptTokens + r.metrics.completionTokens) / mine.length : 0,
    avgCostPerCallUsd: mine.length ? sum((r) => r.metrics.costUsd) / mine.length : 0,
  };
}
