import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import type { z } from "zod";
import { packageRoot } from "./paths.js";
import { disclosureProblems } from "./disclosure.js";
import { callbackEndpointFromEnv } from "./callbackEnv.js";
import { configSchema, type AppConfig } from "./schema.js";
import { ConfigError } from "../core/errors.js";

/** The checked-in config, relative to the package root (not the working directory). */
export const DEFAULT_CONFIG_PATH = "config/agent.yaml";

const LOG_LEVELS: readonly string[] = configSchema.innerType().shape.logLevel.removeDefault().options;

export { ConfigError } from "../core/errors.js";

function describe(err: z.ZodError, source: string): string {
  const lines = err.issues.map((i) => `  ${i.path.join(".") || "(root)"}: ${i.message}`);
  return `invalid config ${source}:\n${lines.join("\n")}`;
}

/** Validate an already-parsed config object (tests build configs in code). */
/** Settings that were replaced: a config still using one is told what to use instead. */
const REPLACED: Array<{ path: [string, string]; use: string }> = [
  { path: ["speech", "fillerAfterMs"], use: "server.answerWithinMs (one deadline for webhook and WebSocket)" },
];

export function parseConfig(raw: unknown, source = "(inline)"): AppConfig {
  for (const { path, use } of REPLACED) {
    const section = (raw as Record<string, unknown> | null | undefined)?.[path[0]];
    if (section && typeof section === "object" && path[1] in section) throw new ConfigError(`invalid config ${source}:\n  ${path.join(".")}: was replaced by ${use}`);
  }
  const r = configSchema.safeParse(raw);
  if (!r.success) throw new ConfigError(describe(r.error, source));
  // Here rather than in the schema: the rule reads its terms from prompts/, and every entry point parses through here.
  const undisclosed = disclosureProblems(r.data);
  if (undisclosed.length > 0) throw new ConfigError(`invalid config ${source}:\n${undisclosed.map((p) => `  ${p.path}: ${p.message}`).join("\n")}`);
  return r.data;
}

/** Environment overrides named in the README; applied after the file is validated, then validated again. */
export function applyEnv(cfg: AppConfig, env: NodeJS.ProcessEnv): AppConfig {
  const out = structuredClone(cfg);
  if (env.LLM_MODEL) out.llm.model = env.LLM_MODEL;
  if (env.HOST) out.server.host = env.HOST;
  if (env.LOG_LEVEL) {
    // Checked here so the message names the variable, not the config field it overrides.
    if (!LOG_LEVELS.includes(env.LOG_LEVEL)) throw new ConfigError(`invalid environment: LOG_LEVEL must be one of ${LOG_LEVELS.join(", ")}, got "${env.LOG_LEVEL}"`);
    out.logLevel = env.LOG_LEVEL as AppConfig["logLevel"];
  }
  if (env.PORT !== undefined && env.PORT !== "") {
    const port = Number(env.PORT);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError(`invalid environment: PORT must be an integer 0-65535, got "${env.PORT}"`);
    out.server.port = port;
  }
  // Only where the config has a callback section: another agent's deployment may share the variables.
  if (out.callback) {
    const r = callbackEndpointFromEnv(out.callback.endpoint, env);
    if ("problems" in r) throw new ConfigError(`invalid environment:${r.problems.length === 1 ? ` ${r.problems[0]}` : r.problems.map((p) => `\n  ${p}`).join("")}`);
    out.callback.endpoint = r.endpoint;
  }
  return parseConfig(out, "after environment overrides");
}

export function loadConfigFile(path: string): AppConfig {
  const full = resolve(path);
  let text: string;
  try {
    text = readFileSync(full, "utf8");
  } catch (e) {
    throw new ConfigError(`cannot read config file ${full}: ${(e as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (e) {
    throw new ConfigError(`config file ${full} is not valid YAML: ${(e as Error).message}`);
  }
  return parseConfig(raw, full);
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
