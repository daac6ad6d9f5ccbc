import type { CountryCode } from "libphonenumber-js/max";
import { z } from "zod";
import { checkPlaceholders, countryCode, type BaseConfig } from "../../config/schema.js";

/**
 * The SMS task's settings, `tasks.sms` in the config file: the SMS text and its slots, the consent
 * question, who may receive an SMS and the shared limits against SMS pumping. Merged into the
 * app config by the registry (src/registry.ts); the task's tools get `SmsConfig`, never the whole
 * app config.
 */

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

export const smsTaskConfigSchema = z
  .object({
    /** SMS body. `{business_name}` and the declared slots are the only placeholders. */
    template: z.string().min(1),
    slots: z.record(z.string().regex(placeholderName, "slot names are lower_snake_case"), smsSlotSchema).default({}),
    maxPerCall: z.number().int().min(1).max(10).default(1),
    /** One extra send after an sms_failed with a transient reason (smsc_unavailable, unknown). */
    retryTransientFailures: z.boolean().default(true),
    consent: z
      .object({
        /** The exact question spoken; `{number}` is replaced by the number read back in digit groups. */
        question: z.string().min(1).refine((q) => q.includes("{number}"), "the consent question must name the number: include {number}"),
        /**
         * A clear answer to the question ("Ja, gerne.", "Nein danke."), said as one of the whole
         * utterances listed in prompts/<lang>/sms/consent_answers.md, is decided by that list without a
         * model request (the same record_consent call, the same guards). Off: every answer goes to the model.
         */
        answerByRule: z.boolean().default(true),
      })
      .strict(),
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
  })
  .strict()
  .superRefine((cfg, ctx) => {
    checkPlaceholders(ctx, cfg.template, ["business_name", ...Object.keys(cfg.slots)], ["template"], "is neither {business_name} nor a declared slot in tasks.sms.slots");
    checkPlaceholders(ctx, cfg.consent.question, ["number", "business_name"], ["consent", "question"], "is unknown; use {number} or {business_name}");
  });

export type SmsTaskConfig = z.infer<typeof smsTaskConfigSchema>;

/** The top-level keys the task's settings had before issue 19, and where each went: a config still using one is told. */
export const SMS_TASK_REPLACED_KEYS = {
  sms: "tasks.sms (template, slots, maxPerCall and retryTransientFailures sit directly under tasks.sms)",
  consent: "tasks.sms.consent",
  recipients: "tasks.sms.recipients",
  abuse: "tasks.sms.abuse",
} as const;

/**
 * What the SMS task's tools, gate and rules read: its own settings, and the few service settings
 * it needs (numbers are read in `homeCountry`, the SMS names the business, the do-not-text list
 * is on or off with the ledger, the evidence names the model).
 */
export interface SmsConfig extends SmsTaskConfig {
  homeCountry: CountryCode;
  business: BaseConfig["business"];
  optOutList: boolean;
  model: string;
}

/** The SMS task's view of a parsed app config. */
export function smsConfig(task: SmsTaskConfig, app: BaseConfig): SmsConfig {
  return { ...task, homeCountry: app.homeCountry, business: app.business, optOutList: app.ledger.optOutList, model: app.llm.model };
}
