import { digestOf, GENESIS, prepareRecord, sealRecord } from "./chain.js";
import type { ConsentLedger, LedgerRecord, LedgerRecordInput } from "./ledger.js";
import { NumberHasher } from "./numberHash.js";

/**
 * For tests, evals and the demo: keeps chained records in memory (the same records the file and
 * PostgreSQL ledgers write, so `verifyChain` checks them too); a repeated id is stored once. Can
 * be told to fail, to test fail-closed sends.
 */
export class MemoryLedger implements ConsentLedger {
  readonly records: LedgerRecord[] = [];
  failWrites = false;
  private readonly ids = new Set<string>();

  constructor(readonly hasher: NumberHasher = NumberHasher.full()) {}

  async append(rec: LedgerRecordInput): Promise<void> {
    if (this.failWrites) throw new Error("ledger unavailable (simulated)");
    const prepared = prepareRecord(rec, this.hasher);
    if (this.ids.has(rec.id)) return;
    this.ids.add(rec.id);
    const last = this.records.at(-1);
    this.records.push(sealRecord(prepared, (last?.seq ?? 0) + 1, last ? digestOf(last) : GENESIS));
  }
  async recordsOf(callId: string): Promise<LedgerRecord[]> {
    return this.records.filter((r) => r.callId === callId);
  }
  async ready(): Promise<void> {}
  async close(): Promise<void> {}
}
