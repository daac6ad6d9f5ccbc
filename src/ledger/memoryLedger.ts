import { digestOf, GENESIS, prepareRecord, sealRecord } from "./chain.js";
import { LedgerUnavailableError, type ConsentLedger, type LedgerRecord, type LedgerRecordInput, type OptOutChange, type OptOutEntry, type OptOutResult } from "./ledger.js";
import { NumberHasher } from "./numberHash.js";
import { applyOptOut, entriesOf, isListed, optOutRecord, type OptOutMap } from "./optOut.js";

/**
 * For tests, evals and the demo: keeps chained records in memory (the same records the file and
 * PostgreSQL ledgers write, so `verifyChain` checks them too); a repeated id is stored once. Can
 * be told to fail, to test fail-closed sends. The do-not-text list lives here too, for as long as
 * the process.
 */
export class MemoryLedger implements ConsentLedger {
  readonly records: LedgerRecord[] = [];
  failWrites = false;
  private readonly ids = new Set<string>();
  private readonly optOuts: OptOutMap = {};

  constructor(readonly hasher: NumberHasher = NumberHasher.full()) {}

  async append(rec: LedgerRecordInput): Promise<void> {
    this.write(rec);
  }

  /** Seals and keeps the record; undefined when its id is already stored. */
  private write(rec: LedgerRecordInput): LedgerRecord | undefined {
    if (this.failWrites) throw new LedgerUnavailableError("ledger unavailable (simulated)");
    const prepared = prepareRecord(rec, this.hasher);
    if (this.ids.has(rec.id)) return undefined;
    this.ids.add(rec.id);
    const last = this.records.at(-1);
    const sealed = sealRecord(prepared, (last?.seq ?? 0) + 1, last ? digestOf(last) : GENESIS);
    this.records.push(sealed);
    return sealed;
  }

  async optedOut(number: string): Promise<boolean> {
    if (this.failWrites) throw new LedgerUnavailableError("ledger unavailable (simulated)");
    return isListed(this.optOuts, this.hasher.formsOf(number));
  }

  async setOptOut(change: OptOutChange): Promise<OptOutResult> {
    const forms = this.hasher.formsOf(change.number);
    const wasListed = isListed(this.optOuts, forms);
    if (!change.add && !wasListed) return { written: false, wasListed };
    const sealed = this.write(optOutRecord(change));
    if (!sealed) return { written: false, wasListed };
    applyOptOut(this.optOuts, sealed, forms);
    return { written: true, wasListed };
  }

  async optOutEntries(): Promise<OptOutEntry[]> {
    return entriesOf(this.optOuts);
  }

  async recordsOf(callId: string): Promise<LedgerRecord[]> {
    return this.records.filter((r) => r.callId === callId);
  }
  async ready(): Promise<void> {}
  async close(): Promise<void> {}
}
