import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { runTrial, type TrialResult } from "../evals/harness/runTrial.js";
import { loadScenarios, type Scenario } from "../evals/harness/scenario.js";
import { loadConfigFile } from "../src/appConfig.js";
import type { AppConfig } from "../src/appConfig.js";
import type { ChatModel, ChatRequest, ChatResponse } from "../src/llm/chatModel.js";
import { OpenAIChatModel } from "../src/llm/openaiChatModel.js";
import { SCRIPTED_APOLOGY, ScriptedModel } from "../src/llm/scriptedModel.js";
import { FakeOpenAIServer, reply } from "./support/fakeOpenAI.js";
import { testConfig } from "./support/harness.js";

/**
 * Issue 22, points 1 and 2 of "Must work": the offline model understands numbers as the parser
 * does and behaves after a "no" as the prompts ask; the scenarios check what the caller hears
 * then, and any error line fails a scenario. Every trial runs through the real webhook, engine
 * and gate (evals/harness/runTrial.ts).
 */

const scenarios = loadScenarios("evals/scenarios");
const scenario = (id: string): Scenario => scenarios.find((s) => s.id === id)!;
const configs: Record<string, AppConfig> = { "de-DE": loadConfigFile("config/agent.yaml"), "en-US": loadConfigFile("config/agent.en-US.yaml") };
const trial = (s: Scenario, model: ChatModel, config = configs[s.language]!) => runTrial(s, { config, model, modelName: "test", trial: 1 });

const spokenLines = (r: TrialResult) => r.transcript.flatMap((t) => t.actions).flatMap((a) => (a.type === "speak" && a.text ? [a.text] : []));
const sends = (r: TrialResult) => r.transcript.flatMap((t) => t.actions).filter((a) => a.type === "send_sms");
/** The example answer the main prompt gives for an SMS request after a "no" (the "> " line after the rule). */
const afterNoLine = (language: "de-DE" | "en-US") => /abgelehnt.*\n> (.+)|declined.*\n> (.+)/.exec(readFileSync(`prompts/${language}/reception/main.md`, "utf8"))!.slice(1).find(Boolean)!;

/**
 * The scripted model as it was before issue 22: after a "no" it starts the SMS flow again when
 * asked, and answers the refusal with an apology.
 */
class RestartsAfterNo implements ChatModel {
  private readonly inner = new ScriptedModel();
  async complete(req: ChatRequest): Promise<ChatResponse> {
    const last = req.messages.at(-1);
    const answer = (text: string, toolCalls: ChatResponse["toolCalls"] = []): ChatResponse => ({ text, toolCalls, usage: { promptTokens: 1, completionTokens: 1 }, model: "restarts-after-no" });
    if (last?.role === "tool" && /^Refused:/.test(last.content)) return answer(SCRIPTED_APOLOGY.de);
    const declined = /the caller declined or cancelled the SMS/.test(req.system);
    if (declined && last?.role === "user" && /SMS/i.test(last.content) && req.tools.some((t) => t.name === "start_sms_flow")) {
      return answer("", [{ id: "again", name: "start_sms_flow", arguments: JSON.stringify({ info: "address" }) }]);
    }
    return this.inner.complete(req);
  }
}

