/**
 * The programs the test suite needs besides Node, found the same way wherever they are checked:
 *
 * - `npm test` checks all of them first (the `pretest` script runs this file), so a missing one is
 *   one line in the first seconds, not a failed test minutes later;
 * - the vitest global setup (test/support/globalSetup.ts) checks redis-server and PostgreSQL again
 *   for runs of single files (`npx vitest run test/x.test.ts`), which need no browser;
 * - the HTML eval report test and the call review page test run the Chromium found here;
 * - the alert rules test runs Prometheus' promtool found here.
 *
 * `.ci/run` installs the Debian packages named here when they are missing.
 */
import { accessSync, constants, existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

type Env = Record<string, string | undefined>;

/** An executable file at `path`. */
function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

export function onPath(bin: string, env: Env = process.env): string | undefined {
  for (const dir of (env.PATH ?? "").split(":")) {
    if (dir && executable(join(dir, bin))) return join(dir, bin);
  }
  return undefined;
}

/** Debian keeps initdb and pg_ctl in /usr/lib/postgresql/<version>/bin, off the PATH. */
export function postgresBin(env: Env = process.env): string | undefined {
  const root = "/usr/lib/postgresql";
  const versions = existsSync(root) ? readdirSync(root).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a)) : [];
  for (const v of versions) if (existsSync(join(root, v, "bin", "initdb"))) return join(root, v, "bin");
  const initdb = onPath("initdb", env);
  return initdb && onPath("pg_ctl", env) ? join(initdb, "..") : undefined;
}

/** Names a headless-capable browser goes by: Debian's package, Ubuntu's older one, Google's builds. */
const CHROMIUM_NAMES = ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"];

/** CHROMIUM (a path) when set, else the first of CHROMIUM_NAMES on the PATH. */
export function findChromium(env: Env = process.env): string | undefined {
  if (env.CHROMIUM) return executable(env.CHROMIUM) ? env.CHROMIUM : undefined;
  for (const name of CHROMIUM_NAMES) {
    const p = onPath(name, env);
    if (p) return p;
  }
  return undefined;
}

/** PROMTOOL (a path) when set, else promtool on the PATH (Debian's prometheus package). */
export function findPromtool(env: Env = process.env): string | undefined {
  if (env.PROMTOOL) return executable(env.PROMTOOL) ? env.PROMTOOL : undefined;
  return onPath("promtool", env);
}

export interface MissingProgram {
  /** What is missing, as the operator knows it. */
  program: string;
  /** The Debian package that brings it. */
  aptPackage: string;
  /** The other way out: a variable to set. */
  orSet: string;
}

/** The programs a run needs that this machine lacks. `browser`: the run includes the HTML report test; `promtool`: the alert rules test. */
export function missingTestPrograms(env: Env, opts: { browser: boolean; promtool?: boolean }): MissingProgram[] {
  const missing: MissingProgram[] = [];
  if (!env.TEST_REDIS_URL && !onPath("redis-server", env)) missing.push({ program: "redis-server", aptPackage: "redis-server", orSet: "TEST_REDIS_URL to a Redis the tests may use" });
  if (!env.TEST_DATABASE_URL && !postgresBin(env)) missing.push({ program: "PostgreSQL (initdb, pg_ctl)", aptPackage: "postgresql", orSet: "TEST_DATABASE_URL to a PostgreSQL the tests may use" });
  if (opts.browser && !findChromium(env)) {
    const bad = env.CHROMIUM ? `CHROMIUM=${env.CHROMIUM} is not an executable file` : "no chromium on the PATH";
    missing.push({ program: `Chromium (${bad}; the HTML eval report is checked in headless Chromium)`, aptPackage: "chromium", orSet: "CHROMIUM to a Chromium or Chrome binary" });
  }
  if (opts.promtool && !findPromtool(env)) {
    const bad = env.PROMTOOL ? `PROMTOOL=${env.PROMTOOL} is not an executable file` : "no promtool on the PATH";
    missing.push({ program: `promtool (${bad}; the Prometheus alert rules are checked with it)`, aptPackage: "prometheus", orSet: "PROMTOOL to a promtool binary" });
  }
  return missing;
}

/** One line the operator can act on. */
export function describeMissing(missing: MissingProgram[]): string {
  return (
    `missing ${missing.map((m) => m.program).join(", ")}: ` +
    `apt-get install ${missing.map((m) => m.aptPackage).join(" ")} (.ci/run does), or set ${missing.map((m) => m.orSet).join("; ")}`
  );
}

// `npm test`'s pretest: every program, before the typecheck; exit 1 with one line when one is missing.
// With --apt-packages (.ci/run): print the Debian packages of the missing ones instead, exit 0.
if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const missing = missingTestPrograms(process.env, { browser: true, promtool: true });
  if (process.argv.includes("--apt-packages")) console.log(missing.map((m) => m.aptPackage).join(" "));
  else if (missing.length) {
    console.error(`npm test: ${describeMissing(missing)}`);
    process.exit(1);
  }
}
