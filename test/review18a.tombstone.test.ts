import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { digestOf, sealRecord } from "../src/ledger/chain.js";
import { FileLedger } from "../src/ledger/fileLedger.js";
import { eraseFromFile } from "../src/ledger/fileMaintenance.js";
import type { LedgerRecord, LedgerRecordInput } from "../src/ledger/ledger.js";
import { NumberHasher } from "../src/ledger/numberHash.js";
import { parseLedgerText } from "../src/ledger/readLedger.js";
import { verifyRecords } from "../src/ledger/verify.js";

/**
 * Review 18a: a tombstone's digest is taken on trust (digestOf returns erased.digest), so every
 * field an erasure keeps (kind, callId, at, ref, outcome, reason, model, consent times) is covered
 * by no digest at all. Changing them passes verify, even with the head the auditor noted earlier.
 */

const ALICE = "4915112345678";
const BOB = "4915798765432";

function call(callId: string, number: string, at: Date): LedgerRecordInput[] {
  const t = (s: number) => new Date(at.getTime() + s * 1000).toISOString();
  return [
    { id: `${callId}:e2:consent_asked:0`, kind: "consent_asked", callId, at: t(0), number, question: "Darf ich Ihnen eine SMS schicken?" },
    { id: `${callId}:e3:consent_given:0`, kind: "consent_given", callId, at: t(3), number, reply: "Ja.", ref: `${callId}:e2:consent_asked:0` },
    { id: `${callId}:e3:sms_approved:0`, kind: "sms_approved", callId, at: t(4), number, message: "Adresse: Hauptstr. 1", ref: `${callId}:e3:consent_given:0` },
    { id: `${callId}:e3:sms_not_sent:0`, kind: "sms_not_sent", callId, at: t(5), number, reason: "withdrawn_by_no", ref: `${callId}:e3:sms_approved:0` },
  ];
}

async function ledgerOf(inputs: LedgerRecordInput[]): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "review18a-tomb-"));
  const path = join(dir, "ledger.jsonl");
  const l = new FileLedger(path, { notice: () => undefined });
  for (const r of inputs) await l.append(r);
  await l.close();
  return path;
}

const read = (path: string) => parseLedgerText(readFileSync(path, "utf8")).records;
const write = (path: string, recs: LedgerRecord[]) => writeFileSync(path, recs.map((r) => JSON.stringify(r)).join("\n") + "\n");

describe("review18a: tombstones are not covered by the chain", () => {
  it("a legitimately erased record can afterwards be rewritten (kind, time, reason) and verify, with the noted head, still passes", async () => {
    const now = new Date("2026-03-01T10:00:00Z");
    const path = await ledgerOf([...call("c1", ALICE, new Date("2026-02-01T10:00:00Z")), ...call("c2", BOB, new Date("2026-02-02T10:00:00Z"))]);
    await eraseFromFile(path, ALICE, NumberHasher.full(), now);
    const before = verifyRecords(read(path), { now });
    expect(before.ok).toBe(true);
    const noted = { ...before.head!, source: "--head noted by the auditor" };

    // Afterwards: Alice's "not sent, withdrawn by her no" becomes "handed over", an hour later.
    const recs = read(path);
    const r = recs.find((x) => x.id === "c1:e3:sms_not_sent:0")!;
    expect(r.erased).toBeDefined();
    r.kind = "sms_handed_over";
    r.outcome = "handed_over";
    delete r.reason;
    r.at = "2026-02-01T11:00:00.000Z";
    write(path, recs);

    const after = verifyRecords(read(path), { now, heads: [noted] });
    expect(after.ok, "a changed tombstone must break the chain").toBe(false);
  });

  it("any record can be rewritten by dressing it as a tombstone and appending a matching erasure record after the noted head", async () => {
    const now = new Date("2026-03-01T10:00:00Z");
    const path = await ledgerOf([...call("c1", ALICE, new Date("2026-02-01T10:00:00Z")), ...call("c2", BOB, new Date("2026-02-02T10:00:00Z"))]);
    const before = verifyRecords(read(path), { now });
    expect(before.ok).toBe(true);
    const noted = { ...before.head!, source: "--head noted by the auditor" };

    const recs = read(path);
    const victim = recs.find((x) => x.id === "c2:e3:sms_not_sent:0")!;
    const digest = digestOf(victim);
    victim.kind = "sms_handed_over";
    victim.outcome = "handed_over";
    delete victim.reason;
    delete victim.number;
    victim.erased = { digest, by: "erasure:forged" };
    const last = recs.at(-1)!;
    recs.push(sealRecord({ id: "erasure:forged", kind: "erasure", callId: "", at: now.toISOString(), maintenance: { ids: [victim.id!], count: 1 } }, last.seq + 1, digestOf(last)));
    write(path, recs);

    const after = verifyRecords(read(path), { now, heads: [noted] });
    expect(after.ok, "the record's kind, outcome and reason were changed").toBe(false);
  });
});
