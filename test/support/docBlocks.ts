import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

/**
 * The fenced blocks of the README and docs/*.md, with the mark a block may carry: an HTML comment
 * on the line right before its fence, `<!-- no-check: reason -->` (a TypeScript block that is a
 * fragment, not a file) or `<!-- no-run: reason -->` (a shell block the docs test does not run).
 * A mark must give its reason.
 */

export interface DocBlock {
  /** "docs/evidence.md", relative to the repo root. */
  doc: string;
  /** Line of the opening fence (1-based). */
  line: number;
  lang: string;
  body: string;
  /** The heading (## or deeper) the block stands under. */
  section: string;
  mark?: { kind: "no-check" | "no-run"; reason: string };
}

/** README.md and every markdown file in docs/, relative to `root`. */
export function docFiles(root: string): string[] {
  return ["README.md", ...readdirSync(join(root, "docs")).filter((f) => f.endsWith(".md")).sort().map((f) => `docs/${f}`)];
}

const MARK = /^\s*<!--\s*(no-check|no-run)\s*:?\s*(.*?)\s*-->\s*$/;

/** Every fenced block of one markdown text; a mark without a reason throws naming the block. */
export function docBlocks(text: string, doc: string): DocBlock[] {
  const lines = text.split("\n");
  const blocks: DocBlock[] = [];
  let section = "";
  for (let i = 0; i < lines.length; i++) {
    const fence = /^(\s*)```(\S*)\s*$/.exec(lines[i]!);
    if (!fence) {
      const heading = /^#{1,6} (.+)$/.exec(lines[i]!);
      if (heading) section = heading[1]!;
      continue;
    }
    const indent = fence[1]!.length;
    const body: string[] = [];
    const line = i + 1;
    while (++i < lines.length && !/^\s*```\s*$/.test(lines[i]!)) body.push(lines[i]!.slice(indent));
    if (i >= lines.length) throw new Error(`${doc} line ${line}: the block is never closed`);
    const m = MARK.exec(lines[line - 2] ?? "");
    const block: DocBlock = { doc, line, lang: fence[2]!, body: body.join("\n"), section };
    if (m) {
      if (!m[2]) throw new Error(`${doc} line ${line}: the ${m[1]} mark before this block gives no reason (<!-- ${m[1]}: why -->)`);
      block.mark = { kind: m[1] as "no-check" | "no-run", reason: m[2] };
    }
    blocks.push(block);
  }
  return blocks;
}

/** Every block of the README and docs/. */
export function allDocBlocks(root: string): DocBlock[] {
  return docFiles(root).flatMap((doc) => docBlocks(readFileSync(join(root, doc), "utf8"), doc));
}

export const TYPESCRIPT = new Set(["ts", "typescript"]);
export const SHELL = new Set(["sh", "bash", "shell"]);
