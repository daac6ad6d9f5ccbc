import { callbackConfigSchema, type CallbackConfig } from "./config.js";

type Endpoint = CallbackConfig["endpoint"];

/**
 * Every `agents.callback.endpoint` setting as an environment variable (wins over the file), so one
 * image serves several receivers. The README's variable list and `npm start -- --help` name them
 * all (test/callback.demo.test.ts checks). The signing secret itself only ever comes from the
 * environment: from CALLBACK_SIGNING_SECRET, or the variable CALLBACK_SECRET_ENV names.
 */
export const CALLBACK_ENDPOINT_ENV = [
  { name: "CALLBACK_URL", field: ["url"], kind: "text" },
  { name: "CALLBACK_SECRET_ENV", field: ["secretEnv"], kind: "text" },
  { name: "CALLBACK_TIMEOUT_MS", field: ["timeoutMs"], kind: "number" },
  { name: "CALLBACK_MAX_ATTEMPTS", field: ["maxAttempts"], kind: "number" },
  { name: "CALLBACK_BACKOFF_INITIAL_MS", field: ["backoff", "initialMs"], kind: "number" },
  { name: "CALLBACK_BACKOFF_MAX_MS", field: ["backoff", "maxMs"], kind: "number" },
  { name: "CALLBACK_BACKOFF_FACTOR", field: ["backoff", "factor"], kind: "number" },
  { name: "CALLBACK_POLL_MS", field: ["pollMs"], kind: "number" },
] as const satisfies ReadonlyArray<{ name: string; field: readonly string[]; kind: "text" | "number" }>;

/**
 * `endpoint` with the variables set in `env` applied, or the problems, each naming the variable
 * and the setting it overrides (`CALLBACK_TIMEOUT_MS (agents.callback.endpoint.timeoutMs): …`).
 */
export function callbackEndpointFromEnv(endpoint: Endpoint, env: NodeJS.ProcessEnv): { endpoint: Endpoint } | { problems: string[] } {
  const out = structuredClone(endpoint) as Record<string, unknown>;
  const problems: string[] = [];
  const setBy = new Map<string, string>();
  for (const v of CALLBACK_ENDPOINT_ENV) {
    const raw = env[v.name];
    if (raw === undefined || raw === "") continue;
    const value = v.kind === "number" ? Number(raw) : raw;
    if (typeof value === "number" && (raw.trim() === "" || !Number.isFinite(value))) {
      problems.push(`${v.name} (${fieldName(v.field)}): must be a number, got "${raw}"`);
      continue;
    }
    let target = out;
    for (const key of v.field.slice(0, -1)) target = (target[key] ??= {}) as Record<string, unknown>;
    target[v.field.at(-1)!] = value;
    setBy.set(v.field.join("."), v.name);
  }
  if (problems.length) return { problems };
  const checked = callbackConfigSchema.shape.endpoint.safeParse(out);
  if (checked.success) return { endpoint: checked.data };
  return {
    problems: checked.error.issues.map((i) => {
      const name = setBy.get(i.path.join("."));
      return `${name ? `${name} (${fieldName(i.path)})` : fieldName(i.path)}: ${i.message}`;
    }),
  };
}

const fieldName = (path: ReadonlyArray<string | number>) => ["agents", "callback", "endpoint", ...path].join(".");
