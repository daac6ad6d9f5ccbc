import { SMS_LINES } from "../src/tasks/sms/types.js";
import { CALLBACK_LINES } from "../src/agents/callback/types.js";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { z as z4 } from "zod/v4";
import { zodToJsonSchema } from "zod-to-json-schema";
import { describe, expect, it } from "vitest";
import { LANGUAGES, type Language } from "../src/config/schema.js";
import { type AppConfig } from "../src/appConfig.js";
import type { LlmStep, ToolDef } from "../src/engine/define.js";
import { Engine } from "../src/engine/engine.js";
import { FlowDefinitionError } from "../src/engine/errors.js";
import { ENGINE_LINES, ENGINE_NOTES } from "../src/engine/keys.js";
import { MemoryLedger } from "../src/ledger/memoryLedger.js";
import { NumberHasher } from "../src/ledger/numberHash.js";
import { ScriptedModel } from "../src/llm/scriptedModel.js";
import { MemoryRateLimiter } from "../src/store/rateLimiter.js";
import type { ReceptionFlowTypes } from "../tools/reception/agent.js";
import { engineOptions } from "../src/service.js";
import { pino } from "pino";
import { readSections } from "../src/engine/markdownSections.js";
import { PromptLibrary } from "../src/engine/promptLibrary.js";
import { initialCallState, type SmsCallState as CallState } from "../src/tasks/sms/state.js";
import { receptionFlow } from "../tools/reception/agent.js";
import { callbackFlow } from "../tools/callback/agent.js";
import { initialCallbackSlice } from "../src/agents/callback/state.js";
import type { FlowTypes } from "../src/engine/define.js";
import type { ComposedFlow } from "../src/engine/defineFlow.js";

/** Both shipped agents: every tool file must be used by one of them. */
const AGENTS = [receptionFlow, callbackFlow] as unknown as ComposedFlow<FlowTypes>[];
import { nullsToUndefined, toolJsonSchema, toolSpec } from "../src/llm/toolSchema.js";
import { PROMPTS_DIR } from "../src/service.js";
import { receptionServicesOf, testConfig } from "./support/harness.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** Every tool file under tools/ (one tool per file), loaded as the flow would; a task's or agent's definition (task.ts, agent.ts) lists tools and is none. */
function toolFiles(dir = join(ROOT, "tools")): string[] {
  // A tool's file is named like the tool (snake_case); camelCase files are a group's shared definitions (tools/common/agentDef.ts, transferConfig.ts).
  const isTool = (f: string) => /^[a-z0-9_]+\.ts$/.test(f) && f !== "task.ts" && f !== "agent.ts";
  return readdirSync(dir).flatMap((f) => (statSync(join(dir, f)).isDirectory() ? toolFiles(join(dir, f)) : isTool(f) ? [join(dir, f)] : []));
}
const exportedTools: ToolDef<ReceptionFlowTypes>[] = (await Promise.all(toolFiles().map(async (f) => Object.values(await import(f)) as ToolDef<ReceptionFlowTypes>[]))).flat();
/** Every LLM step of both agents (the SMS task's steps once: both include the same task). */
const llmSteps: LlmStep<ReceptionFlowTypes>[] = [
  ...new Map(AGENTS.flatMap((f) => f.steps).filter((s) => s.kind === "llm").map((s) => [s.name, s as unknown as LlmStep<ReceptionFlowTypes>])).values(),
];
const stepTools: ToolDef<ReceptionFlowTypes>[] = llmSteps.flatMap((s) => s.tools);
/** Every distinct tool: a file in tools/ or offered by an LLM step. */
const allTools: ToolDef<ReceptionFlowTypes>[] = [...new Map([...exportedTools, ...stepTools].map((t) => [t.name, t])).values()];
/** The services an agent gets: the SMS task's, the transfer tool's, and the callback agent's (each reads its own). */
const servicesFor = (config: AppConfig) => ({
  ...receptionServicesOf(config, { ledger: new MemoryLedger(), limiter: new MemoryRateLimiter(), hasher: NumberHasher.full() }),
  callback: config.agents.callback ?? { endpoint: { url: "https://x.example", secretEnv: "X", timeoutMs: 1, maxAttempts: 1, backoff: { initialMs: 1, maxMs: 1, factor: 1 }, pollMs: 10 }, smsSlots: {} },
  sessionTtlSeconds: config.limits.sessionTtlSeconds,
});

