import { spawnSync } from "node:child_process";
import { resolve } from "node:path";
import type { ConcurrencyResult } from "./concurrency.js";

/**
 * Row (f) alone, for its service CPU per event, before against after: on a shared machine an
 * absolute figure says more about the neighbours than about a change, so this runs row (f)
 * (bench/concurrency.ts, each run a fresh service, model server and private redis-server) in this
 * checkout and in another one (`--against DIR`: e.g. `git worktree add /tmp/before <commit>` or
 * `git archive <commit> | tar -x -C DIR` with a node_modules link) one after the other, round by
 * round, and prints every run, the medians and the ratio of the medians (this / against).
 *
 *   npx tsx bench/cpuPerEvent.ts [--calls 1000] [--rounds 3] [--against DIR]
 *
 * Without --against it runs this checkout only. BENCH_CPU_PROF=DIR makes each run write the
 * service's CPU profile (see concurrency.ts).
 */

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const calls = Number(arg("--calls") ?? 1000);
const rounds = Number(arg("--rounds") ?? 3);
const against = arg("--against");
if (!Number.isInteger(calls) || calls < 1) throw new Error(`--calls must be a whole number above 0, got ${arg("--calls")}`);
if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds must be a whole number above 0, got ${arg("--rounds")}`);

interface Run {
  cpuUsPerEvent: number;
  events: number;
  completed: number;
}

function runOnce(dir: string): Run {
  const r = spawnSync(process.execPath, ["--import", "tsx", "bench/concurrency.ts", String(calls)], { cwd: dir, encoding: "utf8", maxBuffer: 64 * 1024 * 1024, stdio: ["ignore", "pipe", "inherit"] });
  if (r.status !== 0) throw new Error(`row (f) in ${dir} exited ${r.status}`);
  const out = JSON.parse(r.stdout) as ConcurrencyResult;
  return { cpuUsPerEvent: out.service.cpuUsPerEvent, events: out.service.events, completed: out.completedCalls };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

const sides = [{ name: "this", dir: process.cwd() }, ...(against ? [{ name: "against", dir: resolve(against) }] : [])];
const runs = new Map<string, Run[]>(sides.map((s) => [s.name, []]));
for (let round = 1; round <= rounds; round++) {
  // Alternating which side goes first: a machine getting busier or quieter favours neither.
  for (const side of round % 2 ? sides : [...sides].reverse()) {
    const r = runOnce(side.dir);
    runs.get(side.name)!.push(r);
    console.log(`round ${round} ${side.name}: ${r.cpuUsPerEvent} µs CPU per event (${r.events} events, ${r.completed} of ${calls} calls completed)`);
  }
}
const medians = Object.fromEntries(sides.map((s) => [s.name, median(runs.get(s.name)!.map((r) => r.cpuUsPerEvent))]));
for (const s of sides) console.log(`median ${s.name} (${s.dir}): ${medians[s.name]} µs`);
if (against) console.log(`ratio this / against: ${(medians.this! / medians.against!).toFixed(2)}`);
