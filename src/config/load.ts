import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import type { z } from "zod";
import { packageRoot } from "./paths.js";
import { disclosureProblems } from "./disclosure.js";
import { baseConfigSchema, type BaseConfig } from "./schema.js";
import { ConfigError } from "../core/errors.js";

/** The checked-in config, relative to the package root (not the working directory). */
export const DEFAULT_CONFIG_PATH = "config/agent.yaml";

const LOG_LEVELS: readonly string[] = baseConfigSchema.shape.logLevel.removeDefault().options;

export { ConfigError } from "../core/errors.js";

function describe(err: z.ZodError, source: string): string {
  const lines = err.issues.map((i) => `  ${i.path.join(".") || "(root)"}: ${i.message}`);
  return `invalid config ${source}:\n${lines.join("\n")}`;
}

/** Settings that were replaced inside the service's own sections: a config still using one is told what to use instead. */
const REPLACED: Array<{ path: [string, string]; use: string }> = [
  { path: ["speech", "fillerAfterMs"], use: "server.answerWithinMs (one deadline for webhook and WebSocket)" },
];

/**
 * Validate an already-parsed config object against `schema` (the app's, composed in
 * src/appConfig.ts). `moved`: top-level keys that moved (to a task's or agent's section), each
 * with its new place; a config using one fails naming the key and where it went, never ignored.
 */
export function parseConfigWith<T extends BaseConfig>(schema: z.ZodType<T, z.ZodTypeDef, unknown>, raw: unknown, source: string, moved: Record<string, string>): T {
  const top = raw && typeof raw === "object" && !Array.isArray(raw) ? (raw as Record<string, unknown>) : undefined;
  const old: string[] = [];
  for (const [key, to] of Object.entries(moved)) if (top && Object.hasOwn(top, key)) old.push(`  ${key}: moved to ${to}`);
  for (const { path, use } of REPLACED) {
    const section = top?.[path[0]];
    if (section && typeof section === "object" && path[1] in section) old.push(`  ${path.join(".")}: was replaced by ${use}`);
  }
  if (old.length > 0) throw new ConfigError(`invalid config ${source}:\n${old.join("\n")}`);
  const r = schema.safeParse(raw);
  if (!r.success) throw new ConfigError(describe(r.error, source));
  // Here rather than in the schema: the rule reads its terms from prompts/, and every entry point parses through here.
  const undisclosed = disclosureProblems(r.data);
  if (undisclosed.length > 0) throw new ConfigError(`invalid config ${source}:\n${undisclosed.map((p) => `  ${p.path}: ${p.message}`).join("\n")}`);
  return r.data;
}

/** The environment overrides of the service's own settings named in the README (a task's or agent's come with it). */
export function applyBaseEnv<T extends BaseConfig>(cfg: T, env: NodeJS.ProcessEnv): T {
  const out = structuredClone(cfg);
  if (env.LLM_MODEL) out.llm.model = env.LLM_MODEL;
  if (env.HOST) out.server.host = env.HOST;
  if (env.LOG_LEVEL) {
    // Checked here so the message names the variable, not the config field it overrides.
    if (!LOG_LEVELS.includes(env.LOG_LEVEL)) throw new ConfigError(`invalid environment: LOG_LEVEL must be one of ${LOG_LEVELS.join(", ")}, got "${env.LOG_LEVEL}"`);
    out.logLevel = env.LOG_LEVEL as BaseConfig["logLevel"];
  }
  if (env.PORT !== undefined && env.PORT !== "") {
    const port = Number(env.PORT);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError(`invalid environment: PORT must be an integer 0-65535, got "${env.PORT}"`);
    out.server.port = port;
  }
  return out;
}

/** The parsed YAML of a config file (not validated yet); an unreadable file or bad YAML is a ConfigError naming the file. */
export function readConfigFile(path: string): { raw: unknown; full: string } {
  const full = resolve(path);
  let text: string;
  try {
    text = readFileSync(full, "utf8");
  } catch (e) {
    throw new ConfigError(`cannot read config file ${full}: ${(e as Error).message}`);
  }
  try {
    return { raw: parseYaml(text), full };
  } catch (e) {
    throw new ConfigError(`config file ${full} is not valid YAML: ${(e as Error).message}`);
  }
}

/**
 * `--config path` wins over `CONFIG`, which wins over the checked-in default. A given path is
 * relative to the working directory; the default is found from the package root, so the service
 * starts with its own config from any directory.
 */
export function configPathFrom(argv: string[], env: NodeJS.ProcessEnv): string {
  const i = argv.indexOf("--config");
  if (i >= 0) {
    const p = argv[i + 1];
    if (!p) throw new ConfigError("--config needs a file path");
    return p;
  }
  const eq = argv.find((a) => a.startsWith("--config="));
  if (eq) return eq.slice("--config=".length);
  return env.CONFIG || join(packageRoot(), DEFAULT_CONFIG_PATH);
}
