import { isSupportedCountry, type CountryCode } from "libphonenumber-js/max";
import { z } from "zod";
import { bargeInConfigSchema, ttsSchema, vadSchema } from "../aiflow/actions.js";

/** The single checked-in config file, validated at start-up. Types are derived from this schema. */

import { LANGUAGES, type Language } from "../core/callState.js";
import { modelUrlSchema } from "./modelUrl.js";
export { LANGUAGES, type Language };

const countryCode = z
  .string()
  .refine((c) => isSupportedCountry(c), (c) => ({ message: `"${c}" is not a supported two-letter country code (e.g. DE)` }))
  .transform((c) => c as CountryCode);
const NUMBER_TYPES = [
  "MOBILE",
  "FIXED_LINE",
  "FIXED_LINE_OR_MOBILE",
  "PREMIUM_RATE",
  "TOLL_FREE",
  "SHARED_COST",
  "VOIP",
  "PERSONAL_NUMBER",
  "PAGER",
  "UAN",
  "VOICEMAIL",
] as const;

const stepLlmOverride = z
  .object({
    model: z.string().min(1).optional(),
    temperature: z.number().min(0).max(2).optional(),
    maxTokens: z.number().int().positive().optional(),
  })
  .strict();

const placeholderName = /^[a-z][a-z0-9_]*$/;

export const smsSlotSchema = z
  .object({
    description: z.string().min(1),
    /** The model picks one key; the SMS gets the configured text. The model never writes SMS text itself. */
    options: z.record(z.string().regex(placeholderName, "option keys are lower_snake_case"), z.string().min(1)).refine(
      (o) => Object.keys(o).length > 0,
      "a slot needs at least one option",
    ),
  })
  .strict();

/** The agents this service ships; `agent:` in the config picks one. */
export const AGENTS = ["reception", "callback"] as const;
export type AgentName = (typeof AGENTS)[number];

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
     * `sms.slots`, the option to send. A fixed text: nothing the caller said goes into an SMS.
     */
    smsSlots: z.record(z.string(), z.string()).default({}),
  })
  .strict();

