import { parseArgs } from "node:util";
import type { Transport } from "../src/store/callStore.js";
import { describeFailure, runSeed, simulate } from "./run.js";

/**
 * npm run simulate -- --seeds N [--from S] [--transport http|ws|both]
 * npm run simulate -- --seed S --transport http|ws [--trace]
 * Runs simulated calls (seeded, virtual time, faults) through the whole service and checks the
 * consent invariants; exits 1 if any seed breaks one, printing the command that replays it.
 */
const USAGE = "usage: npm run simulate -- --seeds N [--from S] [--transport http|ws|both] | --seed S [--transport http|ws] [--trace]";

async function main(): Promise<number> {
  let args;
  try {
    args = parseArgs({
      options: { seeds: { type: "string" }, from: { type: "string" }, seed: { type: "string" }, transport: { type: "string" }, trace: { type: "boolean" }, help: { type: "boolean" }, "max-failures": { type: "string" } },
      strict: true,
    }).values;
  } catch (e) {
    console.error(`${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (args.help) {
    console.log(USAGE);
    return 0;
  }
  const t = args.transport ?? "both";
  if (!["http", "ws", "both"].includes(t)) {
    console.error(`--transport: expected http, ws or both, got ${t}\n${USAGE}`);
    return 2;
  }
  const transports: Transport[] = t === "both" ? ["http", "ws"] : [t as Transport];
  const int = (name: string, v: string | undefined, dflt: number) => {
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`--${name}: expected a whole number, got ${v}`);
    return n;
  };
  try {
    if (args.seed !== undefined) {
      const seed = int("seed", args.seed, 0);
      let failed = false;
      for (const transport of transports) {
        const r = await runSeed(seed, transport);
        if (r.violations.length) failed = true;
        console.log(r.violations.length || args.trace ? describeFailure(r) : `seed ${seed} (${transport}): ok`);
      }
      return failed ? 1 : 0;
    }
    const count = int("seeds", args.seeds, 1000);
    const from = int("from", args.from, 1);
    const maxShown = int("max-failures", args["max-failures"], 3);
    let shown = 0;
    const s = await simulate(from, count, transports, (r) => {
      if (shown++ < maxShown) console.log(describeFailure(r) + "\n");
    });
    console.log(`${s.runs} simulated calls (seeds ${from}..${from + count - 1}, ${transports.join(" and ")}) in ${(s.ms / 1000).toFixed(1)} s: ${s.sends} SMS sent, ${s.declines} declines recorded`);
    console.log(`violations: ${s.failing.length === 0 ? "none" : Object.entries(s.byInvariant).map(([k, n]) => `${k} ${n}`).join(", ")}`);
    return s.failing.length ? 1 : 0;
  } catch (e) {
    console.error((e as Error).message);
    return 2;
  }
}

process.exitCode = await main();