const configs: Array<[string, AppConfig]> = [
  ["de-DE", testConfig()],
  ["en-US", testConfig({}, "config/agent.en-US.yaml")],
];

interface Expected {
  keys: string[];
  check?: (properties: Record<string, Record<string, unknown>>) => void;
}

const EXPECTED: Record<string, Expected> = {
  start_sms_flow: {
    keys: ["info"],
    check: (p) => {
      expect(p.info!.type).toBe("string");
      expect(p.info!.enum).toEqual(["opening_hours", "address", "booking_link"]);
      expect(p.info!.description).toBe("which information the caller asked for");
    },
  },
  collect_phone_number: {
    keys: ["phone_number"],
    check: (p) => {
      expect(p.phone_number!.type).toBe("string");
      expect(typeof p.phone_number!.description).toBe("string");
    },
  },
  record_consent: {
    keys: ["consented"],
    check: (p) => {
      expect(p.consented!.type).toBe("boolean");
      expect(typeof p.consented!.description).toBe("string");
    },
  },
  send_confirmation_sms: { keys: [] },
  cancel_sms: { keys: [] },
  opt_out_sms: {
    // Optional (the caller's own number by default): nullable under strict schemas, and described in both.
    keys: ["number"],
    check: (p) => {
      const n = p.number!;
      const types = n.anyOf ? (n.anyOf as Array<{ type: string }>).map((a) => a.type) : [n.type];
      expect(types[0]).toBe("string");
      expect(types.slice(1)).toEqual(n.anyOf ? ["null"] : []);
      expect(n.description).toMatch(/caller names another number/);
    },
  },
  ask_for_other_number: { keys: [] },
  end_call: { keys: [] },
  note_callback_detail: {
    keys: ["field", "value"],
    check: (p) => {
      expect(p.field!.enum).toEqual(["name", "reason", "time_window"]);
      expect(p.value!.type).toBe("string");
    },
  },
  confirm_callback_detail: {
    keys: ["field", "correct"],
    check: (p) => {
      expect(p.field!.enum).toEqual(["name", "reason", "time_window"]);
      expect(p.correct!.type).toBe("boolean");
    },
  },
  offer_sms_confirmation: { keys: [] },
  transfer_call: {
    // The shipped configs name no transfer target: a plain string the tool answers "not possible" to.
    keys: ["target"],
    check: (p) => {
      expect(p.target!.type).toBe("string");
      expect(p.target!.description).toMatch(/no transfer targets/);
    },
  },
};

function sorted(xs: Iterable<string>): string[] {
  return [...xs].sort();
}

describe("the tool set", () => {
  it("tools/ holds the shipped tools, one file each", () => {
    expect(sorted(exportedTools.map((t) => t.name))).toEqual(sorted(Object.keys(EXPECTED)));
    expect(toolFiles()).toHaveLength(exportedTools.length);
  });

  it("every tool an LLM step offers is a tool file's export (same object)", () => {
    for (const t of stepTools) expect(exportedTools).toContain(t);
  });

  it("every exported tool is used by a step: offered to the model, or run by a code step", () => {
    const used = AGENTS.flatMap((f) => f.steps.flatMap((s) => s.tools.map((t) => t.name)));
    for (const t of exportedTools) expect(used).toContain(t.name);
  });

  it("sending is a code step only: no LLM step offers send_confirmation_sms", () => {
    expect(stepTools.map((t) => t.name)).not.toContain("send_confirmation_sms");
    for (const f of AGENTS) expect(f.steps.find((s) => s.name === "send_sms")).toMatchObject({ kind: "code" });
  });

  it("no step offers the same tool twice", () => {
    for (const s of llmSteps) expect(new Set(s.tools.map((t) => t.name)).size).toBe(s.tools.length);
  });

  it("each agent has the expected LLM steps and tools per step", () => {
    const perStep = (f: ComposedFlow<FlowTypes>) => Object.fromEntries(f.steps.filter((s) => s.kind === "llm").map((s) => [s.name, s.tools.map((t) => t.name)]));
    // opt_out_sms is the SMS task's flow-wide tool: last in every LLM step of every flow that includes the task.
    const smsTask = {
      collect_number: ["collect_phone_number", "cancel_sms", "opt_out_sms"],
      confirm_consent: ["record_consent", "collect_phone_number", "ask_for_other_number", "opt_out_sms"],
    };
    expect(perStep(AGENTS[0]!)).toEqual({ main: ["start_sms_flow", "transfer_call", "end_call", "opt_out_sms"], ...smsTask });
    expect(perStep(AGENTS[1]!)).toEqual({
      collect_details: ["note_callback_detail", "confirm_callback_detail", "end_call", "opt_out_sms"],
      wrap_up: ["note_callback_detail", "confirm_callback_detail", "end_call", "opt_out_sms"],
      ...smsTask,
    });
    // Code steps run their own tools only: the flow-wide tool is for the model.
    for (const f of AGENTS) for (const s of f.steps.filter((x) => x.kind === "code")) expect(s.tools.map((t) => t.name)).not.toContain("opt_out_sms");
    // The callback agent offers the SMS by code, never by the model.
    expect(AGENTS[1]!.steps.find((s) => s.name === "offer_sms")).toMatchObject({ kind: "code" });
  });
});

