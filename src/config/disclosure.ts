import { readFileSync } from "node:fs";
import { join } from "node:path";
import { packageRoot } from "./paths.js";
import type { BaseConfig, Language } from "./schema.js";
import { ConfigError } from "../core/errors.js";

/**
 * Callers must learn at the start of the call that they speak with an AI (EU AI Act Art. 50).
 *
 * The rule, checked at start-up (parseConfig) and applied on every call (openingLine):
 * - a text discloses when it contains one of the terms listed in prompts/<language>/disclosure.md
 *   as a whole word (case-insensitive; no letter or digit directly before or after it);
 * - a greeting that discloses is the opening line as it is;
 * - otherwise `disclosure.line` is spoken first, in the same `speak` action: line + " " + greeting;
 * - a greeting that does not disclose without a `disclosure.line`, or a `disclosure.line` that
 *   does not disclose itself, stops start-up with a ConfigError naming the field.
 * The terms live in prompts/ rather than here so that wording stays out of code.
 */

const wordsByLanguage = new Map<Language, string[]>();

function disclosureFile(language: Language): string {
  return join(packageRoot(), "prompts", language, "disclosure.md");
}

/** The terms that count as saying "you speak with an AI": the `- ` list items of the language's disclosure.md. */
export function aiDisclosureTerms(language: Language): string[] {
  let words = wordsByLanguage.get(language);
  if (!words) {
    const text = readFileSync(disclosureFile(language), "utf8");
    words = [...text.matchAll(/^- (.+)$/gm)].map((m) => m[1]!.trim().toLowerCase()).filter(Boolean);
    if (words.length === 0) throw new ConfigError(`${disclosureFile(language)} lists no terms ("- term" lines)`);
    wordsByLanguage.set(language, words);
  }
  return words;
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** Whether `text` tells the caller they speak with an AI, by the rule above. */
export function disclosesAi(text: string, language: Language): boolean {
  const lower = text.toLowerCase();
  return aiDisclosureTerms(language).some((term) => new RegExp(`(?<![\\p{L}\\p{N}])${escape(term)}(?![\\p{L}\\p{N}])`, "u").test(lower));
}

/** Config fields that break the rule, with the reason; empty when the config discloses. */
export function disclosureProblems(cfg: BaseConfig): Array<{ path: string; message: string }> {
  const problems: Array<{ path: string; message: string }> = [];
  const where = `none of the terms in prompts/${cfg.language}/disclosure.md`;
  const line = cfg.disclosure.line;
  if (line !== undefined && !disclosesAi(line, cfg.language)) {
    problems.push({ path: "disclosure.line", message: `does not say that callers speak with an AI (${where})` });
  }
  if (!disclosesAi(cfg.greeting, cfg.language) && line === undefined) {
    problems.push({ path: "greeting", message: `does not say that callers speak with an AI (${where}); add it, or set disclosure.line` });
  }
  return problems;
}

/** What the caller hears first: the greeting, after the disclosure line when the greeting does not disclose. */
export function openingLine(cfg: BaseConfig): string {
  const fill = (t: string) => t.replaceAll("{business_name}", cfg.business.name);
  const line = cfg.disclosure.line;
  if (line === undefined || disclosesAi(cfg.greeting, cfg.language)) return fill(cfg.greeting);
  return `${fill(line)} ${fill(cfg.greeting)}`;
}
