import { isSupportedCountry, type CountryCode } from "libphonenumber-js/max";
import { z } from "zod";
import { bargeInConfigSchema, ttsSchema, vadSchema } from "../aiflow/actions.js";

/** The service's part of the config file; the whole file's schema is composed in src/appConfig.ts. Types are derived from the schemas. */

import { LANGUAGES, type Language } from "../core/callState.js";
import { modelUrlSchema } from "./modelUrl.js";
export { LANGUAGES, type Language };

export const countryCode = z
  .string()
  .refine((c) => isSupportedCountry(c), (c) => ({ message: `"${c}" is not a supported two-letter country code (e.g. DE)` }))
  .transform((c) => c as CountryCode);
const stepLlmOverride = z
  .object({
    model: z.string().min(1).optional(),
    temperature: z.number().min(0).max(2).optional(),
    maxTokens: z.number().int().positive().optional(),
  })
  .strict();

export const baseConfigSchema = z
  .object({
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
  .strict();

/** Every `{placeholder}` in a configured text must be one the code fills, or callers hear it verbatim. */
export function checkPlaceholders(ctx: z.RefinementCtx, text: string, allowed: string[], path: Array<string | number>, hint: string): void {
  for (const m of text.matchAll(/\{([^}]*)\}/g)) {
    if (!allowed.includes(m[1]!)) ctx.addIssue({ code: z.ZodIssueCode.custom, path, message: `placeholder {${m[1]}} ${hint}` });
  }
}

/** The checks of the service's own settings that need more than one field. */
export function checkBaseConfig(cfg: BaseConfig, ctx: z.RefinementCtx): void {
  checkPlaceholders(ctx, cfg.greeting, ["business_name"], ["greeting"], "is unknown; only {business_name} is filled");
  if (cfg.disclosure.line) checkPlaceholders(ctx, cfg.disclosure.line, ["business_name"], ["disclosure", "line"], "is unknown; only {business_name} is filled");
}

/**
 * The service's own settings: what every agent shares (the business and how calls open, the
 * model, speech, the engine's limits, server, ledger, review, alerts, telemetry, evals). A task's
 * or agent's settings are not here: each brings its schema, merged under `tasks.<name>` and
 * `agents.<name>` by the registry (src/registry.ts, src/appConfig.ts).
 */
export type BaseConfig = z.infer<typeof baseConfigSchema>;
