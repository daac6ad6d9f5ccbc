import type { ConsentLedger, LedgerRecord, LedgerRecordInput } from "../ledger/ledger.js";
import type { Metrics } from "./metrics.js";

/**
 * A ConsentLedger that counts what it durably recorded. Forwards every call to the inner
 * ledger; only after an append succeeded is the record counted. Counting can never fail an
 * append: a rejected append means "no evidence, no SMS" to the gate, so a metrics bug there
 * would refuse an SMS whose evidence is already on disk.
 */
export class MeteredLedger implements ConsentLedger {
  constructor(
    readonly inner: ConsentLedger,
    private readonly metrics: Pick<Metrics, "observeLedger">,
  ) {}

  ready(): Promise<void> {
    return this.inner.ready();
  }

  async append(rec: LedgerRecordInput): Promise<void> {
    await this.inner.append(rec);
    try {
      this.metrics.observeLedger(rec.kind, rec.outcome);
    } catch {
      // Metrics are best effort; the record is written.
    }
  }

  recordsOf(callId: string): Promise<LedgerRecord[]> {
    return this.inner.recordsOf ? this.inner.recordsOf(callId) : Promise.resolve([]);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