describe("after a no, the caller hears what the prompts ask, and an error line fails the scenario", () => {
  it("decline-de passes with the scripted model: one consent question, the address by voice with the prompt's line, no offer, no error line", async () => {
    const r = await trial(scenario("decline-de"), new ScriptedModel());
    expect(r.failures).toEqual([]);
    const lines = spokenLines(r);
    const later = lines.at(-2)!; // the answer to "Ach, schicken Sie es doch per SMS." (then the goodbye)
    expect(later).toContain(afterNoLine("de-DE"));
    expect(later).toContain("Musterstraße 1, 40210 Düsseldorf");
    expect(lines.filter((l) => /^Darf ich Ihnen/.test(l))).toHaveLength(1);
    expect(lines.join("\n")).not.toMatch(/per SMS\?|nicht geklappt|Störung/);
    // The prompt says to call no tool then: the model did not start the SMS flow again.
    expect(r.transcript.flatMap((t) => t.toolCalls).filter((c) => c.name === "start_sms_flow")).toHaveLength(1);
  });

  it("decline-de fails when the caller hears an apology after the refused restart (the defect of issue 22)", async () => {
    const r = await trial(scenario("decline-de"), new RestartsAfterNo());
    expect(r.passed).toBe(false);
    expect(r.failures).toContain(`the caller heard an error line: "${SCRIPTED_APOLOGY.de}"`);
    // The gate held: the restart was refused, nothing was sent.
    expect(sends(r)).toEqual([]);
    expect(r.transcript.flatMap((t) => t.toolCalls).filter((c) => c.name === "start_sms_flow")).toHaveLength(2);
  });

  it("decline-de fails on the service's own error line (a model down for the later request), unless the scenario allows error lines", async () => {
    const fake = new FakeOpenAIServer();
    const baseURL = await fake.start();
    try {
      let n = 0;
      fake.onRequest((body) => {
        const tools = (body.tools ?? []).map((t) => t.function.name);
        if (tools.includes("record_consent")) return reply.tool("record_consent", { consented: false });
        n++;
        if (n === 1) return reply.tool("start_sms_flow", { info: "address" });
        if (n === 2) return reply.error(500); // "Ach, schicken Sie es doch per SMS."
        return reply.tool("end_call");
      });
      const model = new OpenAIChatModel({ apiKey: "test", baseURL, timeoutMs: 5000, maxRetries: 0 });
      const config = testConfig();
      const r = await trial(scenario("decline-de"), model, config);
      const technical = spokenLines(r).find((l) => /technische Störung/.test(l));
      expect(technical).toBeDefined();
      expect(r.failures).toContain(`the caller heard an error line: "${technical}"`);

      n = 0;
      const allowed = scenario("decline-de");
      const r2 = await trial({ ...allowed, expect: { ...allowed.expect, errorLinesAllowed: true } }, model, config);
      expect(r2.failures.filter((f) => /error line/.test(f))).toEqual([]);
    } finally {
      await fake.close();
    }
  });

  it("decline-later-request (de, en): a question after the no gets no SMS offer, and the later request gets the information by voice", async () => {
    for (const [id, language, fact] of [
      ["decline-later-request-de", "de-DE", "Öffnungszeiten: Montag bis Freitag"],
      ["decline-later-request-en", "en-US", "Address: 1 Main Street"],
    ] as const) {
      const r = await trial(scenario(id), new ScriptedModel());
      expect(r.failures, id).toEqual([]);
      const answer = r.transcript.find((t) => /per SMS schicken\?$|after all\?$/.test(t.caller))!.actions.find((a) => a.type === "speak") as { text: string };
      expect(answer.text).toContain(afterNoLine(language));
      expect(answer.text).toContain(fact);
      expect(sends(r)).toEqual([]);
    }
  });
});

describe("numbers in pairs, hundreds and corrections reach the SMS as the parser reads them", () => {
  it('"Nein, bitte an eine andere Nummer: null eins sieben sechs, achtundneunzig, …" then "Ja": the SMS goes to 4917698764512', async () => {
    const r = await trial(scenario("number-pairs-correction-de"), new ScriptedModel());
    expect(r.failures).toEqual([]);
    expect(sends(r)).toMatchObject([{ type: "send_sms", phone_number: "4917698764512" }]);
    // The consent question named that number, read back in digit groups, before the yes.
    expect(spokenLines(r)).toContain("Darf ich Ihnen die Informationen per SMS an die Nummer 0 1 7 6, 9 8 7, 6 4 5, 1 2 schicken?");
    expect(spokenLines(r).join("\n")).not.toMatch(/Wie lautet die Handynummer/);
  });

  it('"Lieber an …" with pairs answers the consent question with that number, never the caller\'s own', async () => {
    const r = await trial(scenario("number-pairs-instead-de"), new ScriptedModel());
    expect(r.failures).toEqual([]);
    expect(sends(r).map((a) => (a as { phone_number: string }).phone_number)).toEqual(["4917698764512"]);
  });

  it("pairs and hundreds in the number step: one question for the number, one consent question, the SMS to 491701234567", async () => {
    const r = await trial(scenario("happy-spoken-pairs-hundreds-de"), new ScriptedModel());
    expect(r.failures).toEqual([]);
    expect(sends(r).map((a) => (a as { phone_number: string }).phone_number)).toEqual(["491701234567"]);
  });
});

describe("the scenario counts the docs state (docs/evals.md) are the suite's", () => {
  const readme = readFileSync("docs/evals.md", "utf8");
  it("states as many reception scenarios (without the self-check) and callback scenarios as evals/scenarios holds", () => {
    const reception = scenarios.filter((s) => s.agent === "reception" && !s.expectFailure).length;
    const callback = scenarios.filter((s) => s.agent === "callback").length;
    expect(Number(/The suite has (\d+) scenarios/.exec(readme)?.[1])).toBe(reception);
    expect(Number(/The callback agent has (\d+)\s+more/.exec(readme)?.[1])).toBe(callback);
  });
});
