import { mkdtempSync, renameSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { FileLedger } from "../src/ledger/fileLedger.js";
import { purgeFile } from "../src/ledger/fileMaintenance.js";
import { NumberHasher } from "../src/ledger/numberHash.js";
import { optOutPathOf } from "../src/ledger/optOutFile.js";
import { CALLER } from "./support/events.js";

/** Review 18b: a caller's opt-out must outlive a purge of the file ledger (issue 18 points 4 and 6). */

describe("review18b: a caller's opt-out outlives retention", () => {
  const old = new Date("2026-01-10T09:00:00.000Z");
  const later = new Date(old.getTime() + 1826 * 86_400_000 + 86_400_000);

  async function optedOutThenPurged(hasher: NumberHasher, laterHasher = hasher) {
    const dir = mkdtempSync(join(tmpdir(), "review18b-optout-"));
    const path = join(dir, "ledger.jsonl");
    const l = new FileLedger(path, { hasher, notice: () => undefined });
    await l.ready();
    await l.setOptOut({ id: "c1:e4:opt_out_added:0", add: true, number: CALLER, by: "caller", callId: "c1", at: old.toISOString(), detail: "the caller in call c1, for their own number", reply: "Schicken Sie mir nie wieder eine SMS." });
    await l.close();
    // A later call, written after the key was rotated (the old key still in LEDGER_HASH_KEYS_OLD).
    const l2 = new FileLedger(path, { hasher: laterHasher, notice: () => undefined });
    await l2.ready();
    await l2.append({ id: "c2:e2:consent_asked:0", kind: "consent_asked", callId: "c2", at: later.toISOString(), number: "4915199999999", question: "Darf ich?" });
    await l2.close();
    // The retention (ledger.retentionDays, 1826) has passed for the opt-out record: purge as `npm run ledger -- purge` does.
    const purged = await purgeFile(path, new Date(later.getTime() - 1000), later);
    expect(purged.deleted).toBe(1);
    return path;
  }

  it("a purge, then the list rebuilt from the ledger (as its own error message tells the operator): the caller is still opted out", async () => {
    const path = await optedOutThenPurged(NumberHasher.full());
    const before = new FileLedger(path, { notice: () => undefined });
    await before.ready();
    expect(await before.optedOut(CALLER), "listed before the list file is rebuilt").toBe(true);
    await before.close();
    // "move it away; the next start rebuilds it from the ledger"
    renameSync(optOutPathOf(path), optOutPathOf(path) + ".bad");
    // The purged ledger no longer holds every opt-out: no rebuild from it; sends are refused until the list is restored.
    const l = new FileLedger(path, { notice: () => undefined });
    const answer = await l.ready().then(() => l.optedOut(CALLER)).then((listed) => ({ listed }), (e: Error) => ({ refused: e.message }));
    await l.close();
    expect(answer, "opt-out forgotten after purge + rebuild").toEqual({ refused: expect.stringMatching(/was purged .*restore .* from a backup/) });
  });
});
