import type { AiFlowAction } from "../../aiflow/actions.js";
import type { OutcomeEntry } from "../../engine/recovery.js";
import type { TurnContext } from "../../engine/turnContext.js";

/**
 * Idempotent ledger record ids: the call, the position of the event whose turn wrote the record
 * (its place in the call's queue, the same in every attempt at the event), and what the record
 * is. A retried write, or the event's turn run again after its instance died, writes the same id,
 * and the ledger stores it once.
 *
 * An approval is named by the event and its place among the sends that event's turn approved;
 * the turn's outbox entry carries the same seq and its sends in the same order, so the transport's
 * outcome (handed over, not sent) names the approval it answers without asking the ledger. A turn
 * approves at most one send (one yes covers one SMS: see consentRules' `already_used`), so that
 * place is 0 in practice; it is counted all the same.
 */

/**
 * Where the event stands in the call: `e<seq>`; without a call pipeline (an engine run on its own)
 * the turn number. In a later life of the call (its state was lost and started over, see
 * recallFromLedger) prefixed `L<life>:`, as positions start again at 1 then.
 */
function position(ctx: TurnContext): string {
  const life = (ctx.state as { sms?: { life?: number } }).sms?.life;
  const at = ctx.eventSeq !== undefined ? `e${ctx.eventSeq}` : `t${ctx.state.turn}`;
  return life ? `L${life}:${at}` : at;
}

const issued = new WeakMap<object, Map<string, number>>();

/** The id of the next record of `kind` this turn writes (how many of that kind it wrote before is part of it). */
export function evidenceId(ctx: TurnContext, kind: string): string {
  let counts = issued.get(ctx);
  if (!counts) issued.set(ctx, (counts = new Map()));
  const n = counts.get(kind) ?? 0;
  counts.set(kind, n + 1);
  return `${ctx.sessionId}:${position(ctx)}:${kind}:${n}`;
}

/** The id of the `ordinal`-th send approved in the turn of event `seq`. */
export function approvalId(callId: string, seq: number, ordinal: number): string {
  return `${callId}:e${seq}:sms_approved:${ordinal}`;
}

/** The prefix every approval of event `seq`'s turn has. */
export function approvalPrefix(callId: string, seq: number): string {
  return `${callId}:e${seq}:sms_approved:`;
}

/** The approval id this turn's next approved send gets (undefined when the turn has no event position). */
export function nextApprovalId(ctx: TurnContext, approvedBefore: number): string | undefined {
  return ctx.eventSeq !== undefined ? approvalId(ctx.sessionId, ctx.eventSeq, approvedBefore) : undefined;
}

/** The one outcome of `kind` an approval gets (a retried write, or two instances settling it, stores it once). */
export function outcomeId(approval: string, kind: "sms_handed_over" | "sms_not_sent"): string {
  return `${approval}:${kind}`;
}

/** Each send of the entries with the id of its approval: the entry's event and the send's place among the entry's sends. */
export function approvedSends(callId: string, entries: readonly OutcomeEntry[]): Array<{ approval: string; send: AiFlowAction & { type: "send_sms" } }> {
  const out: Array<{ approval: string; send: AiFlowAction & { type: "send_sms" } }> = [];
  for (const e of entries) {
    let ordinal = 0;
    for (const a of e.actions) if (a.type === "send_sms") out.push({ approval: approvalId(callId, e.seq, ordinal++), send: a });
  }
  return out;
}
