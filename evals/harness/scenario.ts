import { readFileSync, readdirSync } from "node:fs";
import { basename, join } from "node:path";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { SMS_FAILURE_REASONS } from "../../src/aiflow/events.js";
import { LANGUAGES } from "../../src/config/schema.js";
import { AGENT_NAMES } from "../../src/registry.js";

/**
 * A scenario: who calls, a scripted caller made of reactive rules, and what must (not) happen.
 * Validated with zod; an error names the file, the scenario and the field.
 */

const when = z
  .object({
    /** The agent's current step (as the engine reports it after the last event). */
    step: z.string().min(1).optional(),
    /** A regular expression (case-insensitive) on the agent's last spoken line. */
    lastLine: z.string().min(1).optional(),
    /** Only after this many caller turns. */
    afterTurn: z.number().int().min(0).optional(),
  })
  .strict()
  .refine((w) => w.step !== undefined || w.lastLine !== undefined || w.afterTurn !== undefined, "a rule's `when` needs step, lastLine or afterTurn");

/** One reactive rule: when the agent is in a step (or said something matching), the caller does one thing. */
const rule = z
  .object({
    when,
    /** How often this rule may fire (default once). */
    times: z.number().int().min(1).default(1),
    /** What the caller says (a user_speak event). */
    say: z.string().min(1).optional(),
    /** The caller interrupts the agent's last line. */
    bargeIn: z.boolean().default(false),
    /** Keys pressed, one dtmf_received event each ("0170…#"). */
    dtmf: z.string().regex(/^[0-9*#]+$/, "dtmf is digits, * and # only").optional(),
    /** The caller stays silent: a user_input_timeout event. */
    silence: z.literal(true).optional(),
    /** sipgate reports the SMS failed. */
    smsFailed: z.enum(SMS_FAILURE_REASONS).optional(),
    /** The caller hangs up: session_end. */
    hangup: z.literal(true).optional(),
  })
  .strict()
  .refine(
    (a) => [a.say, a.dtmf, a.silence, a.smsFailed, a.hangup].filter((x) => x !== undefined).length === 1,
    "a rule does exactly one of say, dtmf, silence, smsFailed, hangup",
  );

const expectation = z
  .object({
    sms: z
      .object({
        sent: z.boolean().optional(),
        count: z.number().int().min(0).optional(),
        recipient: z.string().regex(/^[1-9]\d{6,14}$/, "recipient in AI Flow format (E.164 digits, no +)").optional(),
      })
      .strict()
      .optional(),
    consent: z.enum(["given", "declined", "none"]).optional(),
    stepsVisited: z.array(z.string()).optional(),
    stepsNotVisited: z.array(z.string()).optional(),
    toolsCalled: z.array(z.object({ name: z.string(), args: z.record(z.unknown()).optional() }).strict()).optional(),
    toolsNotCalled: z.array(z.string()).optional(),
    /** Regular expressions (case-insensitive) the agent must never say. */
    neverSay: z.array(z.string()).default([]),
    /** Regular expressions the agent must say at some point. */
    mustSay: z.array(z.string()).default([]),
    /** Exactly how many agent lines match each regular expression (e.g. the consent question asked twice). */
    saidTimes: z.record(z.string(), z.number().int().min(0)).default({}),
    hangup: z.boolean().optional(),
    /**
     * The caller may hear an error line (an apology such as "Entschuldigung, das hat nicht geklappt";
     * evals/harness/errorLines.ts). Off by default: only a scenario that provokes a failure on purpose sets it.
     */
    errorLinesAllowed: z.boolean().default(false),
    maxCallerTurns: z.number().int().min(1).optional(),
    /** The callback agent's report after the call, as its endpoint would receive it (fields given are compared). */
    report: z
      .object({
        request: z
          .object({ name: z.string().nullable().optional(), reason: z.string().nullable().optional(), timeWindow: z.string().nullable().optional(), complete: z.boolean().optional() })
          .strict()
          .optional(),
        sms: z.enum(["handed_over", "declined", "cancelled", "refused", "unanswered", "not_offered"]).optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

/** One recorded model answer of a reviewed call (`replay:`, written by `npm run eval -- --from-call`). */
const replayAnswer = z
  .object({
    /** The step whose request got this answer in the call. */
    step: z.string().min(1),
    text: z.string().default(""),
    /** `arguments` as the model sent them: an object, or the raw text when it was not JSON. */
    toolCalls: z.array(z.object({ name: z.string().min(1), arguments: z.union([z.record(z.unknown()), z.string()]) }).strict()).default([]),
    /** The request failed in the call (the caller heard the apology): replayed as a failure. */
    error: z.string().optional(),
  })
  .strict();

export const scenarioSchema = z
  .object({
    id: z.string().regex(/^[a-z0-9][a-z0-9-]*$/, "ids are lower-case words joined by -"),
    description: z.string().min(1),
    /** The agent the scenario is for; `npm run eval` runs the scenarios of the config's `agent`. */
    agent: z.enum(AGENT_NAMES).default("reception"),
    language: z.enum(LANGUAGES),
    tags: z.array(z.string()).default([]),
    caller: z
      .object({
        number: z.string().default("4915112345678"),
        direction: z.enum(["inbound", "outbound"]).default("inbound"),
      })
      .strict()
      .default({}),
    /** Ordered reactive rules: after each agent answer the first matching rule with uses left fires. */
    script: z.array(rule).default([]),
    /** Said in order when no rule matches; then the caller hangs up. */
    fallback: z.array(z.string()).default([]),
    maxTurns: z.number().int().min(1).max(50).default(12),
    expect: expectation,
    /** A scenario built to fail: the harness checks that it does (self-test). */
    expectFailure: z.boolean().default(false),
    /** Exploratory: an LLM plays the caller with this persona and goal instead of the script. */
    persona: z.object({ description: z.string(), goal: z.string(), model: z.string().optional() }).strict().optional(),
    /** The reviewed call this scenario was made from (`--from-call`). */
    fromCall: z.string().optional(),
    /**
     * The call's model answers, in order: offline runs (--offline, --replay) answer from them
     * instead of the scripted model; runs against a real model ignore them (the same caller, a new model).
     */
    replay: z.array(replayAnswer).optional(),
  })
  .strict()
  .refine((s) => s.script.length > 0 || s.persona !== undefined, { message: "a scenario needs a script (or a persona)", path: ["script"] });

export type Scenario = z.infer<typeof scenarioSchema>;
export type CallerRule = z.infer<typeof rule>;
export type Expectation = z.infer<typeof expectation>;
export type ReplayAnswer = z.infer<typeof replayAnswer>;

export class ScenarioError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ScenarioError";
  }
}

/** Load every `*.yaml` in a folder; a file may hold one scenario or a list. */
export function loadScenarios(dir: string): Scenario[] {
  const files = readdirSync(dir).filter((f) => f.endsWith(".yaml") || f.endsWith(".yml")).sort();
  const out: Scenario[] = [];
  const ids = new Map<string, string>();
  for (const f of files) {
    const path = join(dir, f);
    let raw: unknown;
    try {
      raw = parseYaml(readFileSync(path, "utf8"));
    } catch (e) {
      throw new ScenarioError(`${path}: not valid YAML: ${(e as Error).message}`);
    }
    const list = Array.isArray(raw) ? raw : [raw];
    list.forEach((item, i) => {
      const label = (item as { id?: unknown })?.id ? `scenario "${String((item as { id: unknown }).id)}"` : `scenario #${i + 1}`;
      const r = scenarioSchema.safeParse(item);
      if (!r.success) {
        const problems = r.error.issues.map((x) => `${x.path.join(".") || "(root)"}: ${x.message}`).join("; ");
        throw new ScenarioError(`${basename(path)}: ${label}: ${problems}`);
      }
      for (const re of [...r.data.expect.neverSay, ...r.data.expect.mustSay, ...Object.keys(r.data.expect.saidTimes), ...r.data.script.map((s) => s.when.lastLine).filter((x): x is string => !!x)]) {
        try {
          new RegExp(re, "i");
        } catch {
          throw new ScenarioError(`${basename(path)}: ${label}: invalid regular expression /${re}/`);
        }
      }
      const seen = ids.get(r.data.id);
      if (seen) throw new ScenarioError(`${basename(path)}: ${label}: id already used in ${seen}`);
      ids.set(r.data.id, basename(path));
      out.push(r.data);
    });
  }
  return out;
}
