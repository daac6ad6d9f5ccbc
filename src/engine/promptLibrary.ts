import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { Language } from "../core/callState.js";
import type { RuleLists } from "./define.js";
import { fillTemplate, readSections } from "./markdownSections.js";
import { FlowDefinitionError } from "./errors.js";

/**
 * Everything the model reads and every fixed line the caller hears, loaded from prompts/.
 * Loaded once at start-up; a missing file or section is a start-up error, not a mid-call one.
 *
 * Per language, each task and agent has its own folder (prompts/<lang>/<name>/: its step prompts,
 * named by steps as "<name>/<prompt>", and its lines.md); the lines shared by every flow (the
 * engine's) and persona.md sit in prompts/<lang>/ itself. All lines.md files form one set of
 * keys: a key in two of them is a start-up error naming both.
 */
export class PromptLibrary {
  private readonly stepPrompts = new Map<string, string>();
  private readonly lists = new Map<string, RuleLists>();
  readonly persona: string;
  private readonly lines: Record<string, string>;
  private readonly toolDescriptions: Record<string, string>;
  private readonly notes: Record<string, string>;

  constructor(
    readonly dir: string,
    readonly language: Language,
  ) {
    const langDir = join(dir, language);
    if (!existsSync(langDir)) throw new FlowDefinitionError(`no prompts for language ${language}: ${langDir} does not exist`);
    this.persona = readFileSync(join(langDir, "persona.md"), "utf8").trim();
    this.lines = readLines(langDir);
    this.toolDescriptions = readSections(join(dir, "tools.md"));
    this.notes = readSections(join(dir, "model-notes.md"));
  }

  /** A step's prompt: prompts/<lang>/<name>.md, `name` usually "<task or agent>/<prompt>". */
  stepPrompt(name: string): string {
    let p = this.stepPrompts.get(name);
    if (p === undefined) {
      if (!/^[a-z0-9_]+(\/[a-z0-9_]+)?$/.test(name)) throw new FlowDefinitionError(`step prompt "${name}": a name is "<folder>/<prompt>" or "<prompt>" in lower_snake_case`);
      p = readFileSync(join(this.dir, this.language, `${name}.md`), "utf8").trim();
      this.stepPrompts.set(name, p);
    }
    return p;
  }

  /**
   * A step's rule lists (prompts/<language>/<name>.md): each `## verdict` section a markdown list,
   * one entry per `- ` line. Anything else in a section is an error naming the line: an entry
   * written as prose would silently never match.
   */
  ruleLists(name: string): RuleLists {
    let lists = this.lists.get(name);
    if (lists === undefined) {
      const file = `prompts/${this.language}/${name}.md`;
      const sections = readSections(join(this.dir, this.language, `${name}.md`));
      const out: Record<string, readonly string[]> = {};
      for (const [verdict, text] of Object.entries(sections)) {
        out[verdict] = text
          .split(/\r?\n/)
          .map((l) => l.trim())
          .filter((l) => l !== "")
          .map((l) => {
            const m = /^[-*]\s+(.+)$/.exec(l);
            if (!m) throw new FlowDefinitionError(`${file} ## ${verdict}: "${l}" is not a list entry ("- …")`);
            return m[1]!.trim();
          });
      }
      this.lists.set(name, (lists = out));
    }
    return lists;
  }

  /** A fixed line the caller hears, in the call's language. */
  line(key: string, values: Record<string, string | number> = {}): string {
    const t = this.lines[key];
    if (t === undefined) throw new FlowDefinitionError(`no lines.md of prompts/${this.language}/ has a section "## ${key}"`);
    return fillTemplate(t, values, `lines.md#${key}`);
  }

  /** A note only the model reads (tool results, call facts). */
  note(key: string, values: Record<string, string | number> = {}): string {
    const t = this.notes[key];
    if (t === undefined) throw new FlowDefinitionError(`prompts/model-notes.md has no section "## ${key}"`);
    return fillTemplate(t, values, `model-notes.md#${key}`);
  }

  toolDescription(name: string): string {
    const d = this.toolDescriptions[name];
    if (d === undefined) throw new FlowDefinitionError(`prompts/tools.md has no description "## ${name}"`);
    return d;
  }

  hasLine(key: string): boolean {
    return key in this.lines;
  }
  hasNote(key: string): boolean {
    return key in this.notes;
  }
  lineKeys(): string[] {
    return Object.keys(this.lines);
  }
  noteKeys(): string[] {
    return Object.keys(this.notes);
  }
}

/** The lines of prompts/<lang>/lines.md and of every prompts/<lang>/<folder>/lines.md, as one set of keys. */
function readLines(langDir: string): Record<string, string> {
  const files = [join(langDir, "lines.md")];
  for (const entry of readdirSync(langDir).sort()) {
    const file = join(langDir, entry, "lines.md");
    if (statSync(join(langDir, entry)).isDirectory() && existsSync(file)) files.push(file);
  }
  const lines: Record<string, string> = {};
  const from = new Map<string, string>();
  for (const file of files) {
    for (const [key, text] of Object.entries(readSections(file))) {
      const earlier = from.get(key);
      if (earlier) throw new FlowDefinitionError(`line "${key}" is in both ${earlier} and ${file}: a line belongs to one task, agent or the shared lines.md`);
      from.set(key, file);
      lines[key] = text;
    }
  }
  return lines;
}
