import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { loadavg } from "node:os";
import { loadConfigFile } from "../src/appConfig.js";
import { burstTarget, concurrencyRows } from "./burstRows.js";
import { capacityOptionsFrom, capacityRows, capacityScenario, type CapacityResult } from "./capacity.js";
import { concurrencyScenario } from "./concurrency.js";
import type { BenchOutput } from "./outputs.js";

/**
 * `npm run bench -- --only capacity,burst [--update]`: measures only those rows, and writes the
 * checked-in results (bench/results.{md,json}) with those rows replaced and every other row as it
 * was measured (each row says when; the machine is shared, so a part is often measured alone).
 *   capacity  row (i), capacity at a caller's pace (capacity.ts; BENCH_CAPACITY_* size it)
 *   burst     row (f), calls started within a second on Redis (concurrency.ts), overload limits on
 */

export const ONLY_PARTS = ["capacity", "burst"] as const;
const ok = (m: boolean) => (m ? "met" : "**missed**");

export function capacityMet(c: CapacityResult): boolean {
  return (c.best?.concurrentCalls ?? 0) >= 2000 && c.levels.every((l) => l.violations.length === 0);
}

export function capacityTarget(c: CapacityResult) {
  return { value: c.best?.concurrentCalls ?? 0, target: `≥ 2,000 calls at once on one instance (2 cores) at a caller's pace, answer p99 ≤ server.answerWithinMs (${c.answerWithinMs} ms), no error, every call correct by the caller-side consent oracle`, met: capacityMet(c) };
}

export function capacityNote(c: CapacityResult): string {
  const o = c.options;
  return `- (i) bench/capacity.ts: one instance as \`npm start\` runs it (\`node dist/src/main.js\`, the shipped config with the SMS abuse windows open, overload limits as shipped: event-loop delay ${c.overload.maxEventLoopDelayMs} ms, CPU ${c.overload.maxCpuCores || "off"}, turns in flight ${c.overload.maxInFlightTurns}, new calls ${(c.overload as { maxNewCallsPerSecond?: number }).maxNewCallsPerSecond ?? "–"}/s), on a private redis-server; a model server in another process (${o.modelMinMs}–${o.modelMaxMs} ms a request, seeded); callers in ${o.callers} processes of their own. Calls arrive at a steady rate; every agent line plays 70 ms a character (assistant_speak, then assistant_speech_ended), the caller answers 1–3 s after it; 60 % say yes, 15 % no, 10 % stay silent at the consent question (user_input_timeout after the input timeout, twice, then hang up), 15 % talk over it (barge-in) and answer the next question. A level of L calls: arrivals at L / (a call's duration) for a call's duration plus ${o.holdS} s, measured over the last ${o.holdS} s (answers of every webhook request, the service's CPU from /proc, Redis commands from the server's INFO); then every call ends and is checked. Levels double from ${o.from} up to ${o.max}, then the gap is halved ${o.bisect} times (at most ${o.budgetS} s). A level passes with answer p99 ≤ ${c.answerWithinMs} ms, no error, no refused call, every call correct (yes: one SMS to its own number; no, silent: none) and no violation of the caller-side consent oracle (bench/consentOracle.ts: an SMS only after the caller heard the whole question naming that number and said yes with nothing said after it; none after a no; one per yes). Run: ${c.wallS} s; machine load ${c.loadBefore.join(" / ")} before, ${c.loadAfter.join(" / ")} after (1/5/15 min; the machine was shared).`;
}

/** Replaces the rows (and notes) of `letter` in results.md; inserts them after the last row (note) when new. */
function replaceRows(md: string, letter: string, rows: string, note?: string, noteMatch = `- (${letter}) `): string {
  const lines = md.split("\n");
  const firstRow = lines.findIndex((l) => l.startsWith(`| (${letter}) `));
  const kept = lines.filter((l) => !l.startsWith(`| (${letter}) `) && !(note && l.startsWith(noteMatch)));
  const at = firstRow >= 0 ? firstRow : kept.findLastIndex((l) => /^\| \([a-z]\) /.test(l)) + 1;
  kept.splice(at, 0, rows);
  if (note) kept.splice(kept.findLastIndex((l) => /^- \([a-z]\) /.test(l)) + 1, 0, note);
  return kept.join("\n");
}

export async function runOnly(parts: string[], output: BenchOutput, log: (s: string) => void): Promise<void> {
  const json = JSON.parse(readFileSync("bench/results.json", "utf8")) as Record<string, unknown> & { targets: Record<string, unknown> };
  let md = readFileSync("bench/results.md", "utf8");
  const answerWithinMs = loadConfigFile("config/agent.yaml").server.answerWithinMs;
  const when = `${process.version}, ${new Date().toISOString()}, load ${loadavg()
    .map((x) => x.toFixed(1))
    .join(" / ")}`;
  if (parts.includes("burst")) {
    const calls = Number(process.env.BENCH_CONCURRENT_CALLS ?? 1000);
    log(`(f) ${calls} calls started within a second, one instance on Redis, overload limits as shipped`);
    const c = await concurrencyScenario({ calls });
    const target = burstTarget(c, answerWithinMs);
    json.concurrency = { ...c, measuredAlone: when };
    json.targets.concurrency = target;
    md = replaceRows(
      md,
      "f",
      concurrencyRows(c, answerWithinMs, ok(target.met)),
      `- (f) overload, measured alone with \`npm run bench -- --only burst\` (${when}): the burst as above with the shipped \`server.overload\` limits; a call whose session_start was answered with the \`overloaded\` line and a hangup counts as refused (not failed), and "admitted" answer times are every request of the other calls.`,
      "- (f) overload",
    );
  }
  if (parts.includes("capacity")) {
    const c = await capacityScenario(capacityOptionsFrom([], process.env));
    json.capacity = c;
    json.targets.capacity = capacityTarget(c);
    md = replaceRows(md, "i", capacityRows(c, ok(capacityMet(c))), capacityNote(c));
  }
  mkdirSync(output.dir, { recursive: true });
  writeFileSync(output.json, JSON.stringify(json, null, 2));
  writeFileSync(output.md, md);
  console.log(md);
  log(`written: ${output.md}, ${output.json} (rows ${parts.join(", ")} measured now, the rest as checked in)`);
}
