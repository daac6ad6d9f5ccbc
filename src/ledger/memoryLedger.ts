import type { ConsentLedger, LedgerRecord, LedgerRecordInput } from "./ledger.js";

/** For tests and evals: keeps records in memory; can be told to fail to test fail-closed sends. */
export class MemoryLedger implements ConsentLedger {
  readonly records: LedgerRecord[] = [];
  failWrites = false;
  private readonly ids = new Set<string>();

  async append(rec: LedgerRecordInput): Promise<void> {
    if (this.failWrites) throw new Error("ledger unavailable (simulated)");
    // Idempotent: a record whose id is stored already (a retried write) is not written again.
    if (this.ids.has(rec.id)) return;
    this.ids.add(rec.id);
    this.records.push({ seq: this.records.length + 1, ...rec });
  }
  async recordsOf(callId: string): Promise<LedgerRecord[]> {
    return this.records.filter((r) => r.callId === callId);
  }
  async ready(): Promise<void> {}
  async close(): Promise<void> {}
}