describe.each(configs)("derived JSON schemas (%s config)", (_lang, config) => {
  describe.each(allTools.map((t) => [t.name, t] as const))("%s", (name, tool) => {
    const expected = EXPECTED[name];

    it("has an expectation in this test (new tools must be added here)", () => {
      expect(expected).toBeDefined();
    });

    it("zod shape has exactly the expected keys", () => {
      expect(sorted(Object.keys(tool.parameters(servicesFor(config)).shape))).toEqual(sorted(expected!.keys));
    });

    it.each([true, false])("strict=%s: an object schema with exactly the zod shape's properties", (strict) => {
      const zodSchema = tool.parameters(servicesFor(config));
      const spec = toolSpec(name, "description", zodSchema, strict);
      expect(spec.name).toBe(name);
      expect(spec.strict).toBe(strict);
      const schema = spec.parameters;
      expect(schema.type).toBe("object");
      expect(schema).not.toHaveProperty("$schema");
      expect(schema).not.toHaveProperty("$ref");
      expect(schema).not.toHaveProperty("definitions");
      expect(typeof schema.properties).toBe("object");
      const properties = schema.properties as Record<string, Record<string, unknown>>;
      expect(sorted(Object.keys(properties))).toEqual(sorted(Object.keys(zodSchema.shape)));
      expect(sorted(Object.keys(properties))).toEqual(sorted(expected!.keys));
      expected!.check?.(properties);
      // The JSON survives serialization (it is sent over HTTP as is).
      expect(JSON.parse(JSON.stringify(schema))).toEqual(schema);
    });

    it("strict: additionalProperties false and every key required", () => {
      const schema = toolJsonSchema(tool.parameters(servicesFor(config)), true);
      expect(schema.additionalProperties).toBe(false);
      expect(sorted((schema.required as string[] | undefined) ?? [])).toEqual(sorted(expected!.keys));
    });

    it("toolJsonSchema and toolSpec agree", () => {
      for (const strict of [true, false]) {
        expect(toolSpec(name, "d", tool.parameters(servicesFor(config)), strict).parameters).toEqual(toolJsonSchema(tool.parameters(servicesFor(config)), strict));
      }
    });
  });
});

describe("start_sms_flow parameters follow the configured SMS slots", () => {
  const start = exportedTools.find((t) => t.name === "start_sms_flow")!;
  const base = testConfig();

  it("two slots give two enum properties, all required in strict mode", () => {
    const config: AppConfig = {
      ...base,
      tasks: {
        sms: {
          ...base.tasks.sms,
          template: "{business_name}: {info} {branch}",
          slots: {
            ...base.tasks.sms.slots,
            branch: { description: "which branch", options: { north: "Nord", south: "Süd" } },
          },
        },
      },
    };
    const schema = toolJsonSchema(start.parameters(servicesFor(config)), true);
    const props = schema.properties as Record<string, { enum?: string[] }>;
    expect(sorted(Object.keys(props))).toEqual(["branch", "info"]);
    expect(props.branch!.enum).toEqual(["north", "south"]);
    expect(sorted(schema.required as string[])).toEqual(["branch", "info"]);
  });

  it("no slots give an empty object schema", () => {
    const config: AppConfig = { ...base, tasks: { sms: { ...base.tasks.sms, template: "{business_name}", slots: {} } } };
    const schema = toolJsonSchema(start.parameters(servicesFor(config)), true);
    expect(schema.type).toBe("object");
    expect(schema.properties).toEqual({});
  });

  it("the zod schema accepts only the configured option keys", () => {
    const params = start.parameters(servicesFor(base));
    expect(params.safeParse({ info: "address" }).success).toBe(true);
    expect(params.safeParse({ info: "weather" }).success).toBe(false);
    expect(params.safeParse({}).success).toBe(false);
  });
});

