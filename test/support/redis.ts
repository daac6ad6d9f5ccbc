import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";

/**
 * The test run's Redis: TEST_REDIS_URL, set by test/support/globalSetup.ts to a private
 * redis-server it starts (or given by whoever runs the tests). Never the machine's own Redis.
 */
export const REDIS_URL = process.env.TEST_REDIS_URL || notSet();

function notSet(): never {
  throw new Error("TEST_REDIS_URL is not set: run the tests through vitest (npm test), whose globalSetup starts a private Redis");
}

export function uniquePrefix(): string {
  return `test:${process.pid}:${Date.now().toString(36)}:${Math.random().toString(36).slice(2, 8)}:`;
}

export async function connectRedis(url = REDIS_URL): Promise<Redis> {
  const r = new Redis(url, { maxRetriesPerRequest: 1, enableOfflineQueue: false, lazyConnect: true, connectTimeout: 2000 });
  r.on("error", () => undefined);
  try {
    await r.connect();
  } catch (e) {
    throw new Error(`Redis is not reachable at ${url} (${(e as Error).message}); check TEST_REDIS_URL, or unset it to let the tests start their own`);
  }
  return r;
}

export { freePort } from "./processes.js";

/** A private redis-server (AOF on, so state survives a restart) that a test may stop and start. */
export class PrivateRedis {
  private proc?: ChildProcess;
  readonly dir = mkdtempSync(join(tmpdir(), "redis-"));
  constructor(readonly port: number) {}

  get url() {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.proc = spawn("redis-server", ["--port", String(this.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", this.dir], { stdio: "ignore" });
    for (let i = 0; i < 100; i++) {
      const r = new Redis(this.url, { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
      r.on("error", () => undefined); // refused while the server is still starting
      try {
        await r.connect();
        await r.ping();
        r.disconnect();
        return;
      } catch {
        r.disconnect();
        await new Promise((res) => setTimeout(res, 50));
      }
    }
    throw new Error(`redis-server on port ${this.port} did not start`);
  }

  async stop(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.on("exit", r));
    p.kill("SIGTERM");
    await exited;
  }
}
