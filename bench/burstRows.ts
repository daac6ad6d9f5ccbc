import type { ConcurrencyResult } from "./concurrency.js";

/**
 * Row (f), the burst of calls started within a second on one instance on Redis, as bench/results.md
 * shows it, and its target: with the shipped overload limits on, the ADMITTED calls' answers keep
 * p99 ≤ server.answerWithinMs, every admitted call completes, and the refused ones are counted
 * (refused is not failed: the caller heard the `overloaded` line and was hung up).
 */

export function burstMet(c: ConcurrencyResult, answerWithinMs: number): boolean {
  const admitted = c.admitted ?? { calls: c.calls, p99Ms: c.http.p99Ms };
  return admitted.p99Ms <= answerWithinMs && c.completedCalls === admitted.calls && admitted.calls > 0;
}

export function burstTarget(c: ConcurrencyResult, answerWithinMs: number) {
  return {
    value: c.admitted?.p99Ms ?? c.http.p99Ms,
    target: `admitted calls' answer p99 ≤ server.answerWithinMs (${answerWithinMs} ms) and every admitted call with its SMS, ${c.calls} calls started within a second on Redis, the shipped overload limits on; refused calls counted`,
    met: burstMet(c, answerWithinMs),
  };
}

export function concurrencyRows(c: ConcurrencyResult, answerWithinMs: number, verdict: string): string {
  const f = (x: number, digits = 0) => x.toFixed(digits);
  const what = `${c.calls} calls at once, one instance on Redis, model ${c.model.minMs}–${c.model.maxMs} ms`;
  const ops = c.service.storeOpsPerEvent;
  const waited = c.http.p99Ms - c.service.webhookInService.p99Ms;
  const problems = c.problems.length ? `; ${c.problems.slice(0, 3).join("; ")}${c.problems.length > 3 ? "; …" : ""}` : "";
  const o = c.overload;
  const limits = o ? (o.off ? "overload limits off" : `overload limits: event-loop delay ${o.maxEventLoopDelayMs} ms, CPU ${o.maxCpuCores || "off"}, turns in flight ${o.maxInFlightTurns}, new calls ${o.maxNewCallsPerSecond}/s`) : "";
  const admitted = c.admitted;
  return [
    admitted
      ? `| (f) overload: admitted / refused calls; admitted calls' answer p50 / p99, ${what} | ${admitted.calls} / ${c.refusedCalls}; ${f(admitted.p50Ms)} / ${f(admitted.p99Ms)} ms (max ${f(admitted.maxMs)} ms; ${admitted.n} requests, ${admitted.over800Ms} over 800 ms) | ${limits} | | admitted p99 ≤ ${answerWithinMs} ms, every admitted call with its SMS | ${verdict} |`
      : "",
    `| (f) webhook answer time p50 / p99, every request (refused calls' too), ${what} | ${f(c.http.p50Ms)} / ${f(c.http.p99Ms)} ms (max ${f(c.http.maxMs)} ms; ${c.http.n} requests, ${c.http.over1000Ms} over 1 s) | in the service: ${f(c.service.webhookInService.p50Ms)} / ${f(c.service.webhookInService.p99Ms)} ms | | | |`,
    `| (f) holding lines / apologies / admitted calls completed with one SMS to the caller, ${what} | ${c.holdingLines} / ${c.apologies} / ${c.completedCalls} of ${admitted?.calls ?? c.calls}${c.model.unexpected ? `, ${c.model.unexpected} unexpected model requests` : ""}${problems} | | | | |`,
    `| (f) where the time goes: service CPU per event / event-loop delay p99 / answer p99 minus in-service p99 | ${f(c.service.cpuUsPerEvent)} µs / ${f(c.service.eventLoop.p99Ms, 1)} ms / ${f(Math.max(0, waited))} ms (${c.tcp ? `${c.tcp.listenOverflows} connection attempts dropped at the full listen queue, ` : ""}${c.connections.over1000Ms} connections over 1 s to connect) | | | | |`,
    `| (f) Redis per event: commands / of which progress polls / round trip p50 / p99; lease attempts refused | ${f(c.service.redisCommandsPerEvent, 1)} / ${f(ops.progress ?? 0, 1)} / ${f(c.service.redisRoundTrip.p50Ms, 1)} / ${f(c.service.redisRoundTrip.p99Ms, 1)} ms; ${c.service.leaseBusy} | | | | |`,
  ]
    .filter(Boolean)
    .join("\n");
}
