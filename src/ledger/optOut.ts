import type { LedgerRecord, LedgerRecordInput, OptOutBy, OptOutChange, OptOutEntry } from "./ledger.js";
import { AgentError } from "../core/errors.js";

/**
 * The do-not-text list, as every ledger keeps it: numbers callers (or an operator) asked never to
 * text again, beside the chain. The list is what the gate reads on every send; the chained
 * records (`opt_out_added` / `opt_out_removed`) are the evidence of each change and the source a
 * lost list is rebuilt from.
 */

export const OPT_OUT_KINDS = ["opt_out_added", "opt_out_removed"] as const;

/** The list could not be read or written: the gate refuses the send, the tool tells the caller. */
export class OptOutListError extends AgentError {
  readonly code = "opt_out_list";
}

/** The chained record of a change. */
export function optOutRecord(change: OptOutChange): LedgerRecordInput {
  return {
    id: change.id,
    kind: change.add ? "opt_out_added" : "opt_out_removed",
    callId: change.callId,
    at: change.at,
    number: change.number,
    outcome: change.by,
    detail: change.detail,
    ...(change.reply !== undefined ? { reply: change.reply } : {}),
  };
}

/** Stored form → entry: how the file and memory ledgers hold the list. */
export type OptOutMap = Record<string, Omit<OptOutEntry, "number">>;

/**
 * Applies a written change: every form the number had goes (a key rotation leaves no stale entry
 * behind), and an addition stores the form the record was written with (the current key's).
 */
export function applyOptOut(list: OptOutMap, sealed: LedgerRecord, forms: readonly string[]): void {
  for (const f of forms) delete list[f];
  if (sealed.kind !== "opt_out_added" || sealed.number === undefined) return;
  list[sealed.number] = { since: sealed.at, by: (sealed.outcome === "operator" ? "operator" : "caller") satisfies OptOutBy, record: sealed.id ?? `#${sealed.seq}`, ...(sealed.keyId ? { keyId: sealed.keyId } : {}) };
}

export function isListed(list: OptOutMap, forms: readonly string[]): boolean {
  return forms.some((f) => Object.hasOwn(list, f));
}

export function entriesOf(list: OptOutMap): OptOutEntry[] {
  return Object.entries(list)
    .map(([number, e]) => ({ number, ...e }))
    .sort((a, b) => (a.since < b.since ? -1 : a.since > b.since ? 1 : 0));
}
