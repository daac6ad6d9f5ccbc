import { cpSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT, baseEnv, buildDist, startProcess, stopAll } from "./support/serverProcess.js";

/**
 * A deployment that lost a prompt file (review of issue 19's prompt folders): start-up stops with
 * one line naming the file, exit 1, as for a config problem, not with a stack trace like a bug.
 * Runs the compiled server (as `npm start` does) from a copy of the package, so the shared
 * prompts/ is never touched.
 */
describe("start-up with a prompt file missing", () => {
  let copy: string;
  beforeAll(() => {
    buildDist();
    copy = mkdtempSync(join(tmpdir(), "missing-prompt-"));
    for (const part of ["package.json", "dist", "prompts", "config"]) cpSync(join(ROOT, part), join(copy, part), { recursive: true });
    symlinkSync(join(ROOT, "node_modules"), join(copy, "node_modules"));
    rmSync(join(copy, "prompts", "en-US", "sms", "confirm_consent.md"));
  }, 120_000);
  afterAll(async () => {
    await stopAll();
    rmSync(copy, { recursive: true, force: true });
  });

  it("stops with one line naming the file, exit 1", async () => {
    const p = startProcess(process.execPath, [join(copy, "dist", "src", "main.js"), "--config", join(copy, "config", "agent.en-US.yaml")], {
      env: baseEnv({ OPENAI_API_KEY: "test", HOST: "127.0.0.1", PORT: "0" }),
      cwd: copy,
    });
    const { code } = await p.exited;
    expect(code).toBe(1);
    const lines = p.err().trim().split("\n");
    expect(lines, p.err()).toHaveLength(2);
    expect(lines[0]).toMatch(/^aiflow-sms-agent: flow reception cannot run:$/);
    expect(lines[1]).toMatch(/en-US\/sms\/confirm_consent\.md/);
    expect(p.err()).not.toMatch(/\n\s+at /);
  }, 60_000);
});