export const configSchema = z
  .object({
    /** Which agent answers calls: reception (questions, SMS, transfer) or callback (callback requests). */
    agent: z.enum(AGENTS).default("reception"),
    language: z.enum(LANGUAGES),
    homeCountry: countryCode.default("DE"),
    business: z
      .object({
        name: z.string().min(1),
        purpose: z.string().min(1),
        /** What the agent may tell callers; also what it offers verbally when an SMS cannot be sent. */
        facts: z.string().default(""),
      })
      .strict(),
    greeting: z.string().min(1),
    /**
     * Callers must hear that they speak with an AI (EU AI Act Art. 50). `line` is spoken before a
     * greeting that does not say so itself; the rule is in src/config/disclosure.ts.
     */
    disclosure: z
      .object({ line: z.string().min(1).optional() })
      .strict()
      .default({}),
    llm: z
      .object({
        model: z.string().min(1),
        temperature: z.number().min(0).max(2).default(0.2),
        maxTokens: z.number().int().positive().default(300),
        timeoutMs: z.number().int().positive().default(10000),
        maxRetries: z.number().int().min(0).max(5).default(1),
        /** Strict function schemas; switch off for servers that reject `strict` (some vLLM / Ollama builds). */
        strictTools: z.boolean().default(true),
        /** Set for Azure OpenAI deployments that need an `api-version` query parameter. */
        azureApiVersion: z.string().min(1).optional(),
        steps: z.record(z.string(), stepLlmOverride).default({}),
        /** Tried in order when the primary model fails (after its retries) or its circuit is open. */
        fallbacks: z
          .array(
            z
              .object({
                model: z.string().min(1),
                baseURL: modelUrlSchema.optional(),
                /** Name of the environment variable with this endpoint's key (default OPENAI_API_KEY). */
                apiKeyEnv: z.string().min(1).optional(),
              })
              .strict(),
          )
          .default([]),
        backoffInitialMs: z.number().int().min(0).default(250),
        backoffMaxMs: z.number().int().min(0).default(2000),
        circuitBreaker: z
          .object({ failureThreshold: z.number().int().min(1).default(3), cooldownMs: z.number().int().min(0).default(30_000) })
          .strict()
          .default({}),
        /** When every model failed: apologize and go on, or apologize and transfer to a person. */
        onAllModelsFailed: z
          .object({
            action: z.enum(["apologize", "transfer"]).default("apologize"),
            transferTo: z.string().regex(/^[1-9]\d{6,14}$/, "E.164 digits without +").optional(),
            callerIdName: z.string().min(1).default("Hotline"),
            timeoutSeconds: z.number().int().min(5).max(120).default(30),
          })
          .strict()
          .refine((o) => o.action !== "transfer" || o.transferTo !== undefined, { message: "transfer needs transferTo", path: ["transferTo"] })
          .default({}),
      })
      .strict(),
    consent: z
      .object({
        /** The exact question spoken; `{number}` is replaced by the number read back in digit groups. */
        question: z.string().min(1).refine((q) => q.includes("{number}"), "the consent question must name the number: include {number}"),
        /**
         * A clear answer to the question ("Ja, gerne.", "Nein danke."), said as one of the whole
         * utterances listed in prompts/<lang>/consent_answers.md, is decided by that list without a
         * model request (the same record_consent call, the same guards). Off: every answer goes to the model.
         */
        answerByRule: z.boolean().default(true),
      })
      .strict(),
    sms: z
      .object({
        /** SMS body. `{business_name}` and the declared slots are the only placeholders. */
        template: z.string().min(1),
        slots: z.record(z.string().regex(placeholderName, "slot names are lower_snake_case"), smsSlotSchema).default({}),
        maxPerCall: z.number().int().min(1).max(10).default(1),
        /** One extra send after an sms_failed with a transient reason (smsc_unavailable, unknown). */
        retryTransientFailures: z.boolean().default(true),
      })
      .strict(),
    /**
     * Transfer to a person (the transfer_call tool): the model picks a target by key; each target's
     * description tells it when. No targets: the tool answers that no transfer is possible.
     */
    transfer: z
      .object({
        targets: z
          .record(
            z.string().regex(placeholderName, "target keys are lower_snake_case"),
            z
              .object({
                /** E.164 digits without +, as AI Flow's transfer action wants it. */
                number: z.string().regex(/^[1-9]\d{6,14}$/, "E.164 digits without + (e.g. 4921112345678)"),
                /** What the model reads to choose this target: who answers there and for what. */
                description: z.string().min(1),
                /** What the caller hears: "Ich verbinde Sie mit {name}." Without it, a line without a name. */
                name: z.string().min(1).optional(),
              })
              .strict(),
          )
          .default({}),
        /** Seconds the target rings before sipgate gives the call back (a new session_start). */
        timeoutSeconds: z.number().int().min(5).max(120).default(30),
        /** Caller ID name shown to the target; default business.name. */
        callerIdName: z.string().min(1).optional(),
      })
      .strict()
      .default({}),
    recipients: z
      .object({
        allowedCountries: z.array(countryCode).min(1),
        allowedNumberTypes: z.array(z.enum(NUMBER_TYPES)).min(1).default(["MOBILE"]),
        blockedNumbers: z.array(z.string().regex(/^[1-9]\d{6,14}$/, "blocked numbers are E.164 digits without +")).default([]),
        /** SMS to one recipient across all calls. */
        perRecipient: z
          .object({ max: z.number().int().min(1), windowSeconds: z.number().int().min(1) })
          .strict()
          .default({ max: 3, windowSeconds: 86400 }),
      })
      .strict(),
    /** SMS pumping protection: windows shared by all calls (and instances, with Redis). */
    abuse: z
      .object({
        perCaller: z.object({ max: z.number().int().min(1), windowSeconds: z.number().int().min(1) }).strict().default({ max: 3, windowSeconds: 86400 }),
        /** Destinations sharing a number range: the number without its last `prefixDigits` digits. */
        perPrefix: z
          .object({ max: z.number().int().min(1), windowSeconds: z.number().int().min(1), prefixDigits: z.number().int().min(1).max(8).default(3) })
          .strict()
          .default({ max: 10, windowSeconds: 3600, prefixDigits: 3 }),
        perCountry: z.object({ max: z.number().int().min(1), windowSeconds: z.number().int().min(1) }).strict().default({ max: 500, windowSeconds: 3600 }),
        global: z.object({ max: z.number().int().min(1), windowSeconds: z.number().int().min(1) }).strict().default({ max: 2000, windowSeconds: 3600 }),
      })
      .strict()
      .default({}),
    speech: z
      .object({
        tts: ttsSchema.optional(),
        bargeIn: bargeInConfigSchema.optional(),
        vad: vadSchema.optional(),
        userInputTimeoutSeconds: z.number().positive().max(60).default(8),
        /**
         * WebSocket: speak the model's answer sentence by sentence while it is still written. Off by
         * default: nothing documents that sipgate queues `speak` actions sent one after another (if a
         * new one replaced the one playing, callers would hear fragments). Confirm on a real call first.
         */
        streamSentences: z.boolean().default(false),
      })
      .strict()
      .default({}),
    limits: z
      .object({
        maxLlmRequestsPerTurn: z.number().int().min(1).max(10).default(3),
        maxInputTimeouts: z.number().int().min(0).max(10).default(2),
        historyMessages: z.number().int().min(4).max(500).default(40),
        sessionTtlSeconds: z.number().int().min(60).default(3600),
        /** An identical event within this window with nothing in between is a redelivery. */
        duplicateWindowSeconds: z.number().int().min(0).default(30),
      })
      .strict()
      .default({}),
    server: z
      .object({
        port: z.number().int().min(0).max(65535).default(8080),
        host: z.string().min(1).default("0.0.0.0"),
        apiTokenHeader: z.string().min(1).default("X-API-TOKEN"),
        /** Serve a non-loopback address without AIFLOW_API_TOKEN: anyone who can reach the port can then drive calls and SMS. */
        allowNoToken: z.boolean().default(false),
        maxBodyBytes: z.number().int().min(1024).max(10_000_000).default(65536),
        /** Path of the WebSocket transport on the same port. */
        wsPath: z.string().startsWith("/").default("/ws"),
        /**
         * sipgate asks for an answer within a second. A turn not done by then answers with a holding
         * line; its actions follow with the call's next event (HTTP) or are pushed when ready (WebSocket).
         * 0 = off: every answer waits for its turn (evals, local debugging; never in production).
         */
        answerWithinMs: z.number().int().min(0).max(10_000).default(800),
        /** Holding lines in a row before the caller hears an apology and the late result is dropped. */
        maxHoldingLines: z.number().int().min(0).max(10).default(2),
        /** `user_input_timeout_seconds` a holding line arms, so a late answer is collected even without `assistant_speech_ended`. */
        holdingTimeoutSeconds: z.number().positive().max(30).default(2),
        /** A call's lease: how long an instance that stopped renewing it (died, stalled) blocks the call. */
        leaseMs: z.number().int().min(300).max(60_000).default(3000),
        /**
         * Connections the kernel queues while the process is busy (listen backlog; capped by
         * net.core.somaxconn). Node's 511 overflows when a burst of calls connects at once, and a
         * dropped connection attempt is retried only after 1 s, 3 s, 7 s: late answers, and new
         * calls reaching admission (server.overload) long after they were placed.
         */
        listenBacklog: z.number().int().min(1).max(65_535).default(2048),
        /**
         * Over any of these limits the instance is overloaded: calls already running keep their
         * deadline, new calls (session_start) hear the `overloaded` line and are hung up (or
         * transferred to `transferTo`); /healthz answers 503 meanwhile, so a load balancer routes
         * around the instance. 0 turns a limit off. The defaults admit the capacity the bench
         * measures at a caller's pace (docs/performance.md) and stop a burst of new calls at its
         * start: delay and CPU are sampled once a second, so they see a burst only after it was
         * taken on; the new calls a second stop it at once.
         */
        overload: z
          .object({
            /** Event-loop delay (p99 over the last second, ms) above which new calls are refused: answers are late by then. */
            maxEventLoopDelayMs: z.number().int().min(0).max(10_000).default(500),
            /**
             * CPU the process used over the last second, in cores (1 = one core busy all the time).
             * Off by default: a busy core that keeps its deadlines is no reason to refuse a call, and
             * the event-loop delay shows when it does not.
             */
            maxCpuCores: z.number().min(0).max(256).default(0),
            /** Turns running at once on this instance (mostly waiting for the model). */
            maxInFlightTurns: z.number().int().min(0).default(1000),
            /** Calls taken on in the last second: each brings a whole call's work over the next half minute. */
            maxNewCallsPerSecond: z.number().int().min(0).default(100),
            /** Refused calls are transferred here (E.164 digits without +) instead of hung up. */
            transferTo: z.string().regex(/^[1-9]\d{6,14}$/, "E.164 digits without +").optional(),
            callerIdName: z.string().min(1).default("Hotline"),
          })
          .strict()
          .default({}),
      })
      .strict()
      .default({}),
    ledger: z
      .object({
        path: z.string().min(1).default("data/consent-ledger.jsonl"),
        /** `hashed` stores a SHA-256 of the number instead of the number (data minimisation). */
        numbers: z.enum(["full", "hashed"]).default("full"),
        /** How long records are kept; German UWG §7a documentation is commonly kept 5 years. */
        retentionDays: z.number().int().min(1).default(1826),
        /**
         * The do-not-text list: callers who asked never to be texted again (the opt_out_sms tool,
         * `npm run ledger -- optout`), kept with the ledger and checked by the gate on every send.
         * It needs a ledger every instance shares: with REDIS_URL (several instances) and no
         * DATABASE_URL, start-up is refused while it is on.
         */
        optOutList: z.boolean().default(true),
      })
      .strict()
      .default({}),
    /** The call review (`GET /calls`, on with ADMIN_TOKEN): what it keeps of each call, and for how long. */
    review: z
      .object({
        /** How long a call's timeline is kept (in Redis with REDIS_URL, else in memory). */
        retentionDays: z.number().positive().max(366).default(7),
        /** Keep what the caller said and heard, tool arguments and the model's answers (numbers always masked); needed by `npm run eval -- --from-call`. */
        transcripts: z.boolean().default(false),
        /** Without Redis: calls kept in this process's memory at most (the oldest go first). */
        memoryMaxCalls: z.number().int().min(1).max(100_000).default(2000),
        /** Calls the page lists. */
        listCalls: z.number().int().min(1).max(1000).default(100),
      })
      .strict()
      .default({}),
    /** Bounds the shipped Prometheus alert rules compare with (deploy/prometheus/alerts.yml), exported as gauges. */
    alerts: z
      .object({
        /** Alert when the caller's wait until the real answer (not the holding line) has a p95 above this. */
        callerWaitP95Seconds: z.number().positive().max(60).default(3),
      })
      .strict()
      .default({}),
    /** Settings of the callback agent; required when `agent: callback`. */
    callback: callbackConfigSchema.optional(),
    logLevel: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
    /** OpenTelemetry traces: on when OTEL_EXPORTER_OTLP_ENDPOINT (or _TRACES_ENDPOINT) is set; see docs/observability.md. */
    telemetry: z
      .object({
        /** Put what the caller said and what the agent spoke into the spans (numbers masked). Off: event kinds, steps, tools and reasons only. */
        transcript: z.boolean().default(false),
      })
      .strict()
      .default({}),
    /** USD per million tokens, by model name: evals estimate cost per call from it. */
    pricing: z
      .record(z.string(), z.object({ inputPerMillion: z.number().min(0), outputPerMillion: z.number().min(0) }).strict())
      .default({}),
    /** Models the eval harness compares (`npm run eval -- --matrix`); each may use its own endpoint. */
    evalModels: z
      .array(
        z
          .object({
            name: z.string().min(1),
            model: z.string().min(1),
            baseURL: modelUrlSchema.optional(),
            /** Name of the environment variable holding this endpoint's key. */
            apiKeyEnv: z.string().min(1).optional(),
            strictTools: z.boolean().optional(), // overrides llm.strictTools for this model: local servers (Ollama, some vLLM builds) reject `strict`
          })
          .strict(),
      )
      .default([]),
  })
  .strict()
  .superRefine((cfg, ctx) => {
    // Every {placeholder} in a configured text must be one the code fills, or callers hear it verbatim.
    const check = (text: string, allowed: string[], path: string[], hint: string) => {
      for (const m of text.matchAll(/\{([^}]*)\}/g)) {
        if (!allowed.includes(m[1]!)) ctx.addIssue({ code: z.ZodIssueCode.custom, path, message: `placeholder {${m[1]}} ${hint}` });
      }
    };
    check(cfg.sms.template, ["business_name", ...Object.keys(cfg.sms.slots)], ["sms", "template"], "is neither {business_name} nor a declared slot in sms.slots");
    check(cfg.greeting, ["business_name"], ["greeting"], "is unknown; only {business_name} is filled");
    if (cfg.disclosure.line) check(cfg.disclosure.line, ["business_name"], ["disclosure", "line"], "is unknown; only {business_name} is filled");
    check(cfg.consent.question, ["number", "business_name"], ["consent", "question"], "is unknown; use {number} or {business_name}");
    if (cfg.agent === "callback" && !cfg.callback) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ["callback"], message: "agent: callback needs a callback section (at least callback.endpoint.url)" });
    for (const [slot, option] of Object.entries(cfg.callback?.smsSlots ?? {})) {
      const declared = Object.hasOwn(cfg.sms.slots, slot) ? cfg.sms.slots[slot] : undefined;
      if (!declared) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ["callback", "smsSlots", slot], message: `is not a slot declared in sms.slots` });
      else if (!Object.hasOwn(declared.options, option)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ["callback", "smsSlots", slot], message: `"${option}" is not an option of sms.slots.${slot}` });
    }
    if (cfg.agent === "callback") {
      for (const slot of Object.keys(cfg.sms.slots)) {
        if (!Object.hasOwn(cfg.callback?.smsSlots ?? {}, slot)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ["callback", "smsSlots"], message: `names no option for sms.slots.${slot}: the confirmation SMS could not be rendered` });
      }
    }
  });

export type AppConfig = z.infer<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
