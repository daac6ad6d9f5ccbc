import { readFileSync, readdirSync } from "node:fs";
import { connect, createServer } from "node:net";

/** One process as /proc shows it (Linux). */
export interface ProcInfo {
  pid: number;
  ppid: number;
  pgid: number;
  state: string;
  /** Clock ticks after boot: orders processes by start, no wall-clock conversion needed. */
  startTicks: number;
  cmd: string;
}

export function procInfo(pid: number): ProcInfo | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name in parentheses may contain spaces and ")": the fields follow the last ")".
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean).join(" ");
    return { pid, state: rest[0]!, ppid: Number(rest[1]), pgid: Number(rest[2]), startTicks: Number(rest[19]), cmd };
  } catch {
    return undefined; // gone meanwhile, or no /proc
  }
}

export function allProcesses(): ProcInfo[] {
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return [];
  }
  return entries.filter((e) => /^\d+$/.test(e)).flatMap((e) => procInfo(Number(e)) ?? []);
}

/** True while a process with this pid exists (a zombie counts as gone: it runs nothing). */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ESRCH") return false;
    throw e;
  }
  return procInfo(pid)?.state !== "Z";
}

/** Whether anything accepts TCP connections on 127.0.0.1:port. */
export function portAccepts(port: number, host = "127.0.0.1"): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ port, host });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/** Waits until the process is gone; false when it is still there after timeoutMs. */
export async function waitGone(pid: number, timeoutMs = 5000): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (isRunning(pid)) {
    if (Date.now() > until) return false;
    await new Promise((r) => setTimeout(r, 25));
  }
  return true;
}

/** A port nothing listens on right now (the OS picks it). */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}