describe("transfer_call parameters follow the configured transfer targets", () => {
  const transfer = exportedTools.find((t) => t.name === "transfer_call")!;
  const config = testConfig({
    agents: {
      reception: {
        transfer: {
          targets: {
            reception: { number: "4921112345600", description: "reception desk, for appointments", name: "dem Empfang" },
            billing: { number: "4921112345601", description: "billing questions" },
          },
        },
      },
    },
  });

  it("one enum of the target keys, each target's description in the parameter's description", () => {
    const schema = toolJsonSchema(transfer.parameters(servicesFor(config)), true);
    const target = (schema.properties as Record<string, { enum?: string[]; description?: string }>).target!;
    expect(target.enum).toEqual(["reception", "billing"]);
    expect(target.description).toContain("reception: reception desk, for appointments");
    expect(target.description).toContain("billing: billing questions");
    expect(schema.required).toEqual(["target"]);
  });

  it("the zod schema accepts only configured keys", () => {
    const p = transfer.parameters(servicesFor(config));
    expect(p.safeParse({ target: "reception" }).success).toBe(true);
    expect(p.safeParse({ target: "sales" }).success).toBe(false);
    expect(p.safeParse({}).success).toBe(false);
  });
});

describe("the other tools' zod schemas validate model arguments", () => {
  const byName = (n: string) => exportedTools.find((t) => t.name === n)!;
  const config = testConfig();

  it("collect_phone_number needs a non-empty string of at most 200 characters (a number said in words fits)", () => {
    const p = byName("collect_phone_number").parameters(servicesFor(config));
    expect(p.safeParse({ phone_number: "0151 1234 5678" }).success).toBe(true);
    expect(p.safeParse({ phone_number: "" }).success).toBe(false);
    expect(p.safeParse({ phone_number: "1".repeat(200) }).success).toBe(true);
    expect(p.safeParse({ phone_number: "1".repeat(201) }).success).toBe(false);
    expect(p.safeParse({ phone_number: 4915112345678 }).success).toBe(false);
  });

  it("record_consent needs a boolean, not a string", () => {
    const p = byName("record_consent").parameters(servicesFor(config));
    expect(p.safeParse({ consented: true }).success).toBe(true);
    expect(p.safeParse({ consented: false }).success).toBe(true);
    expect(p.safeParse({ consented: "yes" }).success).toBe(false);
    expect(p.safeParse({}).success).toBe(false);
  });
});

describe("the zod 4 trap: zod-to-json-schema cannot read zod 4 schemas", () => {
  const v4 = z4.object({ phone_number: z4.string() });

  it("zod-to-json-schema silently returns a schema without properties for a zod 4 object", () => {
    for (const target of ["openAi", "jsonSchema7"] as const) {
      const out = zodToJsonSchema(v4 as unknown as z.ZodTypeAny, { target, $refStrategy: "none" }) as Record<string, unknown>;
      expect(out.properties).toBeUndefined();
      expect(out.type).not.toBe("object");
    }
  });

  it.each([true, false])("toolJsonSchema refuses a zod 4 object loudly (strict=%s)", (strict) => {
    expect(() => toolJsonSchema(v4 as unknown as z.ZodObject<z.ZodRawShape>, strict)).toThrow(/zod 3/);
  });

  it("every shipped tool's parameters are zod 3 objects", () => {
    for (const [, config] of configs) {
      for (const t of allTools) expect(t.parameters(servicesFor(config))).toBeInstanceOf(z.ZodObject);
    }
  });
});

