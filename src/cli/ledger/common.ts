import { chmod, mkdir, open } from "node:fs/promises";
import { dirname } from "node:path";
import { ConfigError, applyEnv, configPathFrom, loadConfigFile } from "../../appConfig.js";
import type { AppConfig } from "../../appConfig.js";
import { numberHasher } from "../../service.js";
import { numberRedactor } from "../../ledger/chain.js";
import { NumberHasher } from "../../ledger/numberHash.js";
import { PostgresLedger } from "../../ledger/postgresLedger.js";
import type { LedgerLineProblem } from "../../ledger/readLedger.js";
import { parseCallerNumber } from "../../phone/number.js";
import { AgentError } from "../../core/errors.js";

/** Helpers every `npm run ledger` subcommand shares. */

/** Bad usage: exit code 2. */
export class UsageError extends AgentError {
  readonly code = "usage";
}

export const DAY_MS = 86_400_000;

export { ConfigError };

export function loadConfig(configArg: string | undefined, env: NodeJS.ProcessEnv): AppConfig {
  return applyEnv(loadConfigFile(configPathFrom(configArg === undefined ? [] : ["--config", configArg], env)), env);
}

/** The PostgreSQL ledger when DATABASE_URL is set, else undefined (the file at ledger.path). */
export function postgres(config: AppConfig, env: NodeJS.ProcessEnv, keyed = true): PostgresLedger | undefined {
  const url = env.DATABASE_URL?.trim();
  // Reading and checking the chain (verify, purge) needs no key: an auditor holds the log, not the secret.
  return url ? new PostgresLedger({ connectionString: url, hasher: keyed ? hasherOf(config, env) : NumberHasher.full(), redact: numberRedactor(config.homeCountry), table: env.LEDGER_TABLE?.trim() || undefined }) : undefined;
}

/** How the ledger stores numbers (with `hashed`, the keys from LEDGER_HASH_KEY / LEDGER_HASH_KEYS_OLD). */
export function hasherOf(config: AppConfig, env: NodeJS.ProcessEnv): NumberHasher {
  return numberHasher(config, env);
}

/** A number as a person gives it (+49 151 …, 0151 …, 49151…) in AI Flow format; a usage error otherwise. */
export function numberArg(option: string, value: string | undefined, config: AppConfig): string {
  if (!value?.trim()) throw new UsageError(`${option} needs a phone number`);
  const parsed = parseCallerNumber(value, config.homeCountry);
  if (!parsed?.valid) throw new UsageError(`${option} "${value}" is not a phone number`);
  return parsed.aiflow;
}

/** Lines of the ledger file that are not records, one stderr line each. */
export function warn(path: string, problems: LedgerLineProblem[]): void {
  for (const p of problems) console.error(`ledger: ${path} line ${p.line}: ${p.message}`);
}

/** Every file the CLI writes holds numbers or callers' words: 0600, also when it existed (tightened first). */
export async function writePrivateFile(path: string, text: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const fh = await open(path, "w", 0o600);
  try {
    await fh.chmod(0o600);
    await fh.writeFile(text, "utf8");
    await fh.sync();
  } finally {
    await fh.close();
  }
  await chmod(path, 0o600);
}
