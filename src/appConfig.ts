import { z } from "zod";
import { applyBaseEnv, ConfigError, parseConfigWith, readConfigFile } from "./config/load.js";
import { baseConfigSchema, checkBaseConfig, type BaseConfig } from "./config/schema.js";
import { AGENT_NAMES, AGENTS, TASKS, type AgentConfigs, type AgentName, type TaskConfigs } from "./registry.js";
import type { AgentDef } from "../tools/common/agentDef.js";
import type { FlowTypes } from "./engine/define.js";

export { ConfigError, configPathFrom, DEFAULT_CONFIG_PATH } from "./config/load.js";

/**
 * The whole config file: the service's own settings (src/config/schema.ts), and every task's and
 * agent's own, each under its key (`tasks.sms`, `agents.callback`), composed from the registry
 * (src/registry.ts). The types are derived from the schemas.
 */
export type AppConfig = BaseConfig & { agent: AgentName; tasks: TaskConfigs; agents: AgentConfigs };
export type ConfigInput = Record<string, unknown>;

type AnyAgent = AgentDef<FlowTypes, unknown, TaskConfigs>;
const agentEntries = Object.entries(AGENTS) as unknown as Array<[AgentName, AnyAgent]>;

const mapValues = <T, U>(o: Record<string, T>, f: (v: T) => U): Record<string, U> => Object.fromEntries(Object.entries(o).map(([k, v]) => [k, f(v)]));

export const configSchema = baseConfigSchema
  .extend({
    /** Which agent answers calls (the registry's names). */
    agent: z.enum(AGENT_NAMES).default(AGENT_NAMES[0]),
    tasks: z.object(mapValues(TASKS, (t) => t.schema)).strict(),
    // A required section is optional here: it is required only for the agent `agent:` picks (below).
    agents: z
      .object(mapValues(AGENTS as unknown as Record<string, AnyAgent>, (a) => (a.required ? a.config.optional() : a.config)))
      .strict()
      .default({}),
  })
  .superRefine((cfg, ctx) => {
    checkBaseConfig(cfg, ctx);
    const tasks = cfg.tasks as TaskConfigs;
    const agents = cfg.agents as Record<string, unknown>;
    for (const [name, agent] of agentEntries) {
      const own = agents[name];
      const picked = cfg.agent === name;
      if (own === undefined) {
        if (picked && agent.required) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ["agents", name], message: agent.required });
        continue;
      }
      for (const p of agent.check?.(own, tasks, picked) ?? []) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ["agents", name, ...p.path], message: p.message });
    }
  }) as unknown as z.ZodType<AppConfig, z.ZodTypeDef, unknown>;

/** Old top-level keys of the tasks' and agents' settings, with their new place. */
const MOVED: Record<string, string> = Object.assign({}, ...Object.values(TASKS).map((t) => t.replaces), ...agentEntries.map(([, a]) => a.replaces ?? {}));

/** Validate an already-parsed config object (tests build configs in code). */
export function parseConfig(raw: unknown, source = "(inline)"): AppConfig {
  return parseConfigWith(configSchema, raw, source, MOVED);
}

/** Environment overrides named in the README; applied after the file is validated, then validated again. */
export function applyEnv(cfg: AppConfig, env: NodeJS.ProcessEnv): AppConfig {
  const out = applyBaseEnv(cfg, env);
  const agents = out.agents as Record<string, unknown>;
  // Only where the config has the agent's section: another agent's deployment may share the variables.
  for (const [name, agent] of agentEntries) {
    if (agents[name] === undefined || !agent.env) continue;
    const r = agent.env(agents[name], env);
    if ("problems" in r) throw new ConfigError(`invalid environment:${r.problems.length === 1 ? ` ${r.problems[0]}` : r.problems.map((p) => `\n  ${p}`).join("")}`);
    agents[name] = r.config;
  }
  return parseConfig(out, "after environment overrides");
}

export function loadConfigFile(path: string): AppConfig {
  const { raw, full } = readConfigFile(path);
  return parseConfig(raw, full);
}
