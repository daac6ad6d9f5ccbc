import { digestOf, GENESIS } from "./chain.js";
import type { LedgerRecord } from "./ledger.js";
import { LEGACY_PREFIX } from "./numberHash.js";

/**
 * `npm run ledger -- verify`: checks a ledger as an auditor would, from the records alone (never
 * from today's config):
 * - the chain: every record's `prev` is the digest of the record before it, positions have no
 *   gaps, no id is stored twice, and a purge's anchor is confirmed by its purge record;
 * - consent: every approval (`sms_approved`, legacy `sms_sent`) follows, in the same call, a
 *   `consent_given` answering a `consent_asked` for that number;
 * - outcomes: every approval has one outcome (`sms_handed_over` or `sms_not_sent`). An approval
 *   without one is reported as `outcome_unknown` once its call is surely over (`openCallMs`
 *   after the approval), never guessed: at start-up an instance cannot know whether another
 *   is still sending it.
 * Records are fed in chain order (`push`), so a large ledger is checked without holding it.
 */

export interface VerifyProblem {
  seq: number;
  id?: string;
  callId?: string;
  problem: string;
}

export interface VerifyReport {
  ok: boolean;
  records: number;
  /** The first record found bad (in chain order); undefined when ok. */
  firstProblem?: VerifyProblem;
  /** Every problem found (at most `maxProblems`). */
  problems: VerifyProblem[];
  /** Records from before the chain (no `prev`), and numbers hashed with plain SHA-256. */
  legacy: { records: number; sha256Numbers: number };
  /** Approvals without an outcome whose call is over: what became of the send is not known. */
  outcomeUnknown: VerifyProblem[];
  /** Approvals without an outcome yet, in calls that may still run. */
  pending: VerifyProblem[];
  erased: number;
  /** The anchor a purge left: the chain starts after its position. */
  anchor?: { seq: number; digest: string };
  /** The last record's position and digest: noted elsewhere, it lets a later verify see a change at the end. */
  head?: { seq: number; digest: string };
}

export interface VerifyOptions {
  now?: Date;
  /** How long after an approval its call may still be running (default 6 hours). */
  openCallMs?: number;
  maxProblems?: number;
  /** Check the chain links (default). Off for a part of the ledger (one call's records). */
  links?: boolean;
  /**
   * Heads known from elsewhere: `exact` (PostgreSQL's head row) must be the last record; otherwise
   * (a head an operator noted earlier, `verify --head SEQ:DIGEST`) the chain must still hold that
   * record with that digest. Without one, a change to the last record cannot be seen.
   */
  heads?: Array<{ seq: number; digest: string; exact?: boolean; source: string }>;
}

const APPROVALS = new Set(["sms_approved", "sms_sent"]);
const OUTCOMES = new Set(["sms_handed_over", "sms_not_sent"]);

interface CallFacts {
  asked: LedgerRecord[];
  given: LedgerRecord[];
  approvals: Map<string, LedgerRecord>;
  outcomes: Set<string>;
}

/**
 * Whether two records name the same number as stored. An erased record, or two hashed under
 * different keys (a call that spanned a key rotation), cannot be compared without the keys, which
 * verify never uses: those count as the same.
 */
function sameNumber(a: LedgerRecord, b: LedgerRecord): boolean {
  if (a.erased || b.erased) return true;
  if (a.keyId !== undefined && b.keyId !== undefined && a.keyId !== b.keyId) return true;
  return a.number === b.number && (a.keyId ?? "") === (b.keyId ?? "");
}

export class ChainVerifier {
  private readonly now: number;
  private readonly openCallMs: number;
  private readonly maxProblems: number;
  private readonly links: boolean;
  private previous: LedgerRecord | undefined;
  private chained = false;
  private count = 0;
  private readonly ids = new Set<string>();
  private readonly calls = new Map<string, CallFacts>();
  private readonly problems: VerifyProblem[] = [];
  private readonly legacy = { records: 0, sha256Numbers: 0 };
  private anchor: { seq: number; digest: string } | undefined;
  private anchorConfirmed = false;
  /** The time of the last record a purge removed (the anchor's `at`). */
  private anchorAt = -Infinity;
  private readonly erasedBy = new Map<string, VerifyProblem>();
  private readonly erasureIds = new Map<string, Set<string>>();
  private erasedCount = 0;
  private readonly heads: NonNullable<VerifyOptions["heads"]>;
  private readonly headsSeen = new Set<number>();

