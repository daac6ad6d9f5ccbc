/**
 * Runs once per `vitest run`, in the main process, before any test file:
 *
 * - Starts a private redis-server and a private PostgreSQL cluster (initdb, database "test") on
 *   free ports in a temporary folder, unless TEST_REDIS_URL / TEST_DATABASE_URL name servers to
 *   use, and exports their URLs. Workers are started after this and inherit process.env, so
 *   test/support/redis.ts and test/support/postgres.ts read them like any other setting.
 * - After the last test, stops both and fails the run when a test left a process running.
 *
 * `npm test` therefore needs only the binaries (Debian: redis-server, postgresql), nothing
 * started by hand, and never touches the machine's own Redis or PostgreSQL.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { asPostgresUser, makePostgresDir, startPostgres } from "./postgresServer.js";
import { allProcesses, freePort, isRunning, procInfo, waitGone } from "./processes.js";
import { describeMissing, missingTestPrograms, postgresBin } from "./testPrograms.js";

/** Folders of private servers are named so a later run can stop what a killed run left behind. */
const RUN_PREFIX = "aiflow-test-services-";

function fail(line: string): never {
  // One line the operator can act on; a stack trace would only bury it.
  console.error(`\nnpm test: ${line}\n`);
  process.exit(1);
}

function readPid(file: string): number | undefined {
  try {
    return Number(readFileSync(file, "utf8")) || undefined;
  } catch {
    return undefined;
  }
}

/** Stops servers a killed earlier run left behind (its vitest process is gone), then removes its folder. */
function cleanUpAbandonedRuns(pgBin: string | undefined): void {
  for (const name of readdirSync(tmpdir()).filter((n) => n.startsWith(RUN_PREFIX))) {
    const dir = join(tmpdir(), name);
    const owner = readPid(join(dir, "owner.pid"));
    if (owner && isRunning(owner)) continue; // another test run, still going
    const redisPid = readPid(join(dir, "redis.pid"));
    if (redisPid && procInfo(redisPid)?.cmd.startsWith("redis-server")) process.kill(redisPid, "SIGKILL");
    const data = join(dir, "postgres", "pg");
    if (pgBin && existsSync(join(data, "postmaster.pid"))) {
      const [cmd, args] = asPostgresUser(join(pgBin, "pg_ctl"), ["-D", data, "-m", "immediate", "-w", "stop"]);
      spawnSync(cmd, args, { stdio: "ignore" });
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

async function startRedis(dir: string): Promise<{ url: string; stop: () => Promise<void> }> {
  const port = await freePort();
  const proc: ChildProcess = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  proc.stderr!.on("data", (c) => (stderr += c));
  const exited = new Promise<void>((r) => proc.once("exit", () => r()));
  writeFileSync(join(dir, "redis.pid"), String(proc.pid));
  const url = `redis://127.0.0.1:${port}`;
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGTERM");
    await exited;
  };
  const { Redis } = await import("ioredis");
  for (let i = 0; i < 200; i++) {
    if (proc.exitCode !== null) throw new Error(`redis-server exited at start: ${stderr.trim()}`);
    const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
    r.on("error", () => undefined); // refused while it starts
    try {
      await r.connect();
      await r.ping();
      r.disconnect();
      return { url, stop };
    } catch {
      r.disconnect();
      await new Promise((res) => setTimeout(res, 25));
    }
  }
  await stop();
  throw new Error(`redis-server on port ${port} did not answer`);
}

/**
 * Processes this test run started that are still running: same process group as vitest (children
 * keep it when their parent dies), started after vitest, and not vitest's own workers.
 */
function leftBehind(): Array<{ pid: number; cmd: string }> {
  const me = procInfo(process.pid);
  if (!me) return []; // no /proc: nothing to check with
  // npm, npx and their shells started this process: they may share its start tick.
  const ancestors = new Set<number>();
  for (let p = procInfo(me.ppid); p && p.pid > 1; p = procInfo(p.ppid)) ancestors.add(p.pid);
  return allProcesses().filter(
    // Direct children of this process are vitest's own (workers, transform services); tests run
    // in workers, so what they leave has a worker (or, once orphaned, init) as parent.
    (p) => p.pid !== me.pid && p.ppid !== me.pid && !ancestors.has(p.pid) && p.pgid === me.pgid && p.startTicks >= me.startTicks && p.state !== "Z",
  );
}

export default async function setup(): Promise<() => Promise<void>> {
  const stops: Array<() => Promise<void>> = [];
  const wantRedis = !process.env.TEST_REDIS_URL;
  const wantPostgres = !process.env.TEST_DATABASE_URL;
  const pgBin = postgresBin();
  // `npm test` checked every program (Chromium too) before the typecheck; a run of single files
  // (npx vitest run test/x.test.ts) needs only the servers.
  const missing = missingTestPrograms(process.env, { browser: false });
  if (missing.length) fail(describeMissing(missing));
  cleanUpAbandonedRuns(pgBin);

  let dir: string | undefined;
  if (wantRedis || wantPostgres) {
    dir = mkdtempSync(join(tmpdir(), RUN_PREFIX));
    chmodSync(dir, 0o711); // the postgres user must reach its data folder inside
    writeFileSync(join(dir, "owner.pid"), String(process.pid));
    try {
      if (wantRedis) {
        const redis = await startRedis(dir);
        stops.push(redis.stop);
        process.env.TEST_REDIS_URL = redis.url;
      }
      if (wantPostgres) {
        const pgDir = join(dir, "postgres");
        makePostgresDir(pgDir);
        const postgres = await startPostgres(pgBin!, pgDir);
        stops.push(postgres.stop);
        process.env.TEST_DATABASE_URL = postgres.url;
      }
    } catch (e) {
      for (const stop of stops.reverse()) await stop();
      rmSync(dir, { recursive: true, force: true });
      fail(`could not start the private test servers: ${(e as Error).message}`);
    }
  }

  return async () => {
    for (const stop of stops.reverse()) await stop();
    if (dir) rmSync(dir, { recursive: true, force: true });

    // Every test that starts a process must also end it; a process that outlives the run
    // (a server on a port, a model stub) makes the next run flaky and the machine dirty.
    let left = leftBehind();
    for (let i = 0; i < 40 && left.length; i++) {
      await new Promise((r) => setTimeout(r, 50)); // a process may still be exiting
      left = leftBehind();
    }
    if (left.length) {
      for (const p of left) {
        process.kill(p.pid, "SIGKILL");
        await waitGone(p.pid, 2000);
      }
      console.error(`\nnpm test: tests left ${left.length} process(es) running (now killed): ${left.map((p) => `${p.pid} ${p.cmd}`).join("; ")}\n`);
      process.exitCode = 1;
    }
  };
}
