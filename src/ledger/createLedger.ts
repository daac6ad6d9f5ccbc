import type { BaseConfig } from "../config/schema.js";
import { FileLedger } from "./fileLedger.js";
import type { ConsentLedger } from "./ledger.js";
import { numberRedactor } from "./chain.js";
import { NumberHasher } from "./numberHash.js";
import { PostgresLedger } from "./postgresLedger.js";

/**
 * The production ledger: PostgreSQL when `DATABASE_URL` is set (table `LEDGER_TABLE`, default
 * `consent_ledger`), else the JSON Lines file at `ledger.path`. `ledger.numbers` applies to both;
 * with `hashed` the keys come from LEDGER_HASH_KEY (a HashKeyError, one line, without them).
 * Nothing connects or opens here beyond what the constructors do; call `ready()` to fail fast.
 */
export function createLedger(config: BaseConfig, env: NodeJS.ProcessEnv, hasher = NumberHasher.fromConfig(config.ledger.numbers, env)): FileLedger | PostgresLedger {
  const redact = numberRedactor(config.homeCountry);
  const url = env.DATABASE_URL?.trim();
  if (url) return new PostgresLedger({ connectionString: url, hasher, redact, table: env.LEDGER_TABLE?.trim() || undefined });
  return new FileLedger(config.ledger.path, { hasher, redact });
}

/** One line for logs and start-up messages: where the evidence goes (no password). */
export function describeLedger(ledger: ConsentLedger): string {
  if (ledger instanceof PostgresLedger) return `PostgreSQL table ${ledger.table}`;
  if (ledger instanceof FileLedger) return `file ${ledger.path}`;
  return "custom ledger";
}

/**
 * Why the service may not start with this ledger, or undefined. The do-not-text list must be the
 * same for every instance, or a caller who opted out on one is texted by another. The service
 * cannot see whether a file is shared, so it goes by what the environment says: `REDIS_URL` means
 * instances share calls (several may run), and then only PostgreSQL (`DATABASE_URL`) is a ledger
 * every instance shares.
 */
export function optOutListProblem(config: BaseConfig, env: NodeJS.ProcessEnv, sharedCalls: boolean): string | undefined {
  if (!config.ledger.optOutList || !sharedCalls || env.DATABASE_URL?.trim()) return undefined;
  return `ledger.optOutList: REDIS_URL is set, so several instances may share calls, but the consent ledger is the file ${config.ledger.path} of each instance; the do-not-text list needs a ledger every instance shares: set DATABASE_URL, or set ledger.optOutList: false`;
}
