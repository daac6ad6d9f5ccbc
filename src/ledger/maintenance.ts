import { digestOf, tombstone } from "./chain.js";
import type { LedgerRecord } from "./ledger.js";
import type { NumberHasher } from "./numberHash.js";

/**
 * What a purge and an erasure do to a chain, whatever stores it (file or PostgreSQL):
 * - a purge removes the longest prefix of the chain that lies wholly before the retention
 *   cut-off, leaves an `anchor` standing in for the last removed record (its position, time and
 *   digest, so the first kept record still links to it), and appends a `purge` record that names
 *   the same position and digest (so an anchor nobody's purge wrote is found);
 * - an erasure replaces the personal fields of one number's records with a tombstone keeping
 *   each record's digest (the chain still verifies) and appends an `erasure` record listing them.
 */

/** How many leading records a purge may remove: those before the first record at or after `before`. */
export function purgeablePrefix(records: readonly LedgerRecord[], before: Date): number {
  const cut = before.getTime();
  let n = 0;
  while (n < records.length && Date.parse(records[n]!.at) < cut) n++;
  // Only an earlier anchor: nothing new to remove.
  if (n === 1 && records[0]!.kind === "anchor") return 0;
  return n;
}

export interface PurgePlan {
  anchor: LedgerRecord;
  /** The purge record, without its chain place (appended after the chain's last record). */
  purge: { id: string; kind: "purge"; callId: string; at: string; maintenance: { through: number; digest: string; count: number; before: string } };
}

/** The anchor for a removed prefix ending with `lastRemoved`, and the purge record to append. */
export function planPurge(lastRemoved: LedgerRecord, count: number, before: Date, now: Date): PurgePlan {
  const digest = digestOf(lastRemoved);
  const purgeId = `purge:${now.toISOString()}:${lastRemoved.seq}`;
  return {
    anchor: { seq: lastRemoved.seq, id: `anchor:${lastRemoved.seq}:${now.toISOString()}`, kind: "anchor", callId: "", at: lastRemoved.at, erased: { digest, by: purgeId } },
    purge: { id: purgeId, kind: "purge", callId: "", at: now.toISOString(), maintenance: { through: lastRemoved.seq, digest, count, before: before.toISOString() } },
  };
}

/** Kinds an erasure leaves alone: a caller's wish not to be texted must outlive the erasure of their other records. */
const KEPT_ON_ERASURE = new Set(["opt_out_added", "opt_out_removed", "anchor", "purge", "erasure"]);

/** Whether a record is about this number: its stored number, or (full numbers) its text naming it. */
export function isAboutNumber(r: LedgerRecord, number: string, hasher: NumberHasher): boolean {
  if (KEPT_ON_ERASURE.has(r.kind) || r.erased) return false;
  if (hasher.matches(r.number, number, r.keyId)) return true;
  const digits = number.replace(/\D/g, "");
  const national = digits.startsWith("49") ? "0" + digits.slice(2) : undefined;
  // The whole number, not the start of a longer one (+49 30 1234567 is not +49 30 12345678).
  const forms = [digits, ...(national !== undefined ? [national, "49" + national] : [])]; // 49…, 0…, +49 (0)…
  const whole = new RegExp(`(?<!\\d)(?:${forms.join("|")})(?!\\d)`);
  return [r.question, r.reply, r.message, r.detail].some((t) => {
    if (!t) return false;
    return whole.test(t.replace(/[\s\-/.()]/g, ""));
  });
}

export interface ErasurePlan {
  tombstones: LedgerRecord[];
  erasure: { id: string; kind: "erasure"; callId: string; at: string; maintenance: { ids: string[]; count: number } };
}

/** The tombstones for one number's records and the erasure record to append. */
export function planErasure(records: readonly LedgerRecord[], number: string, hasher: NumberHasher, now: Date): ErasurePlan {
  const erasureId = `erasure:${now.toISOString()}`;
  const about = records.filter((r) => isAboutNumber(r, number, hasher));
  const tombstones = about.map((r) => tombstone(r, erasureId));
  const ids = about.map((r) => r.id ?? `#${r.seq}`);
  return { tombstones, erasure: { id: erasureId, kind: "erasure", callId: "", at: now.toISOString(), maintenance: { ids, count: ids.length } } };
}

/**
 * Key ids of hashed records the hasher has no key for (dropped from LEDGER_HASH_KEYS_OLD too
 * early): their numbers cannot be matched, so an access or erasure request cannot be complete.
 */
export function unknownKeyIds(records: Iterable<LedgerRecord>, hasher: NumberHasher): string[] {
  const unknown = new Set<string>();
  for (const r of records) if (r.keyId !== undefined && !r.erased && !hasher.knowsKey(r.keyId)) unknown.add(r.keyId);
  return [...unknown].sort();
}
