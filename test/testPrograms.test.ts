import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, realpathSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ROOT, baseEnv } from "./support/serverProcess.js";

/**
 * Issue 22, point 8: `npm test` names a missing Chromium in its first seconds, the way it names a
 * missing redis-server or PostgreSQL, instead of one test failing minutes later. The check is the
 * `pretest` script (test/support/testPrograms.ts), run here as npm runs it, with PATH and CHROMIUM
 * pointing where the programs are not.
 */

/** A folder to serve as the whole PATH, holding only the programs given (executable stubs). */
function pathWith(...programs: string[]): string {
  const dir = mkdtempSync(join(tmpdir(), "aiflow-path-"));
  for (const p of programs) {
    writeFileSync(join(dir, p), "#!/bin/sh\nexit 0\n");
    chmodSync(join(dir, p), 0o755);
  }
  return dir;
}

/** The pretest check under node (absolute), with nothing of this machine's PATH. */
function check(env: Record<string, string>, args: string[] = []) {
  const started = Date.now();
  const r = spawnSync(process.execPath, ["--import", "tsx", "test/support/testPrograms.ts", ...args], { cwd: ROOT, encoding: "utf8", env: { HOME: process.env.HOME ?? "/tmp", ...env }, timeout: 30_000 });
  return { ...r, ms: Date.now() - started };
}

/** The servers are there (or named by URL), and promtool: only the browser is in question. */
const SERVERS = { TEST_REDIS_URL: "redis://127.0.0.1:1", TEST_DATABASE_URL: "postgres://127.0.0.1:1/test", PROMTOOL: join(pathWith("promtool"), "promtool") };

describe("the test programs check (npm test's pretest)", () => {
  it("no chromium on the PATH: exit 1 and one line naming Chromium, the package and CHROMIUM", () => {
    const r = check({ ...SERVERS, PATH: pathWith("redis-server") });
    expect(r.status).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr.trim().split("\n")).toEqual([
      "npm test: missing Chromium (no chromium on the PATH; the HTML eval report is checked in headless Chromium): apt-get install chromium (.ci/run does), or set CHROMIUM to a Chromium or Chrome binary",
    ]);
  });

  it("CHROMIUM pointing nowhere is named as such", () => {
    const r = check({ ...SERVERS, PATH: pathWith("chromium"), CHROMIUM: "/nowhere/chromium" });
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split("\n")).toEqual([expect.stringContaining("missing Chromium (CHROMIUM=/nowhere/chromium is not an executable file;")]);
  });

  it("Chromium under any of its names on the PATH, or CHROMIUM naming a binary: exit 0, silent", () => {
    for (const name of ["chromium", "chromium-browser", "google-chrome"]) {
      const r = check({ ...SERVERS, PATH: pathWith(name) });
      expect([r.status, r.stderr], name).toEqual([0, ""]);
    }
    const elsewhere = join(pathWith("my-chrome"), "my-chrome");
    expect(check({ ...SERVERS, PATH: pathWith(), CHROMIUM: elsewhere }).status).toBe(0);
  });

  it("several missing: still one line, naming each and one apt-get for all; --apt-packages lists them for .ci/run", () => {
    const env = { TEST_DATABASE_URL: SERVERS.TEST_DATABASE_URL, PATH: pathWith() };
    const r = check(env);
    expect(r.status).toBe(1);
    const lines = r.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^npm test: missing redis-server, Chromium \(.*\), promtool \(no promtool on the PATH; .*\): apt-get install redis-server chromium prometheus \(\.ci\/run does\), or set TEST_REDIS_URL .*; CHROMIUM .*; PROMTOOL /);
    const apt = check(env, ["--apt-packages"]);
    expect([apt.status, apt.stdout.trim()]).toEqual([0, "redis-server chromium prometheus"]);
  });

  it("npm test stops at the check, in seconds, before the typecheck and any test", () => {
    // A PATH with node, npm and the shell npm runs scripts in only: no chromium (and no
    // redis-server, named by URL instead).
    const bin = pathWith();
    symlinkSync(process.execPath, join(bin, "node"));
    const npm = spawnSync("sh", ["-c", "command -v npm"], { encoding: "utf8" }).stdout.trim();
    symlinkSync(realpathSync(npm), join(bin, "npm"));
    symlinkSync(realpathSync("/bin/sh"), join(bin, "sh"));
    const started = Date.now();
    const r = spawnSync(join(bin, "npm"), ["test"], { cwd: ROOT, encoding: "utf8", env: baseEnv({ ...SERVERS, PATH: bin }), timeout: 60_000 });
    const ms = Date.now() - started;
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("npm test: missing Chromium (no chromium on the PATH;");
    // npm announces each script it runs: the check ran, the test script (tsc, vitest) never did.
    expect(r.stdout).toContain("> tsx test/support/testPrograms.ts");
    expect(r.stdout).not.toContain("> tsc --noEmit");
    expect(ms).toBeLessThan(30_000);
  }, 60_000);
});
