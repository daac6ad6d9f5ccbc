import { fork, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Redis } from "ioredis";
import { loadConfigFile, parseConfig } from "../src/appConfig.js";
import { PromptLibrary } from "../src/engine/promptLibrary.js";
import { PROMPTS_DIR } from "../src/service.js";
import { MAIN, buildDist } from "../test/support/serverProcess.js";
import { freePort } from "../test/support/processes.js";
import type { CallSummary, RunRequest, RunResult } from "./capacityCaller.js";
import { benchRedis } from "./concurrency.js";
import { openLimits, percentile } from "./deadline.js";

/**
 * Bench (i), capacity at a caller's pace: how many calls at once ONE instance holds with every
 * webhook answer's p99 within server.answerWithinMs, no error, and every call correct by the
 * caller-side consent oracle. The instance runs as `npm start` runs it (compiled dist/, config
 * from a file via CONFIG, REDIS_URL), on a private redis-server, with the model server
 * (capacityModel.ts) and the callers (capacityCaller.ts, several processes) in processes of their own.
 *
 * A level L: calls arrive at a steady rate L / D (D: a call's duration, measured at the level
 * before) for D + hold seconds, so about L calls are live during the last `hold` seconds; that
 * window is what is measured (answer times, the service's CPU and its Redis commands). Then the
 * level drains (every call ends and is checked). Levels double from `from` until one fails or
 * `max` is reached, then the gap between the last passing and the first failing level is halved
 * `bisect` times; the whole search stops after `budgetS`.
 */

export interface CapacityOptions {
  from: number;
  max: number;
  holdS: number;
  bisect: number;
  callers: number;
  budgetS: number;
  seed: number;
  modelMinMs: number;
  modelMaxMs: number;
}

export const CAPACITY_DEFAULTS: CapacityOptions = { from: 250, max: 4000, holdS: 20, bisect: 2, callers: 2, budgetS: 600, seed: 21, modelMinMs: 300, modelMaxMs: 1500 };

export interface LevelResult {
  level: number;
  /** Calls live on average during the measured window (from the callers' start and end times). */
  concurrentCalls: number;
  callsStarted: number;
  arrivalsPerS: number;
  callDurationS: number;
  events: number;
  answer: { p50Ms: number; p99Ms: number; maxMs: number };
  service: { cpuCores: number; cpuMsPerCall: number; cpuMsPerCallMinute: number; cpuUsPerEvent: number; redisCommandsPerEvent: number; redisScriptCallsPerEvent: number; redisCommandsPerSecond: Record<string, number> };
  callers: { cpuCores: number; eventLoopP99Ms: number; processes: number };
  kinds: Record<string, number>;
  sends: number;
  refused: number;
  holdingLines: number;
  violations: string[];
  problems: string[];
  passed: boolean;
  why?: string;
}

export interface CapacityResult {
  options: CapacityOptions;
  answerWithinMs: number;
  overload: { maxEventLoopDelayMs: number; maxCpuCores: number; maxInFlightTurns: number };
  levels: LevelResult[];
  best?: LevelResult;
  firstFailing?: LevelResult;
  loadBefore: number[];
  loadAfter: number[];
  wallS: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));
const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;
const log = (s: string) => process.stderr.write(`(i) ${s}\n`);

/** CPU time of a process (user + system, µs), from /proc (Linux). */
function processCpuUs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  // utime and stime are fields 14 and 15 of the whole line, in clock ticks (100 a second).
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

/** Commands Redis ran so far, in all and by command (INFO commandstats). */
async function redisCommands(admin: Redis): Promise<{ total: number; by: Record<string, number> }> {
  const info = await admin.info("commandstats");
  const by: Record<string, number> = {};
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) by[m[1]!] = Number(m[2]);
  return { total: Object.values(by).reduce((a, b) => a + b, 0), by };
}

async function waitHealthy(port: number, proc: ChildProcess): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (proc.exitCode !== null) throw new Error(`the service exited ${proc.exitCode} before it was ready`);
    try {
      if ((await fetch(`http://127.0.0.1:${port}/healthz`)).status < 600) return;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  throw new Error("the service did not answer /healthz within 20 s");
}

