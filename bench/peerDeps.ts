import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

/**
 * bench/peer is a package of its own (OpenAI Agents JS needs zod 4; the service pins zod 3, and
 * node_modules of the main checkout is shared): installed on demand from its committed lock
 * file, never into the service's node_modules. The tokenizer lives there too (tokens.ts).
 */

export const PEER_DIR = fileURLToPath(new URL("./peer/", import.meta.url));

/** `npm ci --prefix bench/peer` when its node_modules is missing (a fresh clone, CI). */
export function ensurePeerDeps(log: (s: string) => void = () => {}): void {
  if (existsSync(`${PEER_DIR}node_modules/@openai/agents/package.json`) && existsSync(`${PEER_DIR}node_modules/gpt-tokenizer/package.json`)) return;
  log("bench/peer: installing its dependencies (npm ci --prefix bench/peer)");
  const npm = process.platform === "win32" ? "npm.cmd" : "npm";
  const r = spawnSync(npm, ["ci", "--prefix", PEER_DIR, "--no-audit", "--no-fund"], { stdio: ["ignore", "pipe", "pipe"], encoding: "utf8" });
  if (r.status !== 0) throw new Error(`npm ci --prefix bench/peer failed (${r.status}): ${r.stderr || r.error?.message}`);
}
