import type { ChatModel } from "../../src/llm/chatModel.js";
import type { Scenario } from "./scenario.js";

/**
 * An exploratory caller: a model plays a persona with a goal instead of the scripted rules.
 * It answers with what the caller says next, or HANGUP.
 */
export async function personaLine(model: ChatModel, modelName: string, scenario: Scenario, agentLines: string[]): Promise<string | undefined> {
  const p = scenario.persona!;
  const system = [
    `You are role-playing a phone caller. ${p.description}`,
    `Your goal: ${p.goal}`,
    `Speak ${scenario.language === "de-DE" ? "German" : "English"}, one short sentence per turn, like on the phone.`,
    "Reply with exactly what you say next. When your goal is reached or the call is over, reply HANGUP.",
  ].join("\n");
  const messages = agentLines.map((l) => ({ role: "user" as const, content: l }));
  const res = await model.complete({ model: p.model ?? modelName, temperature: 0.7, maxTokens: 80, system, messages, tools: [] });
  const line = res.text.trim();
  return !line || /^HANGUP\b/i.test(line) ? undefined : line;
}

/** Offline stand-in for the persona model: states the goal, agrees to questions, then says goodbye. */
export class ScriptedPersonaModel implements ChatModel {
  async complete(req: Parameters<ChatModel["complete"]>[0]) {
    const goal = /Your goal: (.+)/.exec(req.system)?.[1] ?? "";
    const german = /Speak German/.test(req.system);
    const turns = req.messages.length;
    const last = req.messages.at(-1)?.content ?? "";
    let text: string;
    if (turns <= 1) text = goal;
    else if (/abgeschickt|I've sent/i.test(last)) text = german ? "Danke, das war's. Tschüss!" : "Thanks, that's all. Bye!";
    else if (/\?\s*$/.test(last)) text = german ? "Ja, gerne." : "Yes, please.";
    else text = "HANGUP";
    return { text, toolCalls: [], usage: { promptTokens: 0, completionTokens: 0 }, model: "scripted-persona" };
  }
}
