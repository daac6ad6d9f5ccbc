import type { ToolSpec } from "./chatModel.js";
import { parameterTexts } from "./toolSpecText.js";

/**
 * What a person playing the model typed, read into the answer a model would give. Only the
 * typing is checked here (a tool named, JSON that parses, name=value pairs); whether the
 * arguments are valid is the engine's call, exactly as for a real model's arguments.
 */
export type PersonAnswer =
  | { kind: "call"; name: string; arguments: string; offered: boolean }
  | { kind: "text"; text: string }
  | { kind: "show"; what: "request" | "prompt" | "history" }
  | { kind: "empty" }
  | { kind: "error"; problem: string };

export const ANSWER_USAGE = [
  "answer as the model:",
  "  <tool or its number> [{JSON arguments} | name=value …]   call a tool, e.g. 1 consented=true, collect_phone_number phone_number=\"0170 1234567\"",
  "  say <words>                                              speak to the caller",
  "  ?  the tools again   ?prompt  the step's prompt   ?history  the conversation the model gets",
];

/** The one-line reminder once the full usage was shown. */
export const ANSWER_HINT = "answer: <tool or number> [{JSON} | name=value …] · say <words> · ? tools in full · ?prompt · ?history";

const NAME = /^[A-Za-z_][\w.-]*$/;
/** `name=value`, the value a "quoted string" (JSON escapes) or anything up to the next space. */
const PAIR = /\s*([A-Za-z_]\w*)=("(?:[^"\\]|\\.)*"|\S+)/y;

export function readPersonAnswer(line: string, tools: readonly ToolSpec[]): PersonAnswer {
  const text = line.trim();
  if (!text) return { kind: "empty" };
  if (text === "?") return { kind: "show", what: "request" };
  if (text === "?prompt") return { kind: "show", what: "prompt" };
  if (text === "?history") return { kind: "show", what: "history" };
  const say = /^say(?:\s+([\s\S]*))?$/.exec(text);
  if (say) {
    const words = say[1]?.trim();
    return words ? { kind: "text", text: words } : { kind: "error", problem: "say what? e.g. say Gern, einen Moment." };
  }
  const head = text.split(/\s+/)[0] ?? "";
  const argText = text.slice(head.length).trim();
  let spec: ToolSpec | undefined;
  let name = head;
  if (/^\d+$/.test(head)) {
    spec = tools[Number(head) - 1];
    if (!spec) return { kind: "error", problem: tools.length ? `there is no tool ${head}: pick 1-${tools.length}` : "this step offers no tools: answer with say …" };
    name = spec.name;
  } else {
    if (!NAME.test(head)) return { kind: "error", problem: `"${head}" is neither a tool nor "say …"` };
    spec = tools.find((t) => t.name === head);
  }
  const args = readArguments(argText, spec);
  if ("problem" in args) {
    // Most likely words meant for the caller, typed without "say".
    if (!spec) return { kind: "error", problem: `"${head}" is not a tool of this step, and words to speak start with "say"` };
    return { kind: "error", problem: `${name}: ${args.problem}` };
  }
  return { kind: "call", name, arguments: JSON.stringify(args.value), offered: spec !== undefined };
}

/** `{…}` as JSON, or name=value pairs; a bare value is a string where the schema takes one, else read as JSON. */
function readArguments(text: string, spec: ToolSpec | undefined): { value: Record<string, unknown> } | { problem: string } {
  if (!text) return { value: {} };
  if (text.startsWith("{")) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      return { problem: `the arguments are not valid JSON (${(e as Error).message})` };
    }
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) return { problem: "the arguments must be one JSON object" };
    return { value: parsed as Record<string, unknown> };
  }
  const takesString = new Map((spec ? parameterTexts(spec) : []).map((p) => [p.name, p.jsonTypes.includes("string")]));
  const value: Record<string, unknown> = {};
  PAIR.lastIndex = 0;
  let at = 0;
  while (at < text.length) {
    PAIR.lastIndex = at;
    const m = PAIR.exec(text);
    if (!m) return { problem: `expected name=value pairs or one JSON object, not "${text.slice(at).trim()}"` };
    const [, key, raw] = m as unknown as [string, string, string];
    if (raw.startsWith('"')) {
      try {
        value[key] = JSON.parse(raw);
      } catch (e) {
        return { problem: `${key}: the quoted value is not a valid JSON string (${(e as Error).message})` };
      }
    } else value[key] = takesString.get(key) ? raw : readBare(raw);
    at = PAIR.lastIndex;
  }
  return { value };
}

/** true, 3, null, [1,2] as JSON; anything else (ja, 0170…) as the string it is. */
function readBare(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}
