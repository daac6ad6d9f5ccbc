import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, rmdirSync } from "node:fs";
import { fileURLToPath } from "node:url";

/**
 * bench/peer is a package of its own (OpenAI Agents JS needs zod 4; the service pins zod 3, and
 * node_modules of the main checkout is shared): installed on demand from its committed lock
 * file, never into the service's node_modules. The tokenizer lives there too (tokens.ts).
 */

export const PEER_DIR = fileURLToPath(new URL("./peer/", import.meta.url));

const installed = () => existsSync(`${PEER_DIR}node_modules/@openai/agents/package.json`) && existsSync(`${PEER_DIR}node_modules/gpt-tokenizer/package.json`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * `npm ci --prefix bench/peer` when its node_modules is missing (a fresh clone, CI). Processes
 * that need it at the same time (the bench test and the bench smoke test) take turns through a
 * lock directory: one installs, the others wait for it.
 */
export async function ensurePeerDeps(log: (s: string) => void = () => {}): Promise<void> {
  const lock = `${PEER_DIR}.installing`;
  for (const started = Date.now(); !installed(); ) {
    try {
      mkdirSync(lock);
    } catch {
      if (Date.now() - started > 300_000) throw new Error(`bench/peer: ${lock} held for 5 minutes; remove it if no install is running`);
      await sleep(500);
      continue;
    }
    try {
      if (installed()) return;
      log("bench/peer: installing its dependencies (npm ci --prefix bench/peer)");
      const npm = process.platform === "win32" ? "npm.cmd" : "npm";
      const r = spawnSync(npm, ["ci", "--prefix", PEER_DIR, "--no-audit", "--no-fund"], { stdio: ["ignore", "pipe", "pipe"], encoding: "utf8" });
      if (r.status !== 0) throw new Error(`npm ci --prefix bench/peer failed (${r.status}): ${r.stderr || r.error?.message}`);
    } finally {
      rmdirSync(lock);
    }
  }
}