describe("strict mode optionals (OpenAI strict function rules)", () => {
  const params = z.object({ a: z.string().optional(), b: z.number() });

  it("strict: optionals become required and nullable", () => {
    const s = toolJsonSchema(params, true);
    expect(sorted(s.required as string[])).toEqual(["a", "b"]);
    expect((s.properties as Record<string, { type: unknown }>).a!.type).toEqual(["string", "null"]);
    expect(s.additionalProperties).toBe(false);
  });

  it("non-strict: optionals stay optional", () => {
    const s = toolJsonSchema(params, false);
    expect(s.required).toEqual(["b"]);
    expect((s.properties as Record<string, { type: unknown }>).a!.type).toBe("string");
  });

  it("nullsToUndefined turns a strict-mode null into an absent optional the zod schema accepts", () => {
    const args = { a: null, b: 1 };
    expect(params.safeParse(args).success).toBe(false);
    const cleaned = nullsToUndefined(args);
    expect(cleaned).toEqual({ b: 1 });
    expect(params.safeParse(cleaned).success).toBe(true);
  });

  it("nullsToUndefined leaves non-objects alone", () => {
    expect(nullsToUndefined(null)).toBeNull();
    expect(nullsToUndefined([1, null])).toEqual([1, null]);
    expect(nullsToUndefined("x")).toBe("x");
  });
});

// ---------------------------------------------------------------------------------------------
// prompts/ consistency

const libraries = Object.fromEntries(LANGUAGES.map((l) => [l, new PromptLibrary(PROMPTS_DIR, l)])) as Record<Language, PromptLibrary>;

function placeholders(text: string): string[] {
  return sorted(new Set([...text.matchAll(/\{([a-z_][a-z0-9_]*)\}/g)].map((m) => m[1]!)));
}

