import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { FileLedger } from "../src/ledger/fileLedger.js";
import { purgeFile } from "../src/ledger/fileMaintenance.js";
import type { LedgerRecordInput } from "../src/ledger/ledger.js";
import { parseLedgerText } from "../src/ledger/readLedger.js";
import { verifyRecords } from "../src/ledger/verify.js";

/**
 * Review 18a: once a ledger has an anchor (every ledger after its first routine purge), verify
 * stops checking that an approval follows a consent, for every call that has no consent_asked in
 * the ledger, however long after the purge it happened. A send without any consent passes.
 */

const ALICE = "4915112345678";
const BOB = "4915798765432";
const DAY = 86_400_000;

function consented(callId: string, number: string, at: Date): LedgerRecordInput[] {
  const t = (s: number) => new Date(at.getTime() + s * 1000).toISOString();
  return [
    { id: `${callId}:e2:consent_asked:0`, kind: "consent_asked", callId, at: t(0), number, question: "SMS?" },
    { id: `${callId}:e3:consent_given:0`, kind: "consent_given", callId, at: t(3), number, reply: "Ja.", ref: `${callId}:e2:consent_asked:0` },
    { id: `${callId}:e3:sms_approved:0`, kind: "sms_approved", callId, at: t(4), number, message: "Adresse", ref: `${callId}:e3:consent_given:0` },
    { id: `${callId}:e3:sms_handed_over:0`, kind: "sms_handed_over", callId, at: t(4), number, ref: `${callId}:e3:sms_approved:0` },
  ];
}

/** A send nobody agreed to: approved and handed over, no question, no yes. */
function unconsented(callId: string, number: string, at: Date): LedgerRecordInput[] {
  return [
    { id: `${callId}:e2:sms_approved:0`, kind: "sms_approved", callId, at: at.toISOString(), number, message: "Werbung", consentAskedAt: at.toISOString(), consentAnsweredAt: at.toISOString() },
    { id: `${callId}:e2:sms_handed_over:0`, kind: "sms_handed_over", callId, at: at.toISOString(), number, ref: `${callId}:e2:sms_approved:0` },
  ];
}

describe("review18a: verify after a purge", () => {
  it("an approval without any consent, written long after the purge, is still reported", async () => {
    const now = new Date("2026-03-01T10:00:00Z");
    const dir = mkdtempSync(join(tmpdir(), "review18a-anchor-"));
    const path = join(dir, "ledger.jsonl");
    const l = new FileLedger(path, { notice: () => undefined });
    for (const r of consented("old", ALICE, new Date(now.getTime() - 6 * 365 * DAY))) await l.append(r);
    for (const r of consented("recent", ALICE, new Date(now.getTime() - 10 * DAY))) await l.append(r);
    await l.close();
    await purgeFile(path, new Date(now.getTime() - 5 * 365 * DAY), now);

    const l2 = new FileLedger(path, { notice: () => undefined });
    for (const r of unconsented("rogue", BOB, new Date(now.getTime() + DAY))) await l2.append(r);
    await l2.close();

    const recs = parseLedgerText(readFileSync(path, "utf8")).records;
    // Without the purge the same records fail verify:
    expect(verifyRecords(recs.filter((r) => r.kind !== "anchor" && r.kind !== "purge").map((r) => r), { links: false, now }).ok).toBe(false);
    const report = verifyRecords(recs, { now: new Date(now.getTime() + 2 * DAY) });
    expect(report.problems.map((p) => p.problem), "sms_approved in call rogue has no consent at all").toContainEqual(expect.stringMatching(/rogue/));
  });
});
