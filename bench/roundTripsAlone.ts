import { readFileSync, writeFileSync } from "node:fs";
import { peerCompare, peerNote, peerRows, PEER_MODEL_MS, type PeerCompareResult } from "./peerCompare.js";
import { benchRoundTrips, roundTripNote, roundTripRows, roundTripTargets } from "./run.js";

/**
 * Row (b) alone: `npx tsx bench/roundTripsAlone.ts [--update]` measures the round trips and prompt
 * size against the naive baseline and the side-by-side comparison with OpenAI Agents JS, prints
 * them, and with `--update` puts them into the checked-in bench/results.json and bench/results.md
 * in place of the (b) rows there, the other rows as they were measured (as bench/tracing.ts does
 * for (h)). BENCH_RUNS sets the passes of the comparison (default 3), BENCH_PEER_MODEL_MS its
 * model time per request (default 300).
 */

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const ok = (m: boolean) => (m ? "met" : "**missed**");
const log = (s: string) => process.stderr.write(s + "\n");

type RoundTrips = Awaited<ReturnType<typeof benchRoundTrips>>;

function peerTarget(peer: PeerCompareResult) {
  return { value: peer.wallRatioStopAtTools, target: "wall time per call ≤ ½ of OpenAI Agents JS's with stopAtToolNames", met: peer.wallRatioStopAtTools <= 0.5 };
}

function rows(roundTrips: RoundTrips, peer: PeerCompareResult): string {
  return `${roundTripRows(roundTrips, ok)}\n${peerRows(peer, ok(peerTarget(peer).met))}`;
}

function updateCheckedIn(roundTrips: RoundTrips, peer: PeerCompareResult): void {
  const json = JSON.parse(readFileSync("bench/results.json", "utf8")) as Record<string, unknown> & { targets: Record<string, unknown> };
  const measuredAlone = new Date().toISOString();
  json.roundTrips = { ...roundTrips, measuredAlone };
  json.peer = { ...peer, measuredAlone };
  Object.assign(json.targets, roundTripTargets(roundTrips), { peerWallTime: peerTarget(peer) });
  writeFileSync("bench/results.json", JSON.stringify(json, null, 2));
  const lines = readFileSync("bench/results.md", "utf8").split("\n");
  const firstRow = lines.findIndex((l) => l.startsWith("| (b) "));
  const kept = lines.filter((l) => !l.startsWith("| (b) ") && !l.startsWith("- (b) "));
  // In place of the old (b) rows, else after the last (a) row.
  const at = firstRow >= 0 ? firstRow : kept.findLastIndex((l) => l.startsWith("| (a) ")) + 1;
  kept.splice(at, 0, rows(roundTrips, peer));
  const firstNote = kept.findIndex((l) => /^- \([c-z]\) /.test(l));
  kept.splice(firstNote >= 0 ? firstNote : kept.length, 0, `${roundTripNote(roundTrips)} Measured alone (\`npx tsx bench/roundTripsAlone.ts --update\`, ${process.version}, ${measuredAlone}).`, peerNote(peer));
  writeFileSync("bench/results.md", kept.join("\n"));
}

const roundTrips = await benchRoundTrips();
const peer = await peerCompare({ modelMs: PEER_MODEL_MS, runs: RUNS, log });
console.log(JSON.stringify({ roundTrips, peer }, null, 2));
console.log(rows(roundTrips, peer));
if (process.argv.includes("--update")) updateCheckedIn(roundTrips, peer);
process.exit(0);