describe("prompts/ cover every tool, step, line and note the code uses", () => {
  it("PROMPTS_DIR points at the checked-in prompts/", () => {
    expect(PROMPTS_DIR.replace(/\/$/, "")).toBe(join(ROOT, "prompts"));
    expect(existsSync(join(PROMPTS_DIR, "tools.md"))).toBe(true);
  });

  it.each(allTools.map((t) => [t.name]))("tool %s has a description in prompts/tools.md", (name) => {
    for (const lang of LANGUAGES) {
      const d = libraries[lang].toolDescription(name);
      expect(d.length).toBeGreaterThan(20);
    }
  });

  it("prompts/tools.md describes no tool that does not exist", () => {
    const described = Object.keys(readSections(join(PROMPTS_DIR, "tools.md")));
    expect(sorted(described)).toEqual(sorted(allTools.map((t) => t.name)));
  });

  it.each(llmSteps.flatMap((s) => LANGUAGES.map((l) => [s.name, s.prompt, l] as const)))("step %s: prompts/%s/%s.md exists and is not empty", (_step, prompt, lang) => {
    expect(existsSync(join(PROMPTS_DIR, lang, `${prompt}.md`))).toBe(true);
    expect(libraries[lang].stepPrompt(prompt).length).toBeGreaterThan(0);
  });

  it.each(LANGUAGES.map((l) => [l]))("%s: persona.md is not empty", (lang) => {
    expect(libraries[lang].persona.length).toBeGreaterThan(0);
  });

  it("both languages' lines.md have the same set of keys", () => {
    const [a, b] = LANGUAGES.map((l) => sorted(libraries[l].lineKeys()));
    expect(a!.length).toBeGreaterThan(0);
    expect(a).toEqual(b);
  });

  /** Every lines.md of a language: the shared one and each task's and agent's folder's (issue 19, point 2). */
  const allLines = (lang: Language): Record<string, string> => {
    const dir = join(PROMPTS_DIR, lang);
    const folders = readdirSync(dir).filter((f) => statSync(join(dir, f)).isDirectory() && existsSync(join(dir, f, "lines.md")));
    return Object.assign(readSections(join(dir, "lines.md")), ...folders.map((f) => readSections(join(dir, f, "lines.md"))));
  };

  it("each task's and agent's lines are in its own folder, the engine's in the shared lines.md", () => {
    const keys = (path: string) => Object.keys(readSections(join(PROMPTS_DIR, path)));
    for (const lang of LANGUAGES) {
      expect(sorted(keys(`${lang}/sms/lines.md`))).toEqual(sorted(SMS_LINES));
      expect(sorted(keys(`${lang}/callback/lines.md`))).toEqual(sorted(CALLBACK_LINES));
      expect(sorted(keys(`${lang}/lines.md`))).toEqual(sorted(ENGINE_LINES));
    }
  });

  it("each line uses the same placeholders in both languages", () => {
    const sections = LANGUAGES.map((l) => allLines(l));
    for (const key of Object.keys(sections[0]!)) {
      expect({ key, placeholders: placeholders(sections[1]![key] ?? "") }).toEqual({ key, placeholders: placeholders(sections[0]![key]!) });
    }
  });

  it("no line or note is empty", () => {
    for (const lang of LANGUAGES) {
      for (const [key, text] of Object.entries(allLines(lang))) expect({ lang, key, empty: text === "" }).toEqual({ lang, key, empty: false });
    }
    for (const [key, text] of Object.entries(readSections(join(PROMPTS_DIR, "model-notes.md")))) expect({ key, empty: text === "" }).toEqual({ key, empty: false });
  });

  // Line and note keys are typed (a typo is a compile error) and listed by the engine and the flow;
  // the engine refuses to start when one is missing. These check the lists against prompts/ both ways.
  it("every line key the engine or the flow declares exists in both lines.md, and every line there is declared", () => {
    const declared = sorted(new Set([...ENGINE_LINES, ...AGENTS.flatMap((f) => f.lines)]));
    for (const lang of LANGUAGES) expect({ lang, keys: sorted(libraries[lang].lineKeys()) }).toEqual({ lang, keys: declared });
  });

  it("every note key the engine or the flow declares exists in model-notes.md, and every note there is declared", () => {
    expect(sorted(libraries["de-DE"].noteKeys())).toEqual(sorted(new Set([...ENGINE_NOTES, ...AGENTS.flatMap((f) => f.notes)])));
  });

  it("a flow that declares a line prompts/ does not have stops at start-up, naming it", () => {
    const broken = { ...receptionFlow, lines: [...receptionFlow.lines, "no_such_line" as never] };
    const config = testConfig();
    expect(
      () =>
        new Engine({
          flow: broken,
          services: servicesFor(config),
          options: engineOptions(config),
          prompts: libraries["de-DE"],
          model: new ScriptedModel(),
          log: pino({ level: "silent" }),
          now: Date.now,
        }),
    ).toThrow(FlowDefinitionError);
    expect(() =>
      new Engine({ flow: broken, services: servicesFor(config), options: engineOptions(config), prompts: libraries["de-DE"], model: new ScriptedModel(), log: pino({ level: "silent" }), now: Date.now }),
    ).toThrow(/line no_such_line/);
  });

  it("every {placeholder} in persona.md and the step prompts has a value from its agent's promptValues", () => {
    const callbackConfigs: Array<[string, AppConfig]> = [
      ["de-DE", testConfig({}, "config/callback.yaml")],
      ["en-US", testConfig({ agent: "callback", agents: { callback: { endpoint: { url: "https://receiver.example/hook" }, smsSlots: { info: "opening_hours" } } } }, "config/agent.en-US.yaml")],
    ];
    const agents: Array<[ComposedFlow<FlowTypes>, Array<[string, AppConfig]>, object]> = [
      [AGENTS[0]!, configs, {}],
      [AGENTS[1]!, callbackConfigs, initialCallbackSlice()],
    ];
    for (const [flow, agentConfigs, slice] of agents) {
      for (const [lang, config] of agentConfigs) {
        const state: CallState = { ...initialCallState({ sessionId: "s", direction: "inbound", callerNumber: "4915112345678", language: lang as Language, step: flow.initialStep }), ...slice };
        const values = flow.promptValues(state, { ...servicesFor(config), reports: { save: async () => undefined } });
        const lib = libraries[lang as Language];
        const steps = flow.steps.filter((s): s is LlmStep<FlowTypes> => s.kind === "llm");
        const texts = [["persona", lib.persona] as const, ...steps.map((s) => [s.prompt, lib.stepPrompt(s.prompt)] as const)];
        for (const [where, text] of texts) {
          const unknown = placeholders(text).filter((p) => !(p in values));
          expect({ agent: flow.name, lang, where, unknown }).toEqual({ agent: flow.name, lang, where, unknown: [] });
        }
      }
    }
  });
});
