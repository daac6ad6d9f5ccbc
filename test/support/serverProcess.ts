import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { isRunning, procInfo, waitGone } from "./processes.js";

/** The package folder, and the compiled server `npm start` runs. */
export const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const MAIN = join(ROOT, "dist", "src", "main.js");

/**
 * Compiles dist/ when a source changed since the last build (scripts/build.mjs, the same step
 * `npm start` runs first). tsc emits even with type errors; those fail the typecheck in `npm test`,
 * so they only stop the tests that need a server when nothing was emitted at all.
 */
export function buildDist(): void {
  const r = spawnSync(process.execPath, [join(ROOT, "scripts", "build.mjs"), "--if-stale"], { cwd: ROOT, encoding: "utf8" });
  if (!existsSync(MAIN)) throw new Error(`building dist/ failed: ${r.stderr}${r.stdout}`);
}

/** A bare environment: nothing of the test run (npm_*, TEST_*, DATABASE_URL …) leaks into the process. */
export function baseEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: process.env.PATH!,
    HOME: process.env.HOME ?? "/tmp",
    // npm must not phone home (update check, funding, audit) from a test.
    npm_config_update_notifier: "false",
    npm_config_fund: "false",
    npm_config_audit: "false",
    ...extra,
  };
}

export interface RunningProcess {
  child: ChildProcess;
  /** Resolves when the spawned process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  out(): string;
  err(): string;
  /** Resolves once stdout or stderr matches; rejects when the process exits first or after timeoutMs. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** The pid the server logs on every line (under npm start it is npm's child, not child.pid). */
  serverPid(): number | undefined;
}

const started = new Set<RunningProcess>();

export function startProcess(cmd: string, args: string[], opts: { env: Record<string, string>; cwd?: string }): RunningProcess {
  const child = spawn(cmd, args, { env: opts.env, cwd: opts.cwd ?? ROOT, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (c) => (stdout += c));
  child.stderr!.on("data", (c) => (stderr += c));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  let done = false;
  void exited.then(() => (done = true));
  const p: RunningProcess = {
    child,
    exited,
    out: () => stdout,
    err: () => stderr,
    async waitFor(pattern, timeoutMs = 20_000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const m = pattern.exec(stdout) ?? pattern.exec(stderr);
        if (m) return m[0];
        if (done) throw new Error(`exited before ${pattern}: ${stderr}${stdout}`);
        if (Date.now() > until) throw new Error(`no ${pattern} within ${timeoutMs} ms: ${stderr}${stdout}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    serverPid() {
      const m = /"pid":(\d+)/.exec(stdout);
      return m ? Number(m[1]) : undefined;
    },
  };
  started.add(p);
  return p;
}

/** For afterAll: ends every process this file started (and the servers npm started), and waits for them. */
export async function stopAll(): Promise<void> {
  for (const p of started) {
    const server = p.serverPid();
    if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill("SIGKILL");
    await p.exited;
    // Only if that pid is still our server: a pid can be reused once the server is gone.
    if (server && isRunning(server) && procInfo(server)?.cmd.includes("dist/src/main.js")) process.kill(server, "SIGKILL");
    if (server && procInfo(server)?.cmd.includes("dist/src/main.js") && !(await waitGone(server))) throw new Error(`server process ${server} did not exit`);
  }
  started.clear();
}
