import type { CallSummary } from "./summary.js";

/** The outcome figures the page shows over the calls it lists (the same ones /metrics counts over all calls). */
export interface OutcomeFigures {
  calls: number;
  /** Of the calls whose caller was asked for consent. */
  consentGivenRate?: number;
  consentDeclinedRate?: number;
  smsFailuresByReason: Record<string, number>;
  smsRefusalsByReason: Record<string, number>;
  transfers: number;
  apologies: number;
  holdingLinesPerCall?: number;
  waitUntilHoldingMs: { p50?: number; p95?: number };
  waitUntilAnswerMs: { p50?: number; p95?: number };
}

export function outcomeFigures(calls: CallSummary[]): OutcomeFigures {
  const asked = calls.filter((c) => c.consent !== undefined);
  const count = (pick: (c: CallSummary) => boolean) => calls.filter(pick).length;
  const byReason = (outcome: "sms_failed" | "sms_refused") => {
    const out: Record<string, number> = {};
    for (const c of calls) if (c.outcomes.includes(outcome)) for (const r of c.smsReasons) out[r] = (out[r] ?? 0) + 1;
    return out;
  };
  return {
    calls: calls.length,
    ...(asked.length ? { consentGivenRate: count((c) => c.consent === "given") / asked.length, consentDeclinedRate: count((c) => c.consent === "declined") / asked.length } : {}),
    smsFailuresByReason: byReason("sms_failed"),
    smsRefusalsByReason: byReason("sms_refused"),
    transfers: count((c) => c.outcomes.includes("transferred")),
    apologies: count((c) => c.outcomes.includes("apology")),
    ...(calls.length ? { holdingLinesPerCall: calls.reduce((a, c) => a + c.holdingLines, 0) / calls.length } : {}),
    waitUntilHoldingMs: percentiles(calls.flatMap((c) => c.waitsUntilHolding)),
    waitUntilAnswerMs: percentiles(calls.flatMap((c) => c.waitsUntilAnswer)),
  };
}

/** Nearest-rank percentiles. */
export function percentiles(values: number[]): { p50?: number; p95?: number } {
  if (!values.length) return {};
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
  return { p50: rank(50), p95: rank(95) };
}
