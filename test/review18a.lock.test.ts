import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { FileLedger } from "../src/ledger/fileLedger.js";
import { lockPathOf } from "../src/ledger/fileLock.js";

/**
 * Review 18a: the lock file trusts `kill(pid, 0)`. A holder in another pid namespace (the CLI in a
 * second container sharing the ledger volume) has a pid that does not exist in the service's
 * namespace, so the service calls its live lock stale, breaks it, and appends while the
 * maintenance rewrite runs: the rename then drops the record. Needs `unshare` (root).
 */

function absentPid(): number {
  for (let p = 3; p < 200; p++) {
    try {
      process.kill(p, 0);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ESRCH") return p;
    }
  }
  throw new Error("no free low pid");
}

describe("review18a: lock held in another pid namespace", () => {
  it("an append waits for a live holder in another container; the record survives the rewrite", async () => {
    // The machine the tests run on (root, util-linux) has both; say so plainly where it has not.
    if (!existsSync("/usr/bin/unshare") || process.getuid?.() !== 0) throw new Error("this test needs /usr/bin/unshare and root, to run the lock's holder in a pid namespace of its own");
    const dir = mkdtempSync(join(tmpdir(), "review18a-lock-"));
    const path = join(dir, "ledger.jsonl");
    const first = new FileLedger(path, { notice: () => undefined });
    await first.append({ id: "c1:e2:consent_asked:0", kind: "consent_asked", callId: "c1", at: "2026-02-01T10:00:00Z", number: "4915112345678", question: "SMS?" });

    // Inside the namespace: sh is pid 1, each /bin/true takes the next pid, node gets `target`.
    const target = absentPid();
    const burn = Array.from({ length: target - 2 }, () => "/bin/true").join("; ");
    const node = process.execPath;
    const tsx = resolve("node_modules/tsx/dist/esm/index.mjs");
    const child = spawn("unshare", ["--pid", "--fork", "sh", "-c", `${burn ? burn + "; " : ""}${node} --import ${tsx} test/review18a.lockChild.ts ${path} 1500`], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    const locked = new Promise<void>((ok) => child.stdout.on("data", (d: Buffer) => ((out += d.toString()), out.includes("locked") && ok())));
    const exited = new Promise((ok) => child.on("close", ok));
    await locked;
    expect(readFileSync(lockPathOf(path), "utf8").split(" ")[0]).toBe(String(target));

    // The running service appends meanwhile; it must wait for the rewrite (lockWaitMs 5 s).
    await first.append({ id: "c1:e3:consent_given:0", kind: "consent_given", callId: "c1", at: "2026-02-01T10:00:03Z", number: "4915112345678", reply: "Ja." });
    await exited;
    await first.close();
    const text = readFileSync(path, "utf8");
    expect(text, "the consent_given the service wrote (append resolved: durable) is gone").toContain("c1:e3:consent_given:0");
  });
});
