import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const TSX = join("node_modules", ".bin", "tsx");
const chat = (args: string[], input = "") => spawnSync(TSX, ["src/cli/chat.ts", ...args], { input, encoding: "utf8", timeout: 30_000 });

describe("npm run chat: flags", () => {
  it("--help prints every flag and the slash commands, and exits 0 without starting a call", () => {
    const r = chat(["--help"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toBe("");
    for (const flag of ["--offline", "--as-model", "--config", "--from", "--verbose", "--help"]) expect(r.stdout).toContain(flag);
    for (const cmd of ["/dtmf", "/silence", "/barge", "/sms_failed [reason] [number]", "/state", "/ledger", "/quit"]) expect(r.stdout).toContain(cmd);
    expect(r.stdout).not.toMatch(/agent:/);
  }, 30_000);

  it("an unknown flag or a stray argument is one line naming it, exit 2, no stack trace", () => {
    for (const [args, named] of [
      [["--nope"], "--nope"],
      [["--offline", "stray"], "stray"],
    ] as const) {
      const r = chat([...args]);
      expect(r.status).toBe(2);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toMatch(new RegExp(`^chat: .*'${named}'.*--help`));
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  }, 30_000);
});

describe("npm run chat: /sms_failed", () => {
  // The caller changes the number before saying yes, so the SMS goes to 0170 1234567, not to
  // the caller's own number: the failure must name the number the SMS actually went to.
  const toOtherNumber = ["Schicken Sie mir die Öffnungszeiten per SMS?", "Nein, lieber an 0170 1234567.", "Ja, an die."];

  it("reports the recipient of the last SMS the chat sent, so the agent hears about its own failure", () => {
    const r = chat(["--offline"], [...toOtherNumber, "/sms_failed smsc_unavailable", "/ledger"].join("\n") + "\n");
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/✉ SMS sent to \+491701234567/);
    expect(r.stdout).toMatch(/agent: Die SMS konnte leider nicht verschickt werden\./);
    const failed = r.stdout.split("\n").filter((l) => l.includes('"kind":"sms_failed"'));
    expect(failed.map((l) => JSON.parse(l).number)).toEqual(["491701234567"]);
  }, 30_000);

  it("takes an explicit recipient; a failure for a number this call never texted is not told to the caller", () => {
    const r = chat(["--offline"], [...toOtherNumber, "/sms_failed smsc_unavailable +49 151 12345678", "/ledger"].join("\n") + "\n");
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).not.toMatch(/konnte leider nicht verschickt werden/);
    const failed = r.stdout.split("\n").filter((l) => l.includes('"kind":"sms_failed"'));
    expect(failed.map((l) => [JSON.parse(l).number, JSON.parse(l).detail])).toEqual([["4915112345678", "unmatched: from npm run chat"]]);
  }, 30_000);

  it("falls back to the caller's number before any SMS, and names a bad reason or number", () => {
    const r = chat(["--offline", "--from", "4917099887766"], ["/sms_failed", "/sms_failed bogus", "/sms_failed unknown hello", "/ledger"].join("\n") + "\n");
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/unknown sms_failed reason "bogus"; one of sender_not_allowed, .*unknown/);
    expect(r.stdout).toMatch(/"hello" is not a phone number/);
    const failed = r.stdout.split("\n").filter((l) => l.includes('"kind":"sms_failed"'));
    expect(failed.map((l) => JSON.parse(l).number)).toEqual(["4917099887766"]);
  }, 30_000);
});
