import { z } from "zod";
import type { SmsTaskConfig } from "../../tasks/sms/config.js";

/**
 * The callback agent's settings, `agents.callback` in the config file (required with
 * `agent: callback`); merged into the app config by the registry (src/registry.ts).
 */

/** The callback agent: where the collected request goes after the call, and the SMS it offers. */
export const callbackConfigSchema = z
  .object({
    /** The company's receiver: each call's request is POSTed there as JSON, signed, with an idempotency key. */
    endpoint: z
      .object({
        // Reports carry personal data: https, or plain http only to this machine (a local relay, tests).
        url: z
          .string()
          .url()
          .refine((u) => {
            let url: URL;
            try {
              url = new URL(u);
            } catch {
              return true; // not a URL at all: .url() above says so
            }
            return url.protocol === "https:" || (url.protocol === "http:" && ["localhost", "127.0.0.1", "[::1]"].includes(url.hostname));
          }, "must be an https:// URL (reports carry personal data); plain http:// only to localhost"),
        /** Name of the environment variable that holds the HMAC-SHA-256 signing secret (never the secret itself). */
        secretEnv: z.string().regex(/^[A-Z_][A-Z0-9_]*$/, "an environment variable name, e.g. CALLBACK_SIGNING_SECRET").default("CALLBACK_SIGNING_SECRET"),
        timeoutMs: z.number().int().min(100).max(60_000).default(5000),
        /** Attempts before the post is dead-lettered (kept for an operator, logged as an error). */
        maxAttempts: z.number().int().min(1).max(100).default(10),
        backoff: z
          .object({
            initialMs: z.number().int().min(10).default(2000),
            maxMs: z.number().int().min(10).default(600_000),
            factor: z.number().min(1).max(10).default(2),
          })
          .strict()
          .default({}),
        /** How often each instance looks for due posts. */
        pollMs: z.number().int().min(10).max(60_000).default(1000),
      })
      .strict(),
    /**
     * The SMS confirmation the agent offers once the request is confirmed: for each slot of
     * `tasks.sms.slots`, the option to send. A fixed text: nothing the caller said goes into an SMS.
     */
    smsSlots: z.record(z.string(), z.string()).default({}),
  })
  .strict();

export type CallbackConfig = z.infer<typeof callbackConfigSchema>;

/** The top-level key the agent's settings had before issue 19. */
export const CALLBACK_REPLACED_KEYS = { callback: "agents.callback" } as const;

/**
 * What only the whole config can tell: the confirmation SMS names an option of every slot the SMS
 * task declares, and nothing else. Paths are relative to `agents.callback`.
 */
export function callbackConfigProblems(own: CallbackConfig, sms: SmsTaskConfig): Array<{ path: string[]; message: string }> {
  const problems: Array<{ path: string[]; message: string }> = [];
  for (const [slot, option] of Object.entries(own.smsSlots)) {
    const declared = Object.hasOwn(sms.slots, slot) ? sms.slots[slot] : undefined;
    if (!declared) problems.push({ path: ["smsSlots", slot], message: "is not a slot declared in tasks.sms.slots" });
    else if (!Object.hasOwn(declared.options, option)) problems.push({ path: ["smsSlots", slot], message: `"${option}" is not an option of tasks.sms.slots.${slot}` });
  }
  for (const slot of Object.keys(sms.slots)) {
    if (!Object.hasOwn(own.smsSlots, slot)) problems.push({ path: ["smsSlots"], message: `names no option for tasks.sms.slots.${slot}: the confirmation SMS could not be rendered` });
  }
  return problems;
}
