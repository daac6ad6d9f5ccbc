import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it, vi } from "vitest";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { runLedgerCli } from "../src/cli/ledger.js";
import { FileLedger } from "../src/ledger/fileLedger.js";
import type { LedgerRecordInput } from "../src/ledger/ledger.js";
import { NumberHasher } from "../src/ledger/numberHash.js";

const OLD_KEY = "2025-01:0123456789abcdef0123456789abcdef0123";
const NEW_KEY = "2026-01:fedcba9876543210fedcba9876543210fedc";
const ALICE = "4915112345678";

function call(callId: string, number: string, at: Date): LedgerRecordInput[] {
  const t = (s: number) => new Date(at.getTime() + s * 1000).toISOString();
  return [
    { id: `${callId}:e2:consent_asked:0`, kind: "consent_asked", callId, at: t(0), number, question: "Darf ich Ihnen eine SMS schicken?" },
    { id: `${callId}:e3:consent_given:0`, kind: "consent_given", callId, at: t(3), number, reply: "Ja.", ref: `${callId}:e2:consent_asked:0` },
    { id: `${callId}:e3:sms_approved:0`, kind: "sms_approved", callId, at: t(4), number, message: "Adresse", ref: `${callId}:e3:consent_given:0` },
    { id: `${callId}:e3:sms_handed_over:0`, kind: "sms_handed_over", callId, at: t(4), number, ref: `${callId}:e3:sms_approved:0` },
  ];
}

async function setup(numbers: "full" | "hashed", hasher: NumberHasher): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "review18a-cli-"));
  const raw = parseYaml(readFileSync("config/agent.yaml", "utf8")) as Record<string, unknown>;
  const path = join(dir, "ledger.jsonl");
  raw.ledger = { ...(raw.ledger as object), path, numbers };
  writeFileSync(join(dir, "agent.yaml"), stringifyYaml(raw));
  const l = new FileLedger(path, { hasher, notice: () => undefined });
  for (const r of call("c1", ALICE, new Date("2026-02-01T10:00:00Z"))) await l.append(r);
  await l.close();
  return join(dir, "agent.yaml");
}

async function run(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const log = vi.spyOn(console, "log").mockImplementation((...a) => void out.push(a.join(" ")));
  const e = vi.spyOn(console, "error").mockImplementation((...a) => void err.push(a.join(" ")));
  const w = vi.spyOn(process.stdout, "write").mockImplementation((s) => (out.push(String(s)), true));
  try {
    const code = await runLedgerCli(args, env, new Date("2026-03-01T10:00:00Z"));
    return { code, out: out.join("\n"), err: err.join("\n") };
  } finally {
    log.mockRestore();
    e.mockRestore();
    w.mockRestore();
  }
}

describe("review18a: CLI answers to access and erasure requests", () => {
  it("erase after a key rotation (old key no longer listed) does not claim there is nothing about the number", async () => {
    const config = await setup("hashed", NumberHasher.fromConfig("hashed", { LEDGER_HASH_KEY: OLD_KEY }));
    const r = await run(["erase", "--number", "+49 151 12345678", "--config", config], { LEDGER_HASH_KEY: NEW_KEY });
    // Four records hashed with key 2025-01 cannot be searched: the operator must hear that, not "nothing erased".
    expect(r.out).not.toMatch(/no record is about that number/);
    expect(r.code).not.toBe(0);
  });

  it("show on a call whose records were erased on request reports no problem", async () => {
    const config = await setup("full", NumberHasher.full());
    expect((await run(["erase", "--number", "+49 151 12345678", "--config", config], {})).code).toBe(0);
    expect((await run(["verify", "--config", config], {})).code).toBe(0);
    const page = await run(["show", "c1", "--config", config], {});
    expect(page.out, page.out).not.toMatch(/Problem:/);
  });
});
