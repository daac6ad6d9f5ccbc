import { spawn, type ChildProcess } from "node:child_process";
import { appendFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, isAbsolute, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { allDocBlocks, docBlocks, TYPESCRIPT, type DocBlock } from "./support/docBlocks.js";
import { FakeOpenAIServer, reply } from "./support/fakeOpenAI.js";
import { wireGuideAgent } from "./support/guideWiring.js";

/**
 * The README's "Build your own agent" guide (issue 13, point 4), run as written: its blocks are
 * written into a copy of the project (never into the real src/, tools/ or prompts/), the copy is
 * type-checked under the repo's strict settings and checked against the layer rules, and the
 * "Run it" block plays its call against a local scripted model. A guide that no longer compiles,
 * breaks a layer rule or no longer runs fails here, naming the block. Every other TypeScript block
 * of the README and docs/*.md is type-checked in the same copy and the same tsc run (folder
 * docs-blocks/), unless an HTML comment right before it says why not (`<!-- no-check: reason -->`).
 */

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const SECTION = "## Build your own agent";
const TSX = join(ROOT, "node_modules", ".bin", "tsx");
const TSC = join(ROOT, "node_modules", ".bin", "tsc");
const DEPCRUISE = join(ROOT, "node_modules", ".bin", "depcruise");
/** The block the "Run it" part ends with: the script that plays a call. */
const RUN_IT = "src/cli/pharmacyCall.ts";
/** A block of this language is a terminal session, not a file: the test plays it and checks what it shows. */
const TRANSCRIPT = "console";

interface GuideBlock {
  /** "block 3 (```ts at README.md line 612)": how failures name it. */
  name: string;
  /** README line of the block's opening fence: line n of the file is README line `fence + 1 + n`. */
  fence: number;
  lang: string;
  path: string;
  append: boolean;
  /** The block without its header line. */
  body: string;
}

/** How each language's first line names the file: `// path`, `<!-- path -->`, `# path`, each optionally `append to path`. */
const HEADER: Record<string, RegExp> = {
  ts: /^\/\/\s*(append to\s+)?(\S+)\s*$/,
  md: /^<!--\s*(append to\s+)?(\S+)\s*-->\s*$/,
  yaml: /^#\s*(append to\s+)?(\S+)\s*$/,
};

/** Every fenced block of the guide's section; a block that names no file, or one outside the project, throws naming it. */
function guideBlocks(readme: string, file = "README.md"): GuideBlock[] {
  const lines = readme.split("\n");
  const start = lines.indexOf(SECTION);
  if (start < 0) throw new Error(`${file} has no "${SECTION}" section`);
  const blocks: GuideBlock[] = [];
  let open: { lang: string; line: number; body: string[] } | undefined;
  for (let i = start + 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (!open) {
      if (/^## /.test(line)) break; // the next section
      const fence = /^```(\S*)\s*$/.exec(line);
      if (fence) open = { lang: fence[1]!, line: i + 1, body: [] };
      continue;
    }
    if (!/^```\s*$/.test(line)) {
      open.body.push(line);
      continue;
    }
    const name = `block ${blocks.length + 1} (\`\`\`${open.lang} at ${file} line ${open.line})`;
    if (open.lang === TRANSCRIPT) {
      open = undefined; // played by guideTranscripts' test, not written anywhere
      continue;
    }
    const header = HEADER[open.lang];
    if (!header) throw new Error(`${SECTION}: ${name} is not a file block: the guide's blocks are \`\`\`${Object.keys(HEADER).join(", ```")}, each naming its file on its first line`);
    const m = header.exec(open.body[0] ?? "");
    const path = m?.[2];
    if (path && (isAbsolute(path) || path.split(/[\\/]/).includes(".."))) throw new Error(`${SECTION}: ${name} names ${path}, which escapes the project root`);
    if (!m || !path || !/^[\w.-]+(\/[\w.-]+)*\.\w+$/.test(path)) {
      throw new Error(`${SECTION}: ${name} has no path header: its first line must name its file (e.g. "// tools/x/y.ts", "<!-- prompts/de-DE/x.md -->", "<!-- append to prompts/tools.md -->"), got "${open.body[0] ?? ""}"`);
    }
    blocks.push({ name, fence: open.line, lang: open.lang, path, append: !!m[1], body: open.body.slice(1).join("\n").trimEnd() + "\n" });
    open = undefined;
  }
  if (open) throw new Error(`${SECTION}: the block opened at ${file} line ${open.line} is never closed`);
  return blocks;
}

interface Transcript {
  /** README line of the block's opening fence. */
  fence: number;
  /** The command after "$ " on the block's first line. */
  command: string;
  lines: string[];
}

/** The guide's terminal sessions (\`\`\`console blocks): "$ command", then what the terminal shows; "…" marks lines left out. */
function guideTranscripts(readme: string): Transcript[] {
  const lines = readme.split("\n");
  const start = lines.indexOf(SECTION);
  const found: Transcript[] = [];
  for (let i = start + 1; i < lines.length && !/^## /.test(lines[i]!); i++) {
    if (!lines[i]!.startsWith("```")) continue;
    // Any block is skipped whole: a markdown file block may hold "## " lines of its own.
    const fence = i + 1;
    const lang = lines[i]!.slice(3).trim();
    const body: string[] = [];
    while (++i < lines.length && !/^```\s*$/.test(lines[i]!)) body.push(lines[i]!);
    if (lang !== TRANSCRIPT) continue;
    const command = /^\$ (.+)$/.exec(body[0] ?? "")?.[1];
    if (!command) throw new Error(`${SECTION}: the \`\`\`${TRANSCRIPT} block at README.md line ${fence} must start with "$ <command>"`);
    found.push({ fence, command, lines: body.slice(1) });
  }
  return found;
}

/** Writes the blocks into the copy at `root`: new files only, appends only to existing ones. */
function writeBlocks(root: string, blocks: GuideBlock[]): void {
  for (const b of blocks) {
    const target = resolve(root, b.path);
    const rel = relative(root, target);
    if (rel.startsWith("..") || isAbsolute(rel) || !target.startsWith(root + sep)) throw new Error(`${SECTION}: ${b.name} names ${b.path}, which escapes the project root`);
    if (b.append) {
      if (!existsSync(target)) throw new Error(`${SECTION}: ${b.name} appends to ${b.path}, which does not exist`);
      const before = readFileSync(target, "utf8");
      appendFileSync(target, `${before.endsWith("\n") ? "" : "\n"}\n${b.body}`);
    } else {
      if (existsSync(target)) throw new Error(`${SECTION}: ${b.name} would replace ${b.path}: the guide adds files (or appends with "append to"), it never rewrites the project's own`);
      mkdirSync(dirname(target), { recursive: true });
      writeFileSync(target, b.body);
    }
  }
}

/** tsc's "path(line,col): error …" lines of a guide or docs file, pointed at the README (or docs) line it came from. */
function inReadme(output: string, blocks: GuideBlock[], others: { file: string; block: DocBlock }[] = []): string {
  return output.replace(/^(\S+?)\((\d+),(\d+)\): /gm, (all, file: string, line: string) => {
    const b = blocks.find((x) => !x.append && x.path === file);
    if (b) return `${b.name}, ${b.path} line ${line} (README.md line ${b.fence + 1 + Number(line)}): `;
    const o = others.find((x) => x.file === file);
    return o ? `the \`\`\`${o.block.lang} block at ${o.block.doc} line ${o.block.line}, its line ${line} (${o.block.doc} line ${o.block.line + Number(line)}): ` : all;
  });
}

/** README lines [from, to) of the guide's section: its blocks are files, written and checked above. */
function guideSpan(text: string): [number, number] {
  const lines = text.split("\n");
  const start = lines.indexOf(SECTION);
  let fence = false;
  // A markdown file block holds "## " lines of its own: only a heading outside blocks ends the section.
  const end = lines.findIndex((l, i) => {
    if (i > start && /^\s*```/.test(l)) fence = !fence;
    return i > start && !fence && /^## /.test(l);
  });
  return [start + 1, end < 0 ? lines.length + 1 : end + 1];
}

/** The TypeScript blocks of the README (outside the guide) and docs/*.md: checked here unless marked no-check. */
function otherTypeScriptBlocks(all: DocBlock[], readmeText: string): DocBlock[] {
  const [from, to] = guideSpan(readmeText);
  return all.filter((b) => TYPESCRIPT.has(b.lang) && !(b.doc === "README.md" && b.line > from && b.line < to));
}

// ---- child processes (tsc, the Run it script): all of them ours, all of them stopped ----------

const children = new Set<ChildProcess>();

function run(cmd: string, args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs: number }): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    // Its own process group, so a timeout stops tsx's node child too.
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ["ignore", "pipe", "pipe"], detached: true });
    children.add(child);
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d: Buffer) => (stdout += d.toString("utf8")));
    child.stderr!.on("data", (d: Buffer) => (stderr += d.toString("utf8")));
    const timer = setTimeout(() => {
      stopGroup(child);
      reject(new Error(`${cmd} ${args.join(" ")} took longer than ${opts.timeoutMs} ms\n${stdout}\n${stderr}`));
    }, opts.timeoutMs);
    child.on("error", (e) => {
      clearTimeout(timer);
      children.delete(child);
      reject(e);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      children.delete(child);
      resolvePromise({ code, stdout, stderr });
    });
  });
}

function stopGroup(child: ChildProcess): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, "SIGKILL");
  } catch {
    // already gone
  }
}

// ---- the copy ----------------------------------------------------------------------------------

const readme = readFileSync(join(ROOT, "README.md"), "utf8");
const fake = new FakeOpenAIServer();
let copy = "";
let blocks: GuideBlock[] = [];
/** The docs' other TypeScript blocks written into the copy's docs-blocks/, each with its file there. */
let docTs: { file: string; block: DocBlock }[] = [];
type Ran = { code: number | null; stdout: string; stderr: string };
/** Started in beforeAll, so the type check and the layering check run while the call is played. */
let typecheck: Promise<Ran> | undefined;
let layering: Promise<Ran> | undefined;

beforeAll(async () => {
  blocks = guideBlocks(readme);
  // Inside the repo, so node_modules resolves for tsc and tsx; .guide-*/ is ignored by git.
  copy = mkdtempSync(join(ROOT, ".guide-"));
  for (const part of ["src", "tools", "prompts"]) cpSync(join(ROOT, part), join(copy, part), { recursive: true });
  for (const file of ["package.json", "tsconfig.json", ".dependency-cruiser.cjs"]) cpSync(join(ROOT, file), join(copy, file));
  writeBlocks(copy, blocks);
  // The README's and docs' other TypeScript blocks, one module each, type-checked with the guide.
  mkdirSync(join(copy, "docs-blocks"));
  docTs = otherTypeScriptBlocks(allDocBlocks(ROOT), readme)
    .filter((b) => !b.mark)
    .map((block) => ({ file: `docs-blocks/${block.doc.replace(/\W+/g, "_")}_line${block.line}.ts`, block }));
  for (const { file, block } of docTs) writeFileSync(join(copy, file), `${block.body}\nexport {};\n`);
  // The guide's last paragraph: the agent made selectable (`agent: pharmacy`), as a reader does it.
  wireGuideAgent(copy, `${SECTION}, "To make it selectable"`);
  // The repo's compiler options on the copy's src/ and tools/ (the guide's files among them).
  writeFileSync(join(copy, "tsconfig.guide.json"), JSON.stringify({ extends: "./tsconfig.json", include: ["src", "tools", "docs-blocks"] }));
  typecheck = run(TSC, ["--noEmit", "-p", join(copy, "tsconfig.guide.json")], { cwd: copy, timeoutMs: 90_000 });
  // The same layer rules as `npm run lint:deps`, with the guide's folders in them.
  layering = run(DEPCRUISE, ["src", "tools", "--config", ".dependency-cruiser.cjs"], { cwd: copy, timeoutMs: 90_000 });
  // Awaited (and reported) by their tests.
  typecheck.catch(() => undefined);
  layering.catch(() => undefined);
  await fake.start();
});

afterAll(async () => {
  for (const c of children) stopGroup(c);
  await typecheck?.catch(() => undefined);
  await layering?.catch(() => undefined);
  await fake.close();
  if (copy) rmSync(copy, { recursive: true, force: true });
});

describe(`README "${SECTION}"`, () => {
  it("every block names its file inside the project; blocks that do not fail naming the block", () => {
    expect(blocks.map((b) => `${b.append ? "append to " : ""}${b.path}`)).toEqual(
      expect.arrayContaining(["append to prompts/tools.md", "append to prompts/model-notes.md", RUN_IT, "tools/pharmacy/agent.ts"]),
    );
    // The guide's new agent lives only in the README, never in the real project.
    for (const b of blocks.filter((x) => !x.append)) expect(existsSync(join(ROOT, b.path)), `${b.path} exists in the real project`).toBe(false);
    const doc = (body: string) => `# x\n\n${SECTION}\n\nText.\n\n${body}\n\n## Tests\n`;
    expect(() => guideBlocks(doc("```ts\nconst x = 1;\n```"))).toThrow(/block 1 \(```ts at README\.md line 7\) has no path header/);
    expect(() => guideBlocks(doc("```ts\n// tools/a/b.ts\n```\n\n```md\n<!-- ../outside.md -->\n```"))).toThrow(/block 2 \(```md at README\.md line 11\) names \.\.\/outside\.md, which escapes the project root/);
    expect(() => guideBlocks(doc("```ts\n// /etc/passwd.ts\n```"))).toThrow(/block 1 \(```ts at README\.md line 7\) names \/etc\/passwd\.ts, which escapes the project root/);
    expect(() => guideBlocks(doc("```sh\nnpm start\n```"))).toThrow(/block 1 \(```sh .*\) is not a file block/);
    // A terminal session is no file: played by its own test below.
    expect(guideBlocks(doc("```console\n$ npm run chat -- --as-model\nagent: Hallo\n```"))).toEqual([]);
    expect(guideTranscripts(doc("```console\n$ npm run chat -- --as-model\nagent: Hallo\n```"))).toEqual([{ fence: 7, command: "npm run chat -- --as-model", lines: ["agent: Hallo"] }]);
    expect(() => guideTranscripts(doc("```console\nagent: Hallo\n```"))).toThrow(/must start with "\$ <command>"/);
    expect(() => writeBlocks(copy, [{ name: "block 9", fence: 1, lang: "ts", path: "src/service.ts", append: false, body: "" }])).toThrow(/block 9 would replace src\/service\.ts/);
  });

  it("plays the Run it call: a consent question, exactly one send_sms after the yes, the result in onResult", async () => {
    // Answers the way a model would: from the caller's last words and the tools it is offered.
    fake.onRequest((body) => {
      const offered = (body.tools ?? []).map((t) => t.function.name);
      const last = body.messages.at(-1);
      if (last?.role !== "user") return reply.text("Gern geschehen.");
      const said = last.content ?? "";
      if (offered.includes("record_consent")) return reply.tool("record_consent", { consented: /\bja\b/i.test(said) });
      const code = /\b(\d{4,})\b/.exec(said)?.[1];
      if (/Rezept/.test(said) && code) return reply.tool("check_prescription", { pickup_code: code });
      if (/SMS/.test(said)) return reply.tool("text_pickup_hours");
      return reply.text("Wie kann ich Ihnen helfen?");
    });
    const env = { ...process.env, OPENAI_BASE_URL: fake.baseURL, OPENAI_API_KEY: "test-key" };
    const out = await run(TSX, [join(copy, RUN_IT)], { cwd: copy, env, timeoutMs: 30_000 });
    expect(out.code, `${RUN_IT} failed:\n${out.stderr}${out.stdout}`).toBe(0);

    type Action = { type: string; text?: string; phone_number?: string; message?: string };
    const lines = out.stdout.trim().split("\n").map((l) => JSON.parse(l) as { event?: string; step?: string; actions?: Action[]; pharmacy?: { pickupSms?: string }; tasks?: unknown[]; ledger?: string[] });
    const turns = lines.slice(0, -1);
    const said = (t: (typeof turns)[number]) => (t.actions ?? []).filter((a) => a.type === "speak").map((a) => a.text ?? "");
    const sends = (t: (typeof turns)[number]) => (t.actions ?? []).filter((a) => a.type === "send_sms");
    expect(turns.map((t) => [t.event, t.step]), `${RUN_IT} printed:\n${out.stdout}`).toEqual([
      ["session_start", "desk"],
      // A ready prescription starts the prescription task: its pickup step.
      ["user_speak", "pickup"],
      // Its pickup step starts the SMS task (nested): the consent question.
      ["user_speak", "confirm_consent"],
      // The SMS task's result finished the prescription task, whose result reached the desk.
      ["user_speak", "desk"],
    ]);
    const [greeting, status, question, yes] = turns as [(typeof turns)[number], (typeof turns)[number], (typeof turns)[number], (typeof turns)[number]];
    expect(said(greeting)).toEqual([expect.stringContaining("KI-Assistenz der Apotheke am Markt")]);
    // check_prescription spoke the status itself: a fixed line, no second model request.
    expect(said(status)).toEqual([expect.stringMatching(/^Ihr Rezept mit der Abholnummer 4711 liegt für Sie bereit\./)]);
    expect(said(question)).toEqual([expect.stringMatching(/^Darf ich Ihnen die Abholzeiten per SMS an die Nummer 0 1 5 1 1, 2 3 4, 5 6, 7 8 schicken\?$/)]);
    expect(turns.slice(0, 3).flatMap(sends)).toEqual([]);
    expect(sends(yes)).toEqual([
      expect.objectContaining({ phone_number: "4915112345678", message: "Apotheke am Markt: Abholzeiten: Mo-Fr 8-18:30 Uhr, Sa 9-13 Uhr. Marktplatz 3, Düsseldorf. Antworten auf diese SMS werden nicht gelesen." }),
    ]);
    expect(said(yes).join(" ")).toMatch(/abgeschickt/);
    // The SMS task's typed result reached the pickup step, which finished the prescription task with
    // it; that result reached the desk's onResult (the only place pickupSms is set); no task is left running.
    const final = lines.at(-1)!;
    expect(final.pharmacy).toEqual({ pickupSms: "handed_over" });
    expect(final.tasks).toEqual([]);
    expect(final.ledger).toContain("sms_approved");

    // What the model was given: the step's prompt (placeholders filled) and only its tools, described from prompts/tools.md.
    // Two: the consent turn's "Ja, gerne." is a clear yes of prompts/de-DE/sms/consent_answers.md, decided without the model.
    expect(fake.requests).toHaveLength(2);
    const first = fake.requests[0]!;
    // The SMS task brings opt_out_sms into every LLM step of a flow that includes it.
    expect(fake.toolsOffered(0)).toEqual(["check_prescription", "end_call", "opt_out_sms"]);
    // The prescription task's own step offers its own tools.
    expect(fake.toolsOffered(1)).toEqual(["text_pickup_hours", "prescription_done", "opt_out_sms"]);
    expect(first.tools![0]!.function.description).toMatch(/^Look up whether the caller's prescription is ready/);
    expect(first.tools![0]!.function.parameters).toMatchObject({ properties: { pickup_code: { type: "string", description: expect.stringContaining("pickup code") } } });
    const system = first.messages[0]!.content ?? "";
    expect(system).toContain("Du nimmst Anrufe für Apotheke am Markt entgegen.");
    expect(system).not.toMatch(/\{[a-z_]+\}/);
    expect(fake.requests.some((r) => r.messages.some((m) => m.content === "Ja, gerne."))).toBe(false);
  });

  it("plays the guide's agent with the person as the model (npm run chat -- --as-model): every line its transcript shows, in order", async () => {
    const transcripts = guideTranscripts(readme);
    expect(transcripts.map((t) => t.command)).toEqual([expect.stringMatching(/^npm run chat -- .*--as-model/)]);
    for (const t of transcripts) {
      const args = t.command.replace(/^npm run chat -- /, "").split(/\s+/);
      // What the person typed: the caller's words and the model's answers, in the order the chat asks for them.
      const typed = t.lines.filter((l) => /^(caller|model)> /.test(l)).map((l) => l.replace(/^(caller|model)> /, ""));
      const child = spawn(TSX, [join(copy, "src/cli/chat.ts"), ...args], { cwd: copy, stdio: ["pipe", "pipe", "pipe"], detached: true });
      children.add(child);
      let stdout = "";
      let stderr = "";
      child.stdout!.on("data", (d: Buffer) => (stdout += d.toString("utf8")));
      child.stderr!.on("data", (d: Buffer) => (stderr += d.toString("utf8")));
      const code = await new Promise<number | null>((resolveCode, reject) => {
        const timer = setTimeout(() => {
          stopGroup(child);
          reject(new Error(`${t.command} took longer than 30 s\n${stdout}\n${stderr}`));
        }, 30_000);
        child.on("close", (c) => {
          clearTimeout(timer);
          children.delete(child);
          resolveCode(c);
        });
        child.stdin!.end(typed.join("\n") + "\n");
      });
      expect(code, `${t.command} failed:\n${stderr}${stdout}`).toBe(0);
      // Every line shown, in order, among the lines the chat printed ("…" stands for lines left out).
      const printed = stdout.split("\n").map((l) => l.trimEnd());
      let at = 0;
      t.lines.forEach((line, n) => {
        if (line === "…") return;
        const found = printed.indexOf(line, at);
        expect(found, `README.md line ${t.fence + 2 + n} is not what ${t.command} prints (after the line before it):\n${line}\n--- printed:\n${stdout}`).toBeGreaterThanOrEqual(0);
        at = found + 1;
      });
    }
  }, 40_000);

  it("type-checks: the guide's files with the project's own, under the repo's strict settings", async () => {
    const r = await typecheck!;
    expect(r.code, `tsc on the guide's files failed:\n${inReadme(r.stdout, blocks, docTs)}${r.stderr}`).toBe(0);
    // As long as tsc itself may take (run's 90 s): it shares the cores with the calls played above.
  }, 95_000);

  it("every other TypeScript block of the README and docs/ is type-checked with it, or says why not (<!-- no-check: reason -->)", () => {
    const others = otherTypeScriptBlocks(allDocBlocks(ROOT), readme);
    for (const b of others) {
      const checked = docTs.some((d) => d.block === b);
      expect(checked || b.mark?.kind === "no-check", `${b.doc} line ${b.line}: neither type-checked nor marked <!-- no-check: reason -->`).toBe(true);
    }
    // The guide's own TypeScript blocks are the files written above.
    expect(blocks.filter((b) => b.lang === "ts").length).toBeGreaterThanOrEqual(5);
    // What the marks look like, and a mark without its reason.
    const sample = "# x\n\n<!-- no-check: a fragment of flow.ts -->\n```ts\nfoo(\n```\n\n```typescript\nconst a: number = 1;\n```\n";
    const parsed = docBlocks(sample, "docs/x.md");
    expect(otherTypeScriptBlocks(parsed, "").map((b) => [b.line, b.mark?.reason])).toEqual([
      [4, "a fragment of flow.ts"],
      [8, undefined],
    ]);
    expect(() => docBlocks("<!-- no-check -->\n```ts\nfoo(\n```\n", "docs/x.md")).toThrow(/docs\/x\.md line 2: the no-check mark before this block gives no reason/);
  });

  it("keeps the layering: the guide's tools, task types and agent pass the rules of .dependency-cruiser.cjs", async () => {
    const r = await layering!;
    expect(r.code, `npm run lint:deps on the guide's copy failed:\n${r.stdout}${r.stderr}`).toBe(0);
    expect(r.stdout).toMatch(/no dependency violations found/);
    // Every TypeScript file of the guide is in the folders the rules check.
    for (const x of blocks.filter((y) => y.lang === "ts")) expect(x.path, x.name).toMatch(/^(src|tools)\//);
  }, 95_000);
});
