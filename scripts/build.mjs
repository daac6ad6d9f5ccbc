#!/usr/bin/env node
/**
 * Compiles src/ and tools/ to dist/ (what `npm start` runs).
 *
 *   node scripts/build.mjs             always compile
 *   node scripts/build.mjs --if-stale  compile only when a source is newer than the last build
 *
 * `--if-stale` runs on `npm install` / `npm ci` (prepare), before `npm start` (prestart) and
 * before the tests that start the compiled server (test/support/serverProcess.ts), so a fresh
 * clone and an edited checkout never start yesterday's code, while an unchanged checkout starts
 * without a compile.
 * Plain JavaScript on purpose: it has to run before anything is compiled.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const STAMP = join(ROOT, "dist", ".build-stamp");
const LOCK = join(ROOT, "dist", ".build-lock");
const INPUTS = ["src", "tools", "tsconfig.json", "tsconfig.build.json"];

function newestMtime(path) {
  const st = statSync(path, { throwIfNoEntry: false });
  if (!st) return 0;
  if (!st.isDirectory()) return st.mtimeMs;
  let newest = st.mtimeMs; // a deleted or renamed file shows only in its folder's mtime
  for (const e of readdirSync(path)) newest = Math.max(newest, newestMtime(join(path, e)));
  return newest;
}

function isStale() {
  const built = statSync(STAMP, { throwIfNoEntry: false })?.mtimeMs;
  if (built === undefined || !existsSync(join(ROOT, "dist", "src", "main.js"))) return true;
  return INPUTS.some((p) => newestMtime(join(ROOT, p)) > built);
}

function build() {
  let tsc;
  try {
    tsc = createRequire(join(ROOT, "package.json")).resolve("typescript/bin/tsc");
  } catch {
    console.error("aiflow-sms-agent: dist/ needs building but TypeScript is not installed: run `npm install` (with dev dependencies), then `npm run build`");
    return 1;
  }
  // A source saved while tsc runs must count as newer than this build: stamp the start time.
  const started = new Date();
  const r = spawnSync(process.execPath, [tsc, "-p", join(ROOT, "tsconfig.build.json")], { cwd: ROOT, stdio: "inherit" });
  if (r.status !== 0) {
    console.error("aiflow-sms-agent: build failed (tsc errors above)");
    return 1;
  }
  writeFileSync(STAMP, `${started.toISOString()}\n`);
  utimesSync(STAMP, started, started);
  return 0;
}

/** Sleeps without an event loop (this script is synchronous from start to end). */
function sleep(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === "EPERM";
  }
}

/**
 * One build at a time per checkout: `npm start` and test files that start the compiled server may
 * ask for a build at the same moment, and two tsc runs writing the same files would mix outputs.
 */
function withBuildLock(fn) {
  mkdirSync(dirname(LOCK), { recursive: true });
  for (const until = Date.now() + 180_000; ; ) {
    try {
      writeFileSync(LOCK, String(process.pid), { flag: "wx" });
      break;
    } catch (e) {
      if (e.code !== "EEXIST") throw e;
      let holder;
      try {
        holder = Number(readFileSync(LOCK, "utf8"));
      } catch {
        continue; // released meanwhile
      }
      // A lock left by a build that was killed; an empty one is being written, unless it is old.
      const orphaned = holder ? !alive(holder) : Date.now() - (statSync(LOCK, { throwIfNoEntry: false })?.mtimeMs ?? 0) > 10_000;
      if (orphaned) rmSync(LOCK, { force: true });
      else if (Date.now() > until) {
        console.error(`aiflow-sms-agent: cannot build: ${LOCK} is held by process ${holder}`);
        return 1;
      } else sleep(100);
    }
  }
  try {
    return fn();
  } finally {
    rmSync(LOCK, { force: true });
  }
}

const ifStale = process.argv.includes("--if-stale");
const status = withBuildLock(() => {
  // Checked under the lock: a build that finished while we waited leaves nothing to do.
  if (ifStale && !isStale()) return 0;
  if (ifStale) console.error("aiflow-sms-agent: compiling src/ to dist/ (sources changed since the last build)");
  return build();
});
// A failed build must not fail `npm install` / `npm ci` (say, --omit=dev, without TypeScript):
// the packages are in place, and `npm start` tries again and stops there with the reason.
const duringInstall = process.env.npm_lifecycle_event === "prepare";
if (status !== 0 && duringInstall) console.error("aiflow-sms-agent: dist/ not built; npm start will try again");
process.exitCode = duringInstall ? 0 : status;
