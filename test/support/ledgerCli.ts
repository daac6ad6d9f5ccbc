import { spawn } from "node:child_process";
import { resolve } from "node:path";

const TSX = resolve("node_modules", ".bin", "tsx");

export interface LedgerCliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * `npm run ledger -- …` without npm: the CLI as a real process. The test run's ledger settings
 * (DATABASE_URL, LEDGER_TABLE, CONFIG, the hash keys) never leak in: only `env` sets them.
 */
export function ledgerCli(args: string[], env: Record<string, string> = {}): Promise<LedgerCliRun> {
  const base = { ...process.env };
  for (const k of ["DATABASE_URL", "LEDGER_TABLE", "CONFIG", "LEDGER_HASH_KEY", "LEDGER_HASH_KEYS_OLD"]) delete base[k];
  return new Promise((done, reject) => {
    const child = spawn(TSX, ["src/cli/ledger.ts", ...args], { env: { ...base, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => done({ code, stdout, stderr }));
  });
}
