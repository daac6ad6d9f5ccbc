/**
 * A private PostgreSQL cluster on a free port in a folder of its own: for the test run
 * (globalSetup.ts, thrown away afterwards, so nothing is synced to disk) and for the bench's
 * ledger row (bench/ledgerAppend.ts, durable as production runs it: every commit fsync'd).
 */
import { spawnSync } from "node:child_process";
import { chownSync, mkdirSync } from "node:fs";
import { userInfo } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { freePort } from "./processes.js";

// One finder for the test programs (the pretest, the global setup, .ci/run): testPrograms.ts.
export { onPath, postgresBin } from "./testPrograms.js";

/** initdb and postgres refuse to run as root: run them as the postgres user then. */
export function asPostgresUser(cmd: string, args: string[]): [string, string[]] {
  return userInfo().uid === 0 ? ["runuser", ["-u", "postgres", "--", cmd, ...args]] : [cmd, args];
}

function run(cmd: string, args: string[], what: string): void {
  const r = spawnSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  if (r.status !== 0) throw new Error(`${what} failed (${r.error?.message ?? `exit ${r.status}`}): ${(r.stderr || r.stdout).trim().split("\n").slice(-3).join(" | ")}`);
}

/** Makes `dir` for the cluster; as root it must belong to the postgres user (its parent must let that user through). */
export function makePostgresDir(dir: string): void {
  mkdirSync(dir);
  if (userInfo().uid === 0) {
    const id = (flag: string) => Number(spawnSync("id", [flag, "postgres"], { encoding: "utf8" }).stdout);
    chownSync(dir, id("-u"), id("-g"));
  }
}

export interface StartedPostgres {
  /** Database "test" on 127.0.0.1, trust auth. */
  url: string;
  stop: () => Promise<void>;
}

/**
 * initdb and start in `dir` (made with makePostgresDir). `durable: false` (the tests) turns off
 * fsync, synchronous commits and full-page writes; `durable: true` keeps PostgreSQL's defaults.
 */
export async function startPostgres(bin: string, dir: string, opts: { durable: boolean } = { durable: false }): Promise<StartedPostgres> {
  const data = join(dir, "pg");
  const port = await freePort();
  // trust auth on 127.0.0.1 only.
  run(...asPostgresUser(join(bin, "initdb"), ["-D", data, "-U", "postgres", "--auth=trust", ...(opts.durable ? [] : ["--no-sync"]), "-E", "UTF8", "--locale=C"]), "initdb");
  const speed = opts.durable ? "" : " -c fsync=off -c synchronous_commit=off -c full_page_writes=off";
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1${speed}`;
  run(...asPostgresUser(join(bin, "pg_ctl"), ["-D", data, "-o", options, "-l", join(dir, "postgres.log"), "-w", "-t", "60", "start"]), "pg_ctl start");
  const stop = async () => {
    const [cmd, args] = asPostgresUser(join(bin, "pg_ctl"), ["-D", data, "-m", "fast", "-w", "stop"]);
    spawnSync(cmd, args, { stdio: "ignore" });
  };
  try {
    const admin = new pg.Client({ connectionString: `postgres://postgres@127.0.0.1:${port}/postgres` });
    await admin.connect();
    await admin.query("CREATE DATABASE test");
    await admin.end();
  } catch (e) {
    await stop();
    throw e;
  }
  return { url: `postgres://postgres@127.0.0.1:${port}/test`, stop };
}
