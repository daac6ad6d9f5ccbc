import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { aiDisclosureTerms, disclosesAi, openingLine } from "../src/config/disclosure.js";
import { ConfigError, applyEnv, loadConfigFile } from "../src/appConfig.js";
import { LANGUAGES, type Language } from "../src/config/schema.js";
import { PromptLibrary } from "../src/engine/promptLibrary.js";
import { ScriptedModel } from "../src/llm/scriptedModel.js";
import { PROMPTS_DIR } from "../src/service.js";
import { ev } from "./support/events.js";
import { spoken, startTestService, testConfig, type TestService } from "./support/harness.js";

/** EU AI Act Art. 50: callers hear that they speak with an AI; a config that would not say so does not start. */

const NOT_DISCLOSING_DE = "Guten Tag, hier ist die {business_name}. Wie kann ich Ihnen helfen?";
const LINE_DE = "Hinweis: Sie sprechen mit einer KI.";

function configError(patch: Record<string, unknown>, file?: string): ConfigError {
  try {
    testConfig(patch, file);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error("expected a ConfigError");
}

describe("the shipped configs tell callers they speak with an AI", () => {
  it.each([["config/agent.yaml"], ["config/agent.en-US.yaml"]])("%s: the greeting discloses, no extra line", (file) => {
    const cfg = loadConfigFile(file);
    expect(cfg.disclosure.line).toBeUndefined();
    expect(disclosesAi(cfg.greeting, cfg.language)).toBe(true);
    expect(openingLine(cfg)).toBe(cfg.greeting.replaceAll("{business_name}", cfg.business.name));
  });

  it("German: 'Sie sprechen mit der KI-Assistenz'; English: 'you're speaking with the AI assistant'", () => {
    expect(openingLine(loadConfigFile("config/agent.yaml"))).toBe("Guten Tag, Sie sprechen mit der KI-Assistenz der Praxis Dr. Muster. Wie kann ich Ihnen helfen?");
    expect(openingLine(loadConfigFile("config/agent.en-US.yaml"))).toBe("Hello, you're speaking with the AI assistant of Muster Dental. How can I help you?");
  });
});

describe("the disclosure rule: a term from prompts/<language>/disclosure.md, as a whole word, any case", () => {
  it.each(LANGUAGES.map((l) => [l]))("%s lists terms", (language) => {
    expect(aiDisclosureTerms(language).length).toBeGreaterThan(3);
  });

  it.each([
    ["de-DE", "Sie sprechen mit einer KI-Assistenz.", true],
    ["de-DE", "Hier spricht die ki der Praxis.", true],
    ["de-DE", "Ich bin ein Programm mit künstlicher Intelligenz.", true],
    ["de-DE", "Willkommen in Kiel, hier ist die Praxis.", false],
    ["de-DE", "Guten Tag, hier ist die Telefonassistenz der Praxis.", false],
    ["en-US", "Hello, you're speaking with an AI assistant.", true],
    ["en-US", "This call is handled by an automated assistant.", true],
    ["en-US", "Hello, this is the A.I. of Muster Dental.", true],
    ["en-US", "Hello, as I said, this is Muster Dental.", false],
    ["en-US", "Hello, this is the phone assistant of Muster Dental.", false],
  ] as const)("%s %j → %s", (language, text, discloses) => {
    expect(disclosesAi(text, language)).toBe(discloses);
  });
});

describe("start-up check (parseConfig, so every entry point)", () => {
  it("a greeting that does not disclose, without disclosure.line → ConfigError naming greeting", () => {
    const err = configError({ greeting: NOT_DISCLOSING_DE });
    expect(err.message).toMatch(/^\s+greeting: does not say that callers speak with an AI .*add it, or set disclosure\.line$/m);
    expect(err.message).toContain("prompts/de-DE/disclosure.md");
  });

  it("the same in English", () => {
    const err = configError({ greeting: "Hello, this is the phone assistant of {business_name}." }, "config/agent.en-US.yaml");
    expect(err.message).toMatch(/greeting: does not say that callers speak with an AI/);
    expect(err.message).toContain("prompts/en-US/disclosure.md");
  });

  it("a disclosure.line that does not disclose itself → ConfigError naming disclosure.line", () => {
    const err = configError({ greeting: NOT_DISCLOSING_DE, disclosure: { line: "Hinweis: Dieses Gespräch wird nicht aufgezeichnet." } });
    expect(err.message).toMatch(/^\s+disclosure\.line: does not say that callers speak with an AI/m);
    expect(err.message).not.toMatch(/^\s+greeting:/m);
  });

  it("an unknown placeholder in disclosure.line names the field", () => {
    const err = configError({ disclosure: { line: "Sie sprechen mit der KI von {firma}." } });
    expect(err.message).toMatch(/disclosure\.line: placeholder \{firma\}/);
  });

  it("an unknown field under disclosure names it", () => {
    const err = configError({ disclosure: { lines: LINE_DE } });
    expect(err.message).toMatch(/disclosure: Unrecognized key\(s\) in object: 'lines'/);
  });

  it("a greeting that does not disclose, with a disclosure.line → loads; the line comes first", () => {
    const cfg = testConfig({ greeting: NOT_DISCLOSING_DE, disclosure: { line: LINE_DE } });
    expect(openingLine(cfg)).toBe(`${LINE_DE} Guten Tag, hier ist die Praxis Dr. Muster. Wie kann ich Ihnen helfen?`);
  });

  it("a greeting that discloses itself is not prefixed, even with a disclosure.line", () => {
    const cfg = testConfig({ disclosure: { line: LINE_DE } });
    expect(openingLine(cfg)).toBe("Guten Tag, Sie sprechen mit der KI-Assistenz der Praxis Dr. Muster. Wie kann ich Ihnen helfen?");
  });

  it("the business name is no disclosure: the check reads the greeting with its placeholder", () => {
    const err = configError({ business: { name: "KI-Zentrum Muster" }, greeting: "Guten Tag, hier ist {business_name}." });
    expect(err.message).toMatch(/greeting: does not say/);
  });

  it("applyEnv parses again and keeps the result", () => {
    const cfg = testConfig({ greeting: NOT_DISCLOSING_DE, disclosure: { line: LINE_DE } });
    expect(openingLine(applyEnv(cfg, { LLM_MODEL: "other" }))).toBe(openingLine(cfg));
  });
});

describe("session_start speaks the disclosure line before a greeting that does not disclose", () => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await startTestService({ config: testConfig({ greeting: NOT_DISCLOSING_DE, disclosure: { line: LINE_DE } }) });
  });
  afterAll(async () => svc.close());

  it("one speak action: the line, then the greeting, and no model request", async () => {
    const r = await svc.post(ev.start("disclose-1"));
    expect(r.status).toBe(200);
    expect(spoken(r.actions)).toEqual([`${LINE_DE} Guten Tag, hier ist die Praxis Dr. Muster. Wie kann ich Ihnen helfen?`]);
    expect(svc.fake.requests).toHaveLength(0);
  });
});

