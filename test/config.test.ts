import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parse as parseYaml } from "yaml";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError, DEFAULT_CONFIG_PATH, applyEnv, configPathFrom, loadConfigFile, parseConfig } from "../src/appConfig.js";
import type { AppConfig } from "../src/appConfig.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const DE_FILE = join(ROOT, "config/agent.yaml");
const EN_FILE = join(ROOT, "config/agent.en-US.yaml");

/** The checked-in German config as a plain object, freshly parsed for each mutation. */
function rawDe(): Record<string, any> {
  return parseYaml(readFileSync(DE_FILE, "utf8")) as Record<string, any>;
}

/** parseConfig on a mutated copy of the checked-in config; returns the ConfigError it throws. */
function configError(mutate: (raw: Record<string, any>) => void): ConfigError {
  const raw = rawDe();
  mutate(raw);
  try {
    parseConfig(raw);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error("expected parseConfig to throw ConfigError");
}

const tmp = mkdtempSync(join(tmpdir(), "config-test-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("the checked-in configs load", () => {
  it("config/agent.yaml", () => {
    const cfg = loadConfigFile(DE_FILE);
    expect(cfg.language).toBe("de-DE");
    expect(cfg.homeCountry).toBe("DE");
    expect(cfg.business.name).toBe("Praxis Dr. Muster");
    expect(cfg.llm).toMatchObject({ model: "gpt-4o-mini", temperature: 0.2, strictTools: true });
    expect(cfg.llm.steps.confirm_consent).toEqual({ temperature: 0 });
    expect(cfg.tasks.sms.consent.question).toContain("{number}");
    expect(Object.keys(cfg.tasks.sms.slots)).toEqual(["info"]);
    expect(Object.keys(cfg.tasks.sms.slots.info!.options)).toEqual(["opening_hours", "address", "booking_link"]);
    expect(cfg.tasks.sms.recipients).toMatchObject({ allowedCountries: ["DE", "AT", "CH"], allowedNumberTypes: ["MOBILE"], blockedNumbers: [] });
    expect(cfg.server).toMatchObject({ port: 8080, host: "0.0.0.0" });
  });

  it("config/agent.en-US.yaml, with defaults filled in", () => {
    const cfg = loadConfigFile(EN_FILE);
    expect(cfg.language).toBe("en-US");
    expect(cfg.homeCountry).toBe("US");
    expect(cfg.tasks.sms.recipients.allowedCountries).toEqual(["US", "CA"]);
    expect(cfg.tasks.sms.recipients.allowedNumberTypes).toEqual(["MOBILE", "FIXED_LINE_OR_MOBILE"]);
    expect(Object.keys(cfg.tasks.sms.slots.info!.options)).toEqual(["opening_hours", "address", "booking_link"]);
    // Not in the file: schema defaults.
    expect(cfg.llm).toMatchObject({ maxTokens: 300, timeoutMs: 10000, maxRetries: 1, steps: {} });
    expect(cfg.tasks.sms.recipients.blockedNumbers).toEqual([]);
    expect(cfg.tasks.sms.recipients.perRecipient).toEqual({ max: 3, windowSeconds: 86400 });
    expect(cfg.server).toEqual({ port: 8080, host: "0.0.0.0", apiTokenHeader: "X-API-TOKEN", allowNoToken: false, maxBodyBytes: 65536, wsPath: "/ws", answerWithinMs: 800, maxHoldingLines: 2, holdingTimeoutSeconds: 2, leaseMs: 3000, listenBacklog: 2048, overload: { maxEventLoopDelayMs: 500, maxCpuCores: 0, maxInFlightTurns: 1000, maxNewCallsPerSecond: 100, callerIdName: "Hotline" } });
    expect(cfg.limits.maxLlmRequestsPerTurn).toBe(3);
    expect(cfg.ledger).toEqual({ path: "data/consent-ledger.jsonl", numbers: "full", retentionDays: 1826, optOutList: true });
    expect(cfg.tasks.sms.abuse.perPrefix).toEqual({ max: 10, windowSeconds: 3600, prefixDigits: 3 });
    expect(cfg.logLevel).toBe("info");
    expect(cfg.speech.userInputTimeoutSeconds).toBe(8);
    expect(cfg.agents.reception!.transfer).toEqual({ targets: {}, timeoutSeconds: 30 });
  });

  it("loadConfigFile resolves relative paths against the working directory", () => {
    expect(loadConfigFile(DEFAULT_CONFIG_PATH).language).toBe("de-DE");
  });

  it("parseConfig of the raw file equals loadConfigFile", () => {
    expect(parseConfig(rawDe())).toEqual(loadConfigFile(DE_FILE));
  });
});

describe("parseConfig errors name the field path", () => {
  it("llm.temperature = 5", () => {
    const err = configError((r) => (r.llm.temperature = 5));
    expect(err.name).toBe("ConfigError");
    expect(err.message).toContain("llm.temperature");
  });

  it("llm.temperature as a string", () => {
    expect(configError((r) => (r.llm.temperature = "warm")).message).toContain("llm.temperature");
  });

  it('language "fr-FR"', () => {
    const err = configError((r) => (r.language = "fr-FR"));
    expect(err.message).toMatch(/\blanguage\b/);
    expect(err.message).toContain("fr-FR");
  });

  it("missing language", () => {
    expect(configError((r) => delete r.language).message).toMatch(/\blanguage\b/);
  });

  it("unknown top-level key", () => {
    expect(configError((r) => (r.llmModel = "x")).message).toContain("llmModel");
  });

  it("unknown nested key names its parent and itself", () => {
    const msg = configError((r) => (r.llm.temprature = 0.3)).message;
    expect(msg).toContain("llm");
    expect(msg).toContain("temprature");
  });

  it("transfer.targets.<key>.number not in E.164 digits without +", () => {
    const msg = configError((r) => (r.agents = { reception: { transfer: { targets: { reception: { number: "+49 211 1234567", description: "reception desk" } } } } })).message;
    expect(msg).toContain("agents.reception.transfer.targets.reception.number");
    expect(msg).toContain("E.164");
  });

  it("transfer.targets with an unknown key in a target, and transfer.timeoutSeconds out of range", () => {
    expect(configError((r) => (r.agents = { reception: { transfer: { targets: { reception: { number: "4921112345600", description: "d", phone: "x" } } } } })).message).toContain("phone");
    expect(configError((r) => (r.agents = { reception: { transfer: { timeoutSeconds: 1 } } })).message).toContain("agents.reception.transfer.timeoutSeconds");
  });

  it("consent.question without {number}", () => {
    expect(configError((r) => (r.tasks.sms.consent.question = "Darf ich Ihnen eine SMS schicken?")).message).toContain("tasks.sms.consent.question");
  });

  it("consent.question with an unknown placeholder", () => {
    const msg = configError((r) => (r.tasks.sms.consent.question = "An {number} für {kunde}?")).message;
    expect(msg).toContain("tasks.sms.consent.question");
    expect(msg).toContain("{kunde}");
  });

  it("consent.question may use {business_name}", () => {
    const raw = rawDe();
    raw.tasks.sms.consent.question = "Darf {business_name} Ihnen an {number} schreiben?";
    expect(parseConfig(raw).tasks.sms.consent.question).toBe("Darf {business_name} Ihnen an {number} schreiben?");
  });

  it("sms.template with an undeclared placeholder {foo}", () => {
    const msg = configError((r) => (r.tasks.sms.template = "{business_name}: {info} {foo}")).message;
    expect(msg).toContain("tasks.sms.template");
    expect(msg).toContain("{foo}");
  });

  it("sms.template referring to a slot that is not declared", () => {
    const msg = configError((r) => (r.tasks.sms.slots = {})).message;
    expect(msg).toContain("tasks.sms.template");
    expect(msg).toContain("{info}");
  });

  it('recipients.allowedCountries ["XX"]', () => {
    const msg = configError((r) => (r.tasks.sms.recipients.allowedCountries = ["XX"])).message;
    expect(msg).toContain("tasks.sms.recipients.allowedCountries");
    expect(msg).toContain("XX");
  });

  it("recipients.allowedCountries empty", () => {
    expect(configError((r) => (r.tasks.sms.recipients.allowedCountries = [])).message).toContain("tasks.sms.recipients.allowedCountries");
  });

  it("recipients.allowedNumberTypes with an unknown type", () => {
    expect(configError((r) => (r.tasks.sms.recipients.allowedNumberTypes = ["CELL"])).message).toContain("tasks.sms.recipients.allowedNumberTypes");
  });

  it("recipients.blockedNumbers with '+'", () => {
    expect(configError((r) => (r.tasks.sms.recipients.blockedNumbers = ["+4915112345678"])).message).toContain("tasks.sms.recipients.blockedNumbers");
  });

  it("sms slot option keys must be lower_snake_case", () => {
    expect(configError((r) => (r.tasks.sms.slots.info.options = { "Opening-Hours": "x" })).message).toContain("tasks.sms.slots.info.options");
  });

  it("a slot without options", () => {
    expect(configError((r) => (r.tasks.sms.slots.info.options = {})).message).toContain("tasks.sms.slots.info.options");
  });

  it("sms.maxPerCall 0", () => {
    expect(configError((r) => (r.tasks.sms.maxPerCall = 0)).message).toContain("tasks.sms.maxPerCall");
  });

  it("speech.bargeIn.minimum_characters 0", () => {
    expect(configError((r) => (r.speech.bargeIn.minimum_characters = 0)).message).toContain("speech.bargeIn.minimum_characters");
  });

  it("server.port 70000", () => {
    expect(configError((r) => (r.server.port = 70000)).message).toContain("server.port");
  });

  it("several problems are all reported", () => {
    const msg = configError((r) => {
      r.llm.temperature = 5;
      r.language = "fr-FR";
    }).message;
    expect(msg).toContain("llm.temperature");
    expect(msg).toContain("language");
  });

  it("the message names the source", () => {
    const raw = rawDe();
    raw.language = "xx";
    expect(() => parseConfig(raw, "my-source.yaml")).toThrow(/my-source\.yaml/);
  });

  it("a non-object config", () => {
    expect(() => parseConfig(null)).toThrow(ConfigError);
    expect(() => parseConfig("language: de-DE")).toThrow(ConfigError);
  });
});

describe("each task and agent brings its own section (issue 19, point 3)", () => {
  it("the SMS task's settings sit under tasks.sms, the agents' under agents.<name>", () => {
    const cfg = loadConfigFile(DE_FILE);
    expect(Object.keys(cfg.tasks)).toEqual(["sms"]);
    expect(cfg.tasks.sms.template).toContain("{info}");
    expect(cfg.agents.reception!.transfer.targets).toEqual({});
    expect(cfg.agents.callback).toBeUndefined();
  });

  it.each([
    ["sms", { template: "x" }, "tasks.sms (template, slots, maxPerCall and retryTransientFailures sit directly under tasks.sms)"],
    ["consent", { question: "An {number}?" }, "tasks.sms.consent"],
    ["recipients", { allowedCountries: ["DE"] }, "tasks.sms.recipients"],
    ["abuse", {}, "tasks.sms.abuse"],
    ["transfer", { targets: {} }, "agents.reception.transfer"],
    ["callback", { endpoint: { url: "https://x.example/hook" } }, "agents.callback"],
  ])("a config still using the old top-level key %s is told where it went, never ignored", (key, value, to) => {
    const err = configError((r) => (r[key] = value));
    expect(err.message).toContain(`  ${key}: moved to ${to}`);
  });

  it("every old key in one config is named, one line each", () => {
    const err = configError((r) => Object.assign(r, { sms: {}, consent: {} }));
    expect(err.message.split("\n").filter((l) => l.includes("moved to"))).toHaveLength(2);
  });

  it("an unknown task or agent section is a config error naming it", () => {
    expect(configError((r) => (r.tasks.fax = {})).message).toMatch(/tasks: Unrecognized key\(s\) in object: 'fax'/);
    expect(configError((r) => (r.agents = { pharmacy: {} })).message).toMatch(/agents: Unrecognized key\(s\) in object: 'pharmacy'/);
  });

  it("agent: callback without its section names agents.callback", () => {
    expect(configError((r) => (r.agent = "callback")).message).toContain("agents.callback: agent: callback needs an agents.callback section");
  });

  it("agent: names only agents of the registry", () => {
    expect(configError((r) => (r.agent = "pharmacy")).message).toMatch(/agent: Invalid enum value\. Expected 'reception' \| 'callback'/);
  });
});

describe("applyEnv", () => {
  const base = (): AppConfig => loadConfigFile(DE_FILE);

  it("LLM_MODEL overrides llm.model", () => {
    expect(applyEnv(base(), { LLM_MODEL: "gpt-4.1" }).llm.model).toBe("gpt-4.1");
  });

  it("PORT overrides server.port", () => {
    expect(applyEnv(base(), { PORT: "9090" }).server.port).toBe(9090);
    expect(applyEnv(base(), { PORT: "0" }).server.port).toBe(0);
  });

  it("HOST overrides server.host", () => {
    expect(applyEnv(base(), { HOST: "127.0.0.1" }).server.host).toBe("127.0.0.1");
  });

  it("all three together", () => {
    const cfg = applyEnv(base(), { LLM_MODEL: "m", PORT: "1234", HOST: "::" });
    expect(cfg.llm.model).toBe("m");
    expect(cfg.server).toMatchObject({ port: 1234, host: "::" });
  });

  it("no overrides leaves the config as it was", () => {
    expect(applyEnv(base(), {})).toEqual(base());
  });

  it("empty values are ignored", () => {
    const cfg = applyEnv(base(), { LLM_MODEL: "", PORT: "", HOST: "" });
    expect(cfg.llm.model).toBe("gpt-4o-mini");
    expect(cfg.server).toMatchObject({ port: 8080, host: "0.0.0.0" });
  });

  it("does not mutate its input", () => {
    const cfg = base();
    applyEnv(cfg, { LLM_MODEL: "other", PORT: "1", HOST: "h" });
    expect(cfg.llm.model).toBe("gpt-4o-mini");
    expect(cfg.server.port).toBe(8080);
    expect(cfg.server.host).toBe("0.0.0.0");
  });

  it("LOG_LEVEL overrides logLevel from the file", () => {
    expect(base().logLevel).toBe("info");
    expect(applyEnv(base(), { LOG_LEVEL: "debug" }).logLevel).toBe("debug");
    expect(applyEnv(base(), { LOG_LEVEL: "silent" }).logLevel).toBe("silent");
    expect(applyEnv(base(), { LOG_LEVEL: "" }).logLevel).toBe("info");
  });

  it.each([["verbose"], ["INFO"], ["warning"]])("LOG_LEVEL %j → ConfigError naming LOG_LEVEL and the levels", (level) => {
    expect(() => applyEnv(base(), { LOG_LEVEL: level })).toThrow(ConfigError);
    expect(() => applyEnv(base(), { LOG_LEVEL: level })).toThrow(
      `invalid environment: LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent, got "${level}"`,
    );
  });

  it.each([["abc"], ["80.5"], ["-1"], ["65536"], ["70000"]])('PORT %j → ConfigError mentioning PORT', (port) => {
    let err: unknown;
    try {
      applyEnv(base(), { PORT: port });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain("PORT");
    expect((err as Error).message).toContain(port);
  });
});

describe("configPathFrom", () => {
  it("--config x", () => {
    expect(configPathFrom(["node", "main.ts", "--config", "x.yaml"], {})).toBe("x.yaml");
  });

  it("--config=x", () => {
    expect(configPathFrom(["node", "main.ts", "--config=x.yaml"], {})).toBe("x.yaml");
  });

  it("CONFIG env", () => {
    expect(configPathFrom(["node", "main.ts"], { CONFIG: "env.yaml" })).toBe("env.yaml");
  });

  it("default: config/agent.yaml in the package, whatever the working directory", () => {
    expect(configPathFrom(["node", "main.ts"], {})).toBe(DE_FILE);
    expect(DEFAULT_CONFIG_PATH).toBe("config/agent.yaml");
  });

  it("empty CONFIG falls back to the default", () => {
    expect(configPathFrom([], { CONFIG: "" })).toBe(DE_FILE);
  });

  it("--config wins over CONFIG", () => {
    expect(configPathFrom(["--config", "arg.yaml"], { CONFIG: "env.yaml" })).toBe("arg.yaml");
    expect(configPathFrom(["--config=arg.yaml"], { CONFIG: "env.yaml" })).toBe("arg.yaml");
  });

  it("--config without a path is a ConfigError", () => {
    expect(() => configPathFrom(["node", "main.ts", "--config"], {})).toThrow(ConfigError);
  });
});

describe("loadConfigFile errors name the file", () => {
  it("a missing file", () => {
    const path = join(tmp, "does-not-exist.yaml");
    let err: unknown;
    try {
      loadConfigFile(path);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain(path);
  });

  it("a relative missing path is reported as the resolved absolute path", () => {
    expect(() => loadConfigFile("config/nope.yaml")).toThrow(resolve("config/nope.yaml"));
  });

  it("invalid YAML", () => {
    const path = join(tmp, "broken.yaml");
    writeFileSync(path, "language: de-DE\nllm: [unclosed\n  model: x\n");
    let err: unknown;
    try {
      loadConfigFile(path);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain(path);
    expect((err as Error).message).toMatch(/YAML/);
  });

  it("valid YAML with an invalid field names the file and the field", () => {
    const path = join(tmp, "bad-field.yaml");
    writeFileSync(path, readFileSync(DE_FILE, "utf8").replace("temperature: 0.2", "temperature: 5"));
    let err: unknown;
    try {
      loadConfigFile(path);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain(path);
    expect((err as Error).message).toContain("llm.temperature");
  });

  it("an empty file is a ConfigError, not a crash", () => {
    const path = join(tmp, "empty.yaml");
    writeFileSync(path, "");
    expect(() => loadConfigFile(path)).toThrow(ConfigError);
  });
});
