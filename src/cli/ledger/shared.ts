import { applyEnv, configPathFrom, loadConfigFile } from "../../config/load.js";
import type { AppConfig } from "../../config/schema.js";

/**
 * What every `npm run ledger` subcommand shares, in a module of its own so a subcommand's module
 * (src/cli/ledger/*.ts) and the dispatcher (src/cli/ledger.ts) both import it without a cycle.
 */

/** Bad usage: the dispatcher prints it and exits 2. */
export class UsageError extends Error {}

/** The config as `npm start` reads it: `--config PATH`, else CONFIG, else the package's default; the environment wins. */
export function loadConfig(configArg: string | undefined, env: NodeJS.ProcessEnv): AppConfig {
  return applyEnv(loadConfigFile(configPathFrom(configArg === undefined ? [] : ["--config", configArg], env)), env);
}
