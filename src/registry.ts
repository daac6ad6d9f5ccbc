import type { z } from "zod";
import { SMS_TASK_REPLACED_KEYS, smsTaskConfigSchema } from "./tasks/sms/config.js";
import { receptionAgent } from "../tools/reception/agent.js";
import { callbackAgent } from "../tools/callback/agent.js";

/**
 * The one registry of what this service can run. The config check (src/appConfig.ts: `agent:`,
 * `tasks.<name>`, `agents.<name>`), the service (src/service.ts), `npm run flow:diagram` and the
 * evals read it. Part of the composition root: it imports the agents' definitions in tools/.
 */

/** Every task with settings of its own, merged under `tasks.<name>`: a new one adds its line. */
export const TASKS = {
  sms: { schema: smsTaskConfigSchema, replaces: SMS_TASK_REPLACED_KEYS },
} as const;

/** Every agent; `agent:` in the config picks one (the first is the default). A new agent adds its line. */
export const AGENTS = {
  reception: receptionAgent,
  callback: callbackAgent,
} as const;

export type AgentName = keyof typeof AGENTS;
export const AGENT_NAMES = Object.keys(AGENTS) as [AgentName, ...AgentName[]];

/** Every task's parsed settings (`tasks.<name>`). */
export type TaskConfigs = { [K in keyof typeof TASKS]: z.infer<(typeof TASKS)[K]["schema"]> };
/** Every agent's parsed settings (`agents.<name>`): an agent's section may be left out unless it runs. */
export type AgentConfigs = { [K in AgentName]: z.infer<(typeof AGENTS)[K]["config"]> | undefined };