async function stop(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once("exit", r));
  proc.kill("SIGTERM");
  await exited;
}

/** Runs the capacity search; see the file comment. */
export async function capacityScenario(o: CapacityOptions = CAPACITY_DEFAULTS): Promise<CapacityResult> {
  const started = Date.now();
  const loadBefore = loadavg().map((x) => round(x, 2));
  buildDist();
  const shipped = loadConfigFile("config/agent.yaml");
  const prompts = new PromptLibrary(PROMPTS_DIR, shipped.language);
  const dir = mkdtempSync(join(tmpdir(), "bench-capacity-"));
  // The shipped config as it is (logging and overload limits included), with the SMS abuse windows
  // open (every bench call texts another number) and the ledger in a file of its own. The opt-out
  // list needs a ledger all instances share (PostgreSQL); one instance on a file ledger does without.
  const open = openLimits(shipped);
  const config = parseConfig({ ...open, logLevel: shipped.logLevel, ledger: { ...open.ledger, path: join(dir, "ledger.jsonl"), optOutList: false } });
  writeFileSync(join(dir, "agent.json"), JSON.stringify(config));
  const redis = await benchRedis();
  const admin = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  admin.on("error", () => undefined);
  const children: ChildProcess[] = [];
  const levels: LevelResult[] = [];
  try {
    await admin.connect();
    const modelPort = await freePort();
    const model = spawn(process.execPath, ["--import", "tsx", "bench/capacityModel.ts", String(modelPort)], {
      stdio: ["ignore", "pipe", "inherit", "ipc"],
      env: { ...process.env, BENCH_MODEL_MIN_MS: String(o.modelMinMs), BENCH_MODEL_MAX_MS: String(o.modelMaxMs), BENCH_SEED: String(o.seed) },
    });
    children.push(model);
    const modelUrl = await new Promise<string>((resolve, reject) => {
      model.stdout!.on("data", (c) => {
        const m = /ready (\S+)/.exec(String(c));
        if (m) resolve(m[1]!);
      });
      model.once("exit", (code) => reject(new Error(`model server exited ${code}`)));
    });
    const port = await freePort();
    // As `npm start` runs it (without npm in between, so the pid is the service's own).
    // BENCH_CPU_PROF=DIR: the service writes a CPU profile there (node --cpu-prof) when it stops.
    const prof = process.env.BENCH_CPU_PROF ? ["--cpu-prof", "--cpu-prof-dir", process.env.BENCH_CPU_PROF] : [];
    const service = spawn(process.execPath, [...prof, "--enable-source-maps", MAIN], {
      stdio: ["ignore", "ignore", "inherit"],
      env: { PATH: process.env.PATH!, HOME: process.env.HOME ?? "/tmp", CONFIG: join(dir, "agent.json"), REDIS_URL: redis.url, REDIS_PREFIX: "cap:", OPENAI_BASE_URL: modelUrl, OPENAI_API_KEY: "bench", PORT: String(port), HOST: "127.0.0.1" },
    });
    children.push(service);
    await waitHealthy(port, service);
    const callers = await Promise.all(
      Array.from({ length: o.callers }, async () => {
        const c = fork("bench/capacityCaller.ts", [], { execArgv: ["--import", "tsx"], stdio: ["ignore", "inherit", "inherit", "ipc"] });
        children.push(c);
        await new Promise<void>((resolve, reject) => {
          c.once("message", () => resolve());
          c.once("exit", (code) => reject(new Error(`caller process exited ${code}`)));
        });
        return c;
      }),
    );

    const runLevel = async (level: number, callDurationS: number, index: number): Promise<LevelResult> => {
      const arrivalMs = (callDurationS + o.holdS) * 1000;
      const total = Math.round((level * arrivalMs) / (callDurationS * 1000));
      const startAt = Date.now() + 500;
      const base: Omit<RunRequest, "calls" | "worker"> = {
        type: "run",
        port,
        startAt,
        arrivalMs,
        level: index,
        seed: o.seed,
        holding: prompts.line("holding"),
        gaveUp: prompts.line("holding_gave_up"),
        overloaded: prompts.line("overloaded"),
        consentQuestion: config.tasks.sms.consent.question,
        businessName: config.business.name,
      };
      log(`level ${level}: ${total} calls over ${round(arrivalMs / 1000)} s (${round(total / (arrivalMs / 1000))}/s, a call ~${round(callDurationS)} s), measured over the last ${o.holdS} s`);
      const results = callers.map(
        (c, worker) =>
          new Promise<RunResult>((resolve) => {
            const onMessage = (m: RunResult) => {
              if (m.type !== "done") return;
              c.off("message", onMessage);
              resolve(m);
            };
            c.on("message", onMessage);
            c.send({ ...base, worker, calls: Math.round(total / o.callers) } satisfies RunRequest);
          }),
      );
      const windowFrom = startAt + callDurationS * 1000;
      const windowTo = startAt + arrivalMs;
      const callerCpu0 = callers.map((c) => processCpuUs(c.pid!));
      await sleep(windowFrom - Date.now());
      const cpu0 = processCpuUs(service.pid!);
      const cmd0 = await redisCommands(admin);
      await sleep(windowTo - Date.now());
      const cpu1 = processCpuUs(service.pid!);
      const cmd1 = await redisCommands(admin);
      const callerCpu1 = callers.map((c) => processCpuUs(c.pid!));
      const runs = await Promise.all(results);
      const calls: CallSummary[] = runs.flatMap((r) => r.calls);
      const inWindow = runs.flatMap((r) => r.requests).filter(([at]) => at >= windowFrom && at <= windowTo);
      const ms = inWindow.map(([, l]) => l);
      const windowS = (windowTo - windowFrom) / 1000;
      // Calls live during the window, on average: each call's overlap with it.
      const liveMs = calls.reduce((a, c) => a + Math.max(0, Math.min(c.endedAt, windowTo) - Math.max(c.startedAt, windowFrom)), 0);
      const concurrent = liveMs / (windowTo - windowFrom);
      const durations = calls.filter((c) => !c.refused).map((c) => (c.endedAt - c.startedAt) / 1000);
      const meanDuration = durations.reduce((a, b) => a + b, 0) / Math.max(1, durations.length);
      const cpuUs = cpu1 - cpu0;
      // Service CPU per call: its CPU per second over the window, divided by the calls arrivals bring per second.
      const callsPerS = total / (arrivalMs / 1000);
      const violations = calls.flatMap((c) => c.violations);
      const problems = calls.flatMap((c) => c.problems.map((p) => `${c.kind}: ${p}`));
      const refused = calls.filter((c) => c.refused).length;
      const p99 = percentile(ms, 0.99);
      const why =
        violations.length > 0
          ? `${violations.length} consent violations (${violations[0]})`
          : problems.length > 0
            ? `${problems.length} calls not correct (${problems[0]})`
            : refused > 0
              ? `${refused} calls refused as overloaded`
              : p99 > config.server.answerWithinMs
                ? `answer p99 ${round(p99)} ms > ${config.server.answerWithinMs} ms`
                : undefined;
      const kinds: Record<string, number> = {};
      for (const c of calls) kinds[c.kind] = (kinds[c.kind] ?? 0) + 1;
      const r: LevelResult = {
        level,
        concurrentCalls: Math.round(concurrent),
        callsStarted: calls.length,
        arrivalsPerS: round(callsPerS),
        callDurationS: round(meanDuration),
        events: inWindow.length,
        answer: { p50Ms: round(percentile(ms, 0.5)), p99Ms: round(p99), maxMs: round(percentile(ms, 1)) },
        service: {
          cpuCores: round(cpuUs / 1e6 / windowS, 2),
          cpuMsPerCall: round(cpuUs / 1000 / windowS / Math.max(1e-9, callsPerS)),
          cpuMsPerCallMinute: round((cpuUs / 1000 / windowS / Math.max(1, concurrent)) * 60),
          cpuUsPerEvent: Math.round(cpuUs / Math.max(1, inWindow.length)),
          // Less the one INFO this bench sent in the window.
          redisCommandsPerEvent: round((cmd1.total - cmd0.total - 1) / Math.max(1, inWindow.length)),
          // Script calls (one round trip each; the commands inside count above too).
          redisScriptCallsPerEvent: round(((cmd1.by.evalsha ?? 0) + (cmd1.by.eval ?? 0) - (cmd0.by.evalsha ?? 0) - (cmd0.by.eval ?? 0)) / Math.max(1, inWindow.length)),
          // The commands that ran most, a second: what the per-event figure is made of.
          redisCommandsPerSecond: Object.fromEntries(
            Object.entries(cmd1.by)
              .map(([k, v]) => [k, round((v - (cmd0.by[k] ?? 0)) / windowS)] as const)
              .filter(([, v]) => v > 0)
              .sort((a, b) => b[1] - a[1])
              .slice(0, 8),
          ),
        },
        callers: { cpuCores: round(callerCpu1.reduce((a, x, i) => a + x - callerCpu0[i]!, 0) / 1e6 / windowS, 2), eventLoopP99Ms: Math.max(...runs.map((x) => x.eventLoopP99Ms)), processes: callers.length },
        kinds,
        sends: calls.reduce((a, c) => a + c.sends, 0),
        refused,
        holdingLines: calls.reduce((a, c) => a + c.holdingLines, 0),
        violations: violations.slice(0, 5),
        problems: problems.slice(0, 5),
        passed: why === undefined,
        why,
      };
      log(`level ${level}: ${r.passed ? "passed" : `FAILED: ${why}`}; ${r.concurrentCalls} calls live, answer p50/p99 ${r.answer.p50Ms}/${r.answer.p99Ms} ms, service ${r.service.cpuCores} cores, callers ${r.callers.cpuCores} cores (loop p99 ${r.callers.eventLoopP99Ms} ms)`);
      return r;
    };

    // A call's duration at the caller's pace, measured by a few calls first (also warms the service
    // up); a search that starts that small measures it with its first level.
    let callDurationS = 30;
    const warmCalls = Math.max(10, o.callers * 5);
    if (o.from > warmCalls) callDurationS = (await runLevel(warmCalls, callDurationS, 0)).callDurationS || callDurationS;
    let pass: number | undefined;
    let fail: number | undefined;
    const outOfTime = () => Date.now() - started > o.budgetS * 1000;
    for (let level = o.from; level <= o.max && !outOfTime(); level *= 2) {
      const r = await runLevel(level, callDurationS, levels.length + 1);
      levels.push(r);
      if (!r.passed) {
        fail = level;
        break;
      }
      pass = level;
      callDurationS = r.callDurationS || callDurationS;
    }
    for (let i = 0; i < o.bisect && fail !== undefined && !outOfTime(); i++) {
      const level = Math.round(((pass ?? 0) + fail) / 2);
      if (level === pass || level === fail) break;
      const r = await runLevel(level, callDurationS, levels.length + 1);
      levels.push(r);
      if (r.passed) pass = level;
      else fail = level;
    }
    const best = levels.filter((l) => l.passed).sort((a, b) => b.concurrentCalls - a.concurrentCalls)[0];
    const firstFailing = levels.filter((l) => !l.passed).sort((a, b) => a.level - b.level)[0];
    return { options: o, answerWithinMs: config.server.answerWithinMs, overload: config.server.overload, levels, best, firstFailing, loadBefore, loadAfter: loadavg().map((x) => round(x, 2)), wallS: Math.round((Date.now() - started) / 1000) };
  } finally {
    for (const c of children.reverse()) await stop(c);
    admin.disconnect();
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The rows of bench/results.md. */
export function capacityRows(c: CapacityResult, verdict: string): string {
  const b = c.best;
  const f = c.firstFailing;
  const load = `machine load (1/5/15 min) ${c.loadBefore.join(" / ")} before, ${c.loadAfter.join(" / ")} after`;
  const best = b
    ? `${b.concurrentCalls} calls at once (${b.arrivalsPerS} new calls/s, ${b.callDurationS} s a call)`
    : `none: even ${c.levels[0]?.level ?? c.options.from} calls failed`;
  const failing = f ? `${f.concurrentCalls} calls at once (level ${f.level}): ${f.why}` : `none up to ${c.options.max} (or the time budget)`;
  return [
    `| (i) capacity at a caller's pace: most calls at once with answer p99 ≤ server.answerWithinMs, no error, every call correct | ${best} | first failing: ${failing} | | ≥ 2,000 calls at once on 2 cores | ${verdict} |`,
    b
      ? `| (i) at that level: answer p50 / p99; service CPU per call / per call-minute / per event; Redis commands per event as Redis counts them (inside scripts too) / of them script calls | ${b.answer.p50Ms} / ${b.answer.p99Ms} ms; ${b.service.cpuMsPerCall} ms / ${b.service.cpuMsPerCallMinute} ms / ${b.service.cpuUsPerEvent} µs (${b.service.cpuCores} cores); ${b.service.redisCommandsPerEvent} / ${b.service.redisScriptCallsPerEvent ?? "–"} | callers: ${b.callers.processes} processes, ${b.callers.cpuCores} cores, event-loop p99 ${b.callers.eventLoopP99Ms} ms; ${load} | | | |`
      : `| (i) ${load} | | | | | |`,
    `| (i) consent oracle (caller's side) over every call of the run: violations / SMS / calls (yes, no, silent, barge-in) / refused | ${c.levels.reduce((a, l) => a + l.violations.length, 0)} / ${c.levels.reduce((a, l) => a + l.sends, 0)} / ${c.levels.reduce((a, l) => a + l.callsStarted, 0)} (${["yes", "no", "silent", "barge"].map((k) => c.levels.reduce((a, l) => a + (l.kinds[k] ?? 0), 0)).join(", ")}) / ${c.levels.reduce((a, l) => a + l.refused, 0)} | levels: ${c.levels.map((l) => `${l.level} ${l.passed ? "✓" : "✗"}`).join(", ")} | | no violation | ${c.levels.every((l) => l.violations.length === 0) ? "met" : "**missed**"} |`,
  ].join("\n");
}

export function capacityOptionsFrom(argv: string[], env: Record<string, string | undefined>): CapacityOptions {
  const { values } = parseArgs({
    args: argv,
    options: { from: { type: "string" }, max: { type: "string" }, hold: { type: "string" }, bisect: { type: "string" }, callers: { type: "string" }, budget: { type: "string" }, seed: { type: "string" } },
    strict: true,
  });
  const num = (flag: string | undefined, name: string, fallback: number, least = 1) => {
    const v = flag ?? env[`BENCH_CAPACITY_${name}`];
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!Number.isInteger(n) || n < least) throw new Error(`capacity: --${name.toLowerCase()} (BENCH_CAPACITY_${name}) must be a whole number ≥ ${least}, got ${v}`);
    return n;
  };
  const d = CAPACITY_DEFAULTS;
  return {
    ...d,
    from: num(values.from, "FROM", d.from),
    max: num(values.max, "MAX", d.max),
    holdS: num(values.hold, "HOLD", d.holdS),
    bisect: num(values.bisect, "BISECT", d.bisect, 0),
    callers: num(values.callers, "CALLERS", d.callers),
    budgetS: num(values.budget, "BUDGET", d.budgetS),
    seed: num(values.seed, "SEED", d.seed),
  };
}

// `node --import tsx bench/capacity.ts [--from N --max N --hold S --bisect N --callers N --budget S --seed N]`: one search, printed as JSON.
if (process.argv[1]?.endsWith("capacity.ts")) {
  capacityScenario(capacityOptionsFrom(process.argv.slice(2), process.env)).then(
    (r) => {
      console.log(JSON.stringify(r, null, 2));
      process.exit(0);
    },
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}
