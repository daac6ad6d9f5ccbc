import { appendFileSync, cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { PromptLibrary } from "../src/engine/promptLibrary.js";
import { PROMPTS_DIR } from "../src/service.js";

/** Prompts and lines per task and agent folder (issue 19, point 2): prompts/<lang>/<name>/. */
const dir = mkdtempSync(join(tmpdir(), "prompt-folders-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("prompts/<lang>/<task or agent>/", () => {
  it("a line comes from the task's own lines.md, a step prompt from its folder", () => {
    const lib = new PromptLibrary(PROMPTS_DIR, "de-DE");
    // sms_declined lives in prompts/de-DE/sms/lines.md, welcome_back in the shared lines.md.
    expect(lib.line("sms_declined")).not.toBe("");
    expect(lib.line("welcome_back")).not.toBe("");
    expect(lib.stepPrompt("sms/confirm_consent")).toContain("record_consent");
  });

  it("a line key in two lines.md files stops start-up naming both files", () => {
    const copy = join(dir, "dup");
    cpSync(PROMPTS_DIR, copy, { recursive: true });
    appendFileSync(join(copy, "de-DE", "callback", "lines.md"), "\n## sms_declined\nZweimal.\n");
    expect(() => new PromptLibrary(copy, "de-DE")).toThrow(/line "sms_declined" is in both .*callback\/lines\.md and .*sms\/lines\.md|line "sms_declined" is in both .*sms\/lines\.md and .*callback\/lines\.md/);
  });

  it("a step prompt name is a folder and a name, nothing that leaves prompts/", () => {
    const lib = new PromptLibrary(PROMPTS_DIR, "de-DE");
    expect(() => lib.stepPrompt("../../package")).toThrow(/lower_snake_case/);
  });
});
