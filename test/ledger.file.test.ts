import { spawn, spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { digestOf } from "../src/ledger/chain.js";
import { FileLedger } from "../src/ledger/fileLedger.js";
import type { LedgerRecord } from "../src/ledger/ledger.js";

/**
 * The consent ledger holds phone numbers and callers' words: the file is 0600, folders the
 * service creates are 0700, and an existing file that is wider is tightened at start-up, or the
 * service refuses to start. Real files in a temp folder; modes are compared as `mode & 0o777`
 * (and `& 0o7777` where the sticky bit matters), so the umask of the test run does not matter.
 */

const TSX = resolve("node_modules", ".bin", "tsx");
const mode = (path: string) => statSync(path).mode & 0o777;
const record = (callId: string) => ({ id: `${callId}:t1:consent_asked:0`, kind: "consent_asked" as const, callId, at: "2026-11-23T09:00:00.000Z", number: "4915112345678", question: "Darf ich?" });

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "ledger-file-"));
}

/** A FileLedger whose start-up notices are collected instead of printed. */
function ledgerAt(path: string) {
  const notices: string[] = [];
  const ledger = new FileLedger(path, { notice: (line) => notices.push(line) });
  return { ledger, notices };
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe("a new ledger file is private", () => {
  it("is created 0600, and each folder the service creates 0700", async () => {
    const dir = tempDir();
    const path = join(dir, "data", "evidence", "ledger.jsonl");
    const { ledger, notices } = ledgerAt(path);
    await ledger.ready();
    await ledger.append(record("c1"));
    await ledger.close();
    expect(mode(path)).toBe(0o600);
    expect(mode(join(dir, "data"))).toBe(0o700);
    expect(mode(join(dir, "data", "evidence"))).toBe(0o700);
    expect(notices).toEqual([]);
  });

  it("is 0600 / 0700 also under umask 000: the modes are explicit, not the umask's doing", () => {
    const dir = tempDir();
    const path = join(dir, "made", "ledger.jsonl");
    const script = join(dir, "create.mts");
    writeFileSync(
      script,
      `import { FileLedger } from ${JSON.stringify(resolve("src/ledger/fileLedger.ts"))};
process.umask(0);
const l = new FileLedger(${JSON.stringify(path)});
await l.ready();
await l.close();
`,
    );
    const r = spawnSync(TSX, [script], { encoding: "utf8" });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(mode(path)).toBe(0o600);
    expect(mode(join(dir, "made"))).toBe(0o700);
  }, 20_000);
});

describe("an existing ledger file wider than 0600 is tightened at start-up", () => {
  it.each([0o644, 0o640, 0o604, 0o666, 0o700, 0o4600].map((m) => ["0" + m.toString(8), m] as const))("mode %s becomes 0600 with one line saying so; the records stay and seq goes on", async (_label, wide) => {
    const path = join(tempDir(), "ledger.jsonl");
    const first = new FileLedger(path);
    await first.append(record("c1"));
    await first.close();
    chmodSync(path, wide);
    expect(statSync(path).mode & 0o7777).toBe(wide);

    const { ledger, notices } = ledgerAt(path);
    await ledger.ready();
    expect(statSync(path).mode & 0o7777).toBe(0o600);
    expect(notices).toEqual([`consent ledger ${path} had mode 0${wide.toString(8)}; tightened to 0600 (it holds phone numbers and callers' words)`]);
    await ledger.append(record("c2"));
    await ledger.close();
    const lines = readFileSync(path, "utf8").trim().split("\n").map((l) => JSON.parse(l) as LedgerRecord);
    expect(lines.map((l) => [l.seq, l.callId])).toEqual([
      [1, "c1"],
      [2, "c2"],
    ]);
    // The chain goes on too: the new record links to the one written before the mode was fixed.
    expect(lines[1]!.prev).toBe(digestOf(lines[0]!));
  });

  it("a file already 0600 is left alone, without a line", async () => {
    const path = join(tempDir(), "ledger.jsonl");
    writeFileSync(path, "", { mode: 0o600 });
    const { ledger, notices } = ledgerAt(path);
    await ledger.ready();
    await ledger.close();
    expect(mode(path)).toBe(0o600);
    expect(notices).toEqual([]);
  });

  it("without a notice option the line goes to the console (stderr), once", async () => {
    const path = join(tempDir(), "ledger.jsonl");
    writeFileSync(path, "", { mode: 0o644 });
    chmodSync(path, 0o644);
    const warn = vi.spyOn(console, "warn").mockImplementation(() => undefined);
    const ledger = new FileLedger(path);
    await ledger.ready();
    await ledger.close();
    expect(warn).toHaveBeenCalledTimes(1);
    expect(warn.mock.calls[0]![0]).toMatch(/had mode 0644; tightened to 0600/);
  });
});

describe("existing folders are not changed (they may be shared)", () => {
  it("a 0755 folder stays 0755, silently: the file's 0600 keeps the contents private", async () => {
    const dir = join(tempDir(), "shared");
    mkdirSync(dir);
    chmodSync(dir, 0o755);
    const { ledger, notices } = ledgerAt(join(dir, "ledger.jsonl"));
    await ledger.ready();
    await ledger.close();
    expect(mode(dir)).toBe(0o755);
    expect(mode(join(dir, "ledger.jsonl"))).toBe(0o600);
    expect(notices).toEqual([]);
  });

  it("a folder others may write into (no sticky bit) stays as it is, with one warning", async () => {
    const dir = join(tempDir(), "open");
    mkdirSync(dir);
    chmodSync(dir, 0o777);
    const path = join(dir, "ledger.jsonl");
    const { ledger, notices } = ledgerAt(path);
    await ledger.ready();
    await ledger.close();
    expect(mode(dir)).toBe(0o777);
    expect(notices).toEqual([`consent ledger folder ${dir} is writable by group or others (mode 0777, no sticky bit): they can delete or replace ${path}; chmod go-w it, or move ledger.path`]);
  });

  it("a world-writable folder with the sticky bit (like /tmp) gives no warning", async () => {
    const dir = join(tempDir(), "sticky");
    mkdirSync(dir);
    chmodSync(dir, 0o1777);
    const { ledger, notices } = ledgerAt(join(dir, "ledger.jsonl"));
    await ledger.ready();
    await ledger.close();
    expect(statSync(dir).mode & 0o7777).toBe(0o1777);
    expect(notices).toEqual([]);
  });
});

describe("a wide ledger file the service cannot tighten stops start-up", () => {
  /**
   * A file of another user, open to everyone (0666): this process can write it but not chmod it.
   * As root the service runs as `nobody` against a root-owned file; otherwise /dev/null (root's,
   * 0666) is such a file.
   */
  function foreignWideFile(): { path: string; uid?: number; gid?: number; dir: string } {
    const dir = tempDir();
    chmodSync(dir, 0o755); // nobody must read the config in it
    if (process.getuid?.() !== 0) return { path: "/dev/null", dir };
    const path = join(dir, "ledger.jsonl");
    writeFileSync(path, "");
    chmodSync(path, 0o666);
    return { path, uid: 65534, gid: 65534, dir };
  }

  /**
   * As root the service runs as `nobody`, who must reach the package to run it: a checkout in a
   * private folder (a 0700 temporary directory, as CI may use) gets traversal (o+x) on the way
   * there for the test's duration, and its old modes back afterwards.
   */
  function letNobodyReach(dir: string): () => void {
    const changed: Array<[string, number]> = [];
    for (let d = resolve(dir); ; d = dirname(d)) {
      const mode = statSync(d).mode & 0o7777;
      if ((mode & 0o001) === 0) {
        chmodSync(d, mode | 0o001);
        changed.push([d, mode]);
      }
      if (dirname(d) === d) break;
    }
    return () => {
      for (const [d, mode] of changed) chmodSync(d, mode);
    };
  }

  it("start-up (src/main.ts) exits 1 with one line naming the file, its mode and the fix; the file is not written", async () => {
    const target = foreignWideFile();
    const restore = target.uid !== undefined ? letNobodyReach(process.cwd()) : () => undefined;
    try {
      await expectRefused(target);
    } finally {
      restore();
    }
  }, 30_000);

  async function expectRefused(target: ReturnType<typeof foreignWideFile>): Promise<void> {
    const config = join(target.dir, "agent.yaml");
    const yaml = readFileSync("config/agent.yaml", "utf8");
    expect(yaml).toContain("path: data/consent-ledger.jsonl");
    writeFileSync(config, yaml.replace("path: data/consent-ledger.jsonl", `path: ${target.path}`));
    chmodSync(config, 0o644);
    const child = spawn(TSX, ["src/main.ts"], {
      env: { PATH: process.env.PATH!, HOME: tmpdir(), CONFIG: config, OPENAI_API_KEY: "k", HOST: "127.0.0.1", PORT: "0" },
      stdio: ["ignore", "pipe", "pipe"],
      ...(target.uid !== undefined ? { uid: target.uid, gid: target.gid } : {}),
    });
    let stderr = "";
    let stdout = "";
    child.stderr.on("data", (c) => (stderr += c));
    child.stdout.on("data", (c) => (stdout += c));
    // A child that cannot even be started fails the test at once, with the reason.
    const code = await new Promise<number | null>((done, fail) => {
      child.on("exit", (c) => done(c));
      child.on("error", fail);
    });
    expect(code, stderr + stdout).toBe(1);
    const lines = stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      new RegExp(`^aiflow-sms-agent: consent ledger ${target.path.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")} has mode 0666, wider than 0600, and cannot be made private \\(EPERM; it belongs to uid 0, not to this process\\): chmod 600 it as its owner`),
    );
    expect(statSync(target.path).mode & 0o777).toBe(0o666);
    if (target.path !== "/dev/null") expect(readFileSync(target.path, "utf8")).toBe("");
  }
});
