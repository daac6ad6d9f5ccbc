import type { ConsentLedger, LedgerRecord, LedgerRecordInput, OptOutChange, OptOutEntry, OptOutResult } from "../ledger/ledger.js";
import type { Metrics } from "./metrics.js";

/**
 * A ConsentLedger that counts what it durably recorded. Forwards every call to the inner
 * ledger; only after an append succeeded is the record counted. Counting can never fail an
 * append: a rejected append means "no evidence, no SMS" to the gate, so a metrics bug there
 * would refuse an SMS whose evidence is already on disk.
 */
export class MeteredLedger implements ConsentLedger {
  /** The do-not-text list, forwarded only when the inner ledger keeps one (its absence stays visible). */
  readonly optedOut?: (number: string) => Promise<boolean>;
  readonly setOptOut?: (change: OptOutChange) => Promise<OptOutResult>;
  readonly optOutEntries?: () => Promise<OptOutEntry[]>;

  constructor(
    readonly inner: ConsentLedger,
    private readonly metrics: Pick<Metrics, "observeLedger">,
    /** Every durably written record (the call review's timeline); best effort like the metrics. */
    private readonly onAppended?: (rec: LedgerRecordInput) => void,
  ) {
    if (inner.optedOut) this.optedOut = (number) => inner.optedOut!(number);
    if (inner.setOptOut) this.setOptOut = (change) => inner.setOptOut!(change);
    if (inner.optOutEntries) this.optOutEntries = () => inner.optOutEntries!();
  }

  ready(): Promise<void> {
    return this.inner.ready();
  }

  async append(rec: LedgerRecordInput): Promise<void> {
    await this.inner.append(rec);
    try {
      this.metrics.observeLedger(rec.kind, rec.outcome);
      this.onAppended?.(rec);
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
