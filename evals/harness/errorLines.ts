import type { Language } from "../../src/config/schema.js";
import { PromptLibrary } from "../../src/engine/promptLibrary.js";
import { SCRIPTED_APOLOGY } from "../../src/llm/scriptedModel.js";

/**
 * Lines that tell the caller something went wrong. A scenario fails when the caller hears one
 * (unless its `expect.errorLinesAllowed` says the scenario provokes one on purpose): a call that
 * reaches the right outcome through "Entschuldigung, das hat nicht geklappt" is not a pass.
 *
 * The service's own apologies come from prompts/<language>/lines.md, so a reworded line is still
 * caught; the offline scripted model's apology after a failed tool comes from the model itself.
 */
const SERVICE_ERROR_LINES = ["fallback", "model_unavailable", "model_unavailable_transfer", "store_unavailable", "holding_gave_up"] as const;

const cache = new Map<string, string[]>();

export function errorLines(promptsDir: string, language: Language): string[] {
  const key = `${promptsDir}\0${language}`;
  let lines = cache.get(key);
  if (!lines) {
    const prompts = new PromptLibrary(promptsDir, language);
    // A line with a {placeholder} cannot be matched word for word; none of these has one.
    const service = SERVICE_ERROR_LINES.filter((k) => prompts.hasLine(k)).flatMap((k) => {
      try {
        return [prompts.line(k)];
      } catch {
        return [];
      }
    });
    lines = [...service, language === "de-DE" ? SCRIPTED_APOLOGY.de : SCRIPTED_APOLOGY.en];
    cache.set(key, lines);
  }
  return lines;
}

/** The spoken lines that carry an error line (a speak action may join it with other lines). */
export function heardErrorLines(spoken: string[], lines: string[]): string[] {
  return spoken.filter((s) => lines.some((l) => s.includes(l)));
}