  constructor(opts: VerifyOptions = {}) {
    this.now = (opts.now ?? new Date()).getTime();
    this.openCallMs = opts.openCallMs ?? 6 * 3_600_000;
    this.maxProblems = opts.maxProblems ?? 100;
    this.links = opts.links ?? true;
    this.heads = opts.heads ?? [];
  }

  private bad(r: LedgerRecord, problem: string): void {
    if (this.problems.length < this.maxProblems) this.problems.push({ seq: r.seq, ...(r.id ? { id: r.id } : {}), callId: r.callId, problem });
  }

  private facts(callId: string): CallFacts {
    let f = this.calls.get(callId);
    if (!f) this.calls.set(callId, (f = { asked: [], given: [], approvals: new Map(), outcomes: new Set() }));
    return f;
  }

  push(r: LedgerRecord): void {
    this.count++;
    const prev = this.previous;
    this.previous = r;
    if (r.id !== undefined) {
      if (this.ids.has(r.id)) this.bad(r, `id ${r.id} is stored twice`);
      this.ids.add(r.id);
    }
    if (r.number?.startsWith(LEGACY_PREFIX)) this.legacy.sha256Numbers++;
    if (r.erased && r.kind !== "anchor") {
      if (!r.erased.personal) this.bad(r, "a tombstone without the hash of the personal fields it removed: the fields it shows are not covered by the chain");
      this.erasedCount++;
      this.erasedBy.set(r.id ?? `#${r.seq}`, { seq: r.seq, ...(r.id ? { id: r.id } : {}), callId: r.callId, problem: r.erased.by });
    }
    if (this.links) this.checkLink(r, prev);
    this.checkMeaning(r);
    for (const [i, h] of this.heads.entries()) {
      if (h.exact || h.seq !== r.seq) continue;
      this.headsSeen.add(i);
      if (digestOf(r) !== h.digest) this.bad(r, `its digest differs from the one ${h.source} holds for position ${h.seq}: this record was changed`);
    }
  }

  private checkLink(r: LedgerRecord, prev: LedgerRecord | undefined): void {
    if (r.kind === "anchor") {
      if (prev) return this.bad(r, "an anchor (left by a purge) that is not the first record: records before it were put back or it was inserted");
      if (!r.erased?.digest) return this.bad(r, "an anchor without the digest of the last purged record");
      // Legacy records may still follow (a purge that cut into them); the next chained record links to the anchor or to them.
      this.anchor = { seq: r.seq, digest: r.erased.digest };
      this.anchorAt = Date.parse(r.at);
      return;
    }
    if (r.prev === undefined) {
      // From before the chain: only at the start of the ledger.
      if (this.chained) return this.bad(r, "a record without a chain link after the chain began (inserted afterwards?)");
      this.legacy.records++;
      return;
    }
    const first = !this.chained;
    this.chained = true;
    if (!prev) {
      if (r.seq !== 1 || r.prev !== GENESIS) this.bad(r, `the ledger starts at position ${r.seq} without an anchor: the records before it are missing`);
      return;
    }
    if (!first && r.seq !== prev.seq + 1) return this.bad(r, `position ${r.seq} follows ${prev.seq}: ${r.seq > prev.seq ? `${r.seq - prev.seq - 1} record(s) missing` : "records out of order"}`);
    if (r.prev !== digestOf(prev)) {
      this.bad(prev, `its content does not match the digest the next record (position ${r.seq}) holds: this record (or that link) was changed`);
    }
  }

