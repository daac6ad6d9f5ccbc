import { join } from "node:path";
import { parseArgs } from "node:util";

/**
 * Where `npm run bench` writes. The checked-in bench/results.{md,json} are the figures the README
 * quotes; an ordinary run (another machine, a quick check) must not overwrite them, so it goes to
 * the ignored bench/out/ unless `--update` says this run is the new reference.
 */

export const BENCH_USAGE = `usage: npm run bench -- [--update] [--only capacity,burst]
  (no flag)    write results.md and results.json to bench/out/ (ignored by git)
  --update     overwrite the checked-in bench/results.md and bench/results.json
  --only LIST  measure only these rows (capacity: (i), burst: (f)); the other rows are copied from
               the checked-in results. BENCH_CAPACITY_FROM, _MAX, _HOLD, _BISECT, _CALLERS, _BUDGET, _SEED
               size the capacity search (bench/capacity.ts takes them as flags too)
  --help       this text
environment: BENCH_OUT=dir writes there instead (not with --update); BENCH_RUNS, BENCH_SECONDS, BENCH_CALLS, BENCH_DEADLINE_CALLS,
  BENCH_CONCURRENT_CALLS, BENCH_LEDGER_APPENDS, BENCH_TRACING_CALLS, BENCH_TRACING_ROUNDS, BENCH_PEER_MODEL_MS, BENCH_CONSENT_CALLS, BENCH_CONSENT_MODEL_MS size the run; BENCH_DATABASE_URL (or TEST_DATABASE_URL) names the PostgreSQL
  for the ledger row (g), else a private one with durable defaults is started`;

export class BenchUsageError extends Error {
  override name = "BenchUsageError";
}

export interface BenchOutput {
  dir: string;
  json: string;
  md: string;
  /** The run replaces the checked-in reference figures. */
  checkedIn: boolean;
  /** Only these parts are measured (--only); undefined: all. */
  only?: string[];
}

const ONLY = ["capacity", "burst"];

/** The output paths for these command-line arguments and environment, or undefined for --help. */
export function benchOutput(argv: string[], env: Record<string, string | undefined>): BenchOutput | undefined {
  let values;
  try {
    values = parseArgs({ args: argv, options: { update: { type: "boolean", default: false }, help: { type: "boolean", default: false }, only: { type: "string" } }, strict: true }).values;
  } catch (e) {
    throw new BenchUsageError((e as Error).message);
  }
  if (values.help) return undefined;
  if (values.update && env.BENCH_OUT) throw new BenchUsageError(`--update writes the checked-in bench/ files; BENCH_OUT=${env.BENCH_OUT} asks for another folder: use one of them`);
  const only = values.only?.split(",").map((p) => p.trim());
  const unknown = only?.filter((p) => !ONLY.includes(p));
  if (only && (only.length === 0 || unknown!.length > 0)) throw new BenchUsageError(`--only ${values.only}: ${unknown!.length ? `unknown part ${unknown!.join(", ")}` : "name a part"}; the parts: ${ONLY.join(", ")}`);
  const dir = values.update ? "bench" : env.BENCH_OUT || join("bench", "out");
  return { dir, json: join(dir, "results.json"), md: join(dir, "results.md"), checkedIn: values.update, ...(only ? { only } : {}) };
}
