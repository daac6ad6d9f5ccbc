import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { hashKeysFromEnv, NumberHasher } from "../src/ledger/numberHash.js";
import { allDocBlocks, docBlocks, docFiles, SHELL, type DocBlock } from "./support/docBlocks.js";

/**
 * The README and docs/*.md as a reader uses them (issue 22 point 9): every shell block either runs
 * here, offline, or says why not (`<!-- no-run: reason -->` right before it); every figure the
 * performance page quotes is in the checked-in bench results; every relative link and anchor
 * resolves. (TypeScript blocks: test/readme.guide.test.ts type-checks them; the scenario counts:
 * test/evals.afterDecline.test.ts reads them from the suite.)
 */

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const read = (doc: string) => readFileSync(join(ROOT, doc), "utf8");
const scratch = mkdtempSync(join(tmpdir(), "aiflow-docs-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** The shell blocks this test runs, by document and first line, each with what it checks afterwards (the shell's stdout after the block). */
const RUN: { doc: string; first: RegExp; after: string; check: (stdout: string) => void }[] = [
  {
    doc: "docs/evidence.md",
    first: /^export LEDGER_HASH_KEY=/,
    // The key the block makes is one the service accepts, and it hashes with it.
    after: 'printf "%s" "$LEDGER_HASH_KEY"',
    check: (key) => {
      const { current, older } = hashKeysFromEnv({ LEDGER_HASH_KEY: key });
      expect(current.id).toBe("2026-12");
      expect(older).toEqual([]);
      expect(NumberHasher.keyed(current).mode).toBe("hashed");
    },
  },
];

const shellBlocks = allDocBlocks(ROOT).filter((b) => SHELL.has(b.lang));
const runOf = (b: DocBlock) => RUN.find((r) => r.doc === b.doc && r.first.test(b.body.split("\n")[0] ?? ""));
const where = (b: DocBlock) => `the \`\`\`${b.lang} block at ${b.doc} line ${b.line}`;

describe("shell blocks: run offline, or marked with the reason they are not", () => {
  it("every shell block is either run here or carries <!-- no-run: reason -->, never both; every run entry names a block", () => {
    expect(shellBlocks.length).toBeGreaterThan(5);
    for (const b of shellBlocks) {
      const run = runOf(b);
      if (run) expect(b.mark, `${where(b)} is run here and marked ${b.mark?.kind}`).toBeUndefined();
      else expect(b.mark?.kind, `${where(b)} is not run here: mark it <!-- no-run: reason --> or add it to RUN`).toBe("no-run");
    }
    for (const r of RUN) expect(shellBlocks.filter((b) => runOf(b) === r), `RUN entry ${r.doc} ${r.first}`).toHaveLength(1);
    // A mark needs its reason.
    expect(() => docBlocks("<!-- no-run: -->\n```sh\nnpm start\n```\n", "docs/x.md")).toThrow(/docs\/x\.md line 2: the no-run mark before this block gives no reason/);
    expect(docBlocks("  <!-- no-run: needs a real API key -->\n  ```sh\n  npm run eval\n  ```\n", "docs/x.md")[0]).toMatchObject({ line: 2, body: "npm run eval", mark: { kind: "no-run", reason: "needs a real API key" } });
  });

  for (const r of RUN) {
    it(`runs ${r.doc}'s block ${r.first} offline and checks what it made`, () => {
      const b = shellBlocks.find((x) => runOf(x) === r)!;
      // No network settings, no keys: what runs here must not need them.
      const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: scratch, LANG: "C.UTF-8" };
      const out = spawnSync("bash", ["-euo", "pipefail", "-c", `${b.body}\n${r.after}`], { cwd: scratch, env, encoding: "utf8", timeout: 10_000 });
      expect(out.status, `${where(b)} failed:\n${out.stderr}`).toBe(0);
      r.check(out.stdout);
    });
  }
});

// ---- figures --------------------------------------------------------------------------------

/** The numbers of a text, as written ("1,000" → "1000", "0.27×" → "0.27"). */
function numbers(text: string): string[] {
  return [...text.replace(/(\d),(\d{3})/g, "$1$2").matchAll(/\d+(?:\.\d+)?/g)].map((m) => m[0]);
}

/** A quoted figure is a source figure rounded to the quote's decimals, in the same unit or a thousandfold (µs ↔ ms ↔ s). */
function quotes(quoted: string, source: string[]): boolean {
  const decimals = quoted.split(".")[1]?.length ?? 0;
  return source.some((s) => [1, 1000, 0.001].some((f) => (Number(s) * f).toFixed(decimals) === Number(quoted).toFixed(decimals)));
}

/** The rows of a markdown table whose first cell starts with "(x)", as cells. */
function benchRows(text: string): { label: string; letter: string; cells: string[] }[] {
  return text
    .split("\n")
    .filter((l) => /^\| \([a-z]\) /.test(l))
    .map((l) => {
      const cells = l.split("|").slice(1, -1).map((c) => c.trim());
      return { label: cells[0]!, letter: cells[0]!.slice(1, 2), cells };
    });
}

describe("figures the docs quote come from the checked-in results", () => {
  const results = read("bench/results.md");
  const source = benchRows(results);
  const sourceNumbers = (letter: string) => source.filter((r) => r.letter === letter).flatMap((r) => numbers(r.cells.slice(1).join(" ")));
  const performance = read("docs/performance.md");

  it("every measured, baseline and ratio figure of docs/performance.md's table is in bench/results.md's rows of the same part", () => {
    const rows = benchRows(performance);
    expect(rows.length).toBeGreaterThanOrEqual(10);
    for (const row of rows) {
      // Cells 1-3: measured, baseline (same run), ratio; the target column is a goal, not a measurement.
      for (const cell of row.cells.slice(1, 4)) {
        for (const n of numbers(cell.replace(/^[^:]*\(TTFT \d+ ms[^)]*\):/, ""))) {
          expect(quotes(n, sourceNumbers(row.letter)), `docs/performance.md row "${row.label}": ${n} (in "${cell}") is not in bench/results.md's (${row.letter}) rows`).toBe(true);
        }
      }
      // A met / missed verdict is the results' verdict for that part.
      const verdict = row.cells[5];
      if (verdict) expect(source.some((s) => s.letter === row.letter && s.cells[5] === verdict), `row "${row.label}": "${verdict}"`).toBe(true);
    }
    // The check bites: a figure the results do not hold is refused.
    expect(quotes("2818", sourceNumbers("a"))).toBe(false);
  });

  it("the figures its notes quote are the results' too", () => {
    // Each quote in the notes under the table, with the part of the results it comes from.
    const noted: [RegExp, string][] = [
      [/24 µs for the bare route, 45 µs for\s+the intake, 364 µs for the whole service/, "a"],
      [/241 calls were admitted and 759\s+refused/, "f"],
      [/calls' answers took\s+26 \/ 1792 ms/, "f"],
      [/the service answered within 470 ms/, "f"],
      [/holds 785 calls at once/, "i"],
      [/36\.9 ms of CPU per call/, "i"],
    ];
    for (const [pattern, letter] of noted) {
      const quote = pattern.exec(performance)?.[0];
      expect(quote, `docs/performance.md no longer says ${pattern}`).toBeDefined();
      for (const n of numbers(quote!).filter((x) => x !== "99")) expect(quotes(n, sourceNumbers(letter)), `${n} in "${quote}"`).toBe(true);
    }
  });
});

// ---- links ----------------------------------------------------------------------------------

/** GitHub's anchor for a heading. */
function slug(heading: string): string {
  return heading.trim().toLowerCase().replace(/[^\p{L}\p{N}\- _]/gu, "").replace(/ /g, "-");
}

function anchorsOf(text: string): Set<string> {
  const found = new Set<string>();
  let fence = false;
  for (const line of text.split("\n")) {
    if (/^\s*```/.test(line)) fence = !fence;
    const h = fence ? null : /^#{1,6} (.+)$/.exec(line);
    if (h) found.add(slug(h[1]!));
  }
  return found;
}

describe("links between the README and docs/", () => {
  it("every relative link names a file that exists, and every #anchor a heading of that file", () => {
    const broken: string[] = [];
    let checked = 0;
    for (const doc of docFiles(ROOT)) {
      const text = read(doc).replace(/```[\s\S]*?```/g, "");
      for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = m[1]!;
        if (/^[a-z]+:/i.test(target)) continue;
        const [path, anchor] = target.split("#") as [string, string | undefined];
        const file = path ? normalize(join(dirname(doc), path)) : doc;
        checked++;
        if (!existsSync(join(ROOT, file))) broken.push(`${doc}: ${target} (no ${file})`);
        else if (anchor !== undefined && !anchorsOf(read(file)).has(anchor)) broken.push(`${doc}: ${target} (${file} has no heading #${anchor})`);
      }
    }
    expect(broken).toEqual([]);
    expect(checked).toBeGreaterThan(20);
    expect(slug("Answering within sipgate's second")).toBe("answering-within-sipgates-second");
    expect(slug("Running in production, on several instances")).toBe("running-in-production-on-several-instances");
  });

  it("the README links every page of docs/, and stays a README for a new user", () => {
    const readme = read("README.md");
    for (const doc of docFiles(ROOT).filter((d) => d !== "README.md")) expect(readme, doc).toContain(`](${doc}`);
    // 750 until the guide built a task that starts the SMS task (issue 19): its blocks are checked code.
    expect(readme.split("\n").length).toBeLessThan(800);
  });
});