  private checkMeaning(r: LedgerRecord): void {
    const f = this.facts(r.callId);
    switch (r.kind) {
      case "consent_asked":
        f.asked.push(r);
        return;
      case "consent_given": {
        const answered = r.ref ? f.asked.find((a) => a.id === r.ref) : f.asked.findLast((a) => sameNumber(a, r));
        if (!answered && !this.spansCut(r)) this.bad(r, `consent_given in call ${r.callId} answers no consent_asked ${r.ref ? `(ref ${r.ref})` : "for that number"} before it`);
        if (answered && !sameNumber(answered, r)) this.bad(r, `consent_given in call ${r.callId} is for another number than the question it answers`);
        f.given.push(r);
        return;
      }
      case "purge":
        if (this.anchor && r.maintenance?.through === this.anchor.seq && r.maintenance.digest === this.anchor.digest) this.anchorConfirmed = true;
        return;
      case "erasure":
        this.erasureIds.set(r.id ?? `#${r.seq}`, new Set(r.maintenance?.ids ?? []));
        return;
    }
    if (APPROVALS.has(r.kind)) {
      const given = r.ref ? f.given.find((g) => g.id === r.ref) : f.given.findLast((g) => sameNumber(g, r));
      if (!given) {
        // A purge may have removed the consent of a call that spans the cut; without an anchor nothing can have.
        if (!this.spansCut(r) || f.asked.length > 0) this.bad(r, `${r.kind} in call ${r.callId} without a consent_given for that number before it`);
      } else if (!sameNumber(given, r)) this.bad(r, `${r.kind} in call ${r.callId} is for another number than the consent it names`);
      if (r.kind === "sms_approved" && r.id) f.approvals.set(r.id, r);
      return;
    }
    if (OUTCOMES.has(r.kind)) {
      if (!r.ref) return this.bad(r, `${r.kind} names no approval (ref)`);
      if (!f.approvals.has(r.ref)) {
        if (!this.spansCut(r)) this.bad(r, `${r.kind} for ${r.ref}, which is no sms_approved of call ${r.callId} before it`);
        return;
      }
      if (f.outcomes.has(r.ref)) return this.bad(r, `a second outcome for ${r.ref}`);
      f.outcomes.add(r.ref);
    }
  }

  /**
   * Whether what this record rests on may have been purged: only in a call that was running when
   * the purged prefix ended (its question asked, or the record written, within a call's length
   * of the last removed record). Any other record must find what it rests on in the chain.
   */
  private spansCut(r: LedgerRecord): boolean {
    if (!this.anchor) return false;
    const t = Date.parse(r.consentAskedAt ?? r.at);
    return t - this.anchorAt <= this.openCallMs;
  }

  finish(): VerifyReport {
    if (this.links && this.anchor && !this.anchorConfirmed) {
      this.problems.unshift({ seq: this.anchor.seq, problem: "the anchor is confirmed by no purge record (through and digest): it may have been forged" });
    }
    // A part of the ledger (show CALL_ID) does not hold the erasure records: only the whole chain can check them.
    for (const [id, p] of this.links ? this.erasedBy : []) {
      const listed = this.erasureIds.get(p.problem);
      if (!listed?.has(id)) this.problems.push({ ...p, problem: `erased, but erasure ${p.problem} does not list it` });
    }
    const last = this.previous;
    for (const [i, h] of this.heads.entries()) {
      if (h.exact) {
        if (!last || last.seq !== h.seq || digestOf(last) !== h.digest) {
          const at = last ? { seq: last.seq, ...(last.id ? { id: last.id } : {}), callId: last.callId } : { seq: 0 };
          this.problems.push({ ...at, problem: `${h.source} says the chain ends at position ${h.seq}${last && last.seq === h.seq ? " with another digest: the last record was changed" : `, the records end at ${last?.seq ?? 0}: records at the end were removed or added outside the ledger`}` });
        }
      } else if (!this.headsSeen.has(i)) {
        this.problems.push({ seq: h.seq, problem: `${h.source} names position ${h.seq}, which the chain does not hold (removed, or purged since)` });
      }
    }
    const outcomeUnknown: VerifyProblem[] = [];
    const pending: VerifyProblem[] = [];
    for (const [callId, f] of this.calls) {
      for (const [id, a] of f.approvals) {
        if (f.outcomes.has(id)) continue;
        const over = this.now - Date.parse(a.at) > this.openCallMs;
        (over ? outcomeUnknown : pending).push({ seq: a.seq, id, callId, problem: over ? "outcome_unknown: approved, and no record says whether it was handed over" : "no outcome yet (the call may still run)" });
      }
    }
    const problems = this.problems.slice().sort((a, b) => a.seq - b.seq);
    return {
      ok: problems.length === 0,
      records: this.count,
      ...(problems[0] ? { firstProblem: problems[0] } : {}),
      problems,
      legacy: this.legacy,
      outcomeUnknown: outcomeUnknown.sort((a, b) => a.seq - b.seq),
      pending: pending.sort((a, b) => a.seq - b.seq),
      erased: this.erasedCount,
      ...(this.anchor ? { anchor: this.anchor } : {}),
      ...(last ? { head: { seq: last.seq, digest: digestOf(last) } } : {}),
    };
  }
}

/** Checks records already in memory (chain order). */
export function verifyRecords(records: Iterable<LedgerRecord>, opts: VerifyOptions = {}): VerifyReport {
  const v = new ChainVerifier(opts);
  for (const r of records) v.push(r);
  return v.finish();
}