describe("asked whether a human is on the line, the agent says truthfully that it is an AI", () => {
  it.each([
    ["de-DE", "Bin ich mit einem Menschen verbunden?", /^Nein, Sie sprechen mit einer KI-Assistenz\./],
    ["de-DE", "Sind Sie ein Roboter?", /KI-Assistenz/],
    ["en-US", "Am I talking to a real person?", /^No, you're speaking with an AI assistant\./],
    ["en-US", "Is this a bot?", /AI assistant/],
  ] as const)("%s: the persona forbids posing as a human, the main step quotes the truthful answer; the scripted model says it for %j", async (language: Language, question, answer) => {
    const prompts = new PromptLibrary(PROMPTS_DIR, language);
    const persona = prompts.persona;
    expect(persona).toMatch(language === "de-DE" ? /Du bist eine KI, kein Mensch/ : /You are an AI, not a human/);
    // The system prompt of the step that answers questions: persona + main step prompt.
    const system = `${persona}\n\n${prompts.stepPrompt("reception/main")}`;
    const reply = await new ScriptedModel().complete({
      model: "scripted",
      temperature: 0,
      maxTokens: 100,
      system,
      messages: [{ role: "user", content: question }],
      tools: [],
    });
    expect(reply.toolCalls).toEqual([]);
    expect(reply.text).toMatch(answer);
    expect(prompts.stepPrompt("reception/main")).toContain(reply.text);
  });
});
