import { readFileSync } from "node:fs";
import { AgentError } from "../core/errors.js";

/**
 * Reads a markdown file made of `## key` sections into a map of key → text.
 * Used for fixed lines and model notes, so wording lives in prompts/ and not in code.
 */
export function readSections(path: string): Record<string, string> {
  const text = readFileSync(path, "utf8");
  const out: Record<string, string> = {};
  let key: string | undefined;
  let buf: string[] = [];
  const flush = () => {
    if (key !== undefined) out[key] = buf.join("\n").trim();
  };
  for (const line of text.split(/\r?\n/)) {
    const m = /^##\s+([a-z0-9_]+)\s*$/.exec(line);
    if (m) {
      flush();
      key = m[1]!;
      buf = [];
    } else if (key !== undefined) {
      buf.push(line);
    }
  }
  flush();
  return out;
}

export class MissingTemplateValueError extends AgentError {
  readonly code = "template_value_missing";
  constructor(name: string, where: string) {
    super(`template ${where} uses {${name}} but no value was given`);
  }
}

/** Fill `{name}` placeholders; a placeholder without a value is a bug and throws. */
export function fillTemplate(template: string, values: Record<string, string | number>, where: string): string {
  return template.replace(/\{([a-z_][a-z0-9_]*)\}/g, (_, name: string) => {
    const v = values[name];
    if (v === undefined) throw new MissingTemplateValueError(name, where);
    return String(v);
  });
}
