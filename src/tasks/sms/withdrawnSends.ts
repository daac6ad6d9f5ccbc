import type { AiFlowAction } from "../../aiflow/actions.js";
import { smsHolder } from "./abuseLimits.js";
import { approvalPrefix, approvedSends, evidenceId } from "./evidenceIds.js";
import { answeredApprovals, keepsIds, recordNotSent, standingSends, standingWithoutIds, type NamedSend } from "./sendRecords.js";
import type { SmsCallState } from "./state.js";
import type { SmsContext, SmsServices } from "./types.js";
import { speakable } from "./numbers.js";

/**
 * A send_sms the gate approved that never left (the caller's "no" overtook it, the call ended
 * first, or its answer was dropped): the state stops saying it was sent (the send and a
 * `handed_over` result for it), so the result and the host's bookkeeping (a callback report)
 * are true. The ledger's sms_not_sent record is written by `recordNotSent`.
 */
export function forgetWithdrawnSends(state: SmsCallState, sends: readonly NamedSend[]): void {
  for (const { approval, send } of sends) {
    const i = countedAt(state, { approval, send });
    if (i >= 0) state.sms.sent.splice(i, 1);
    const r = state.sms.result?.value;
    // Another send to that number still stands (a second SMS, handed over): the result is its.
    const standing = state.sms.sent.some((s) => s.number === send.phone_number && !s.failed);
    if (r?.status === "handed_over" && r.number === send.phone_number && !standing) state.sms.result = { value: { status: "refused", reason: "turn_superseded", number: r.number } };
  }
}

/**
 * Sends the ledger already records as not sent, noted after the state that counts them was
 * committed (their answer was lost): the state forgets those it still counts, and only those. The
 * same note may come again (a turn that applied it was not committed): a send already forgotten, or
 * a later send's result to the same number, is left alone.
 */
export function forgetNotedSends(state: SmsCallState, sends: readonly NamedSend[]): void {
  forgetWithdrawnSends(
    state,
    sends.filter((named) => countedAt(state, named) >= 0),
  );
}

/** Where the state counts this send: by its approval, or (a send recorded without one) by number and text; -1 if nowhere. */
function countedAt(state: SmsCallState, { approval, send }: NamedSend): number {
  const byId = state.sms.sent.findLastIndex((s) => s.approval === approval);
  return byId >= 0 ? byId : state.sms.sent.findLastIndex((s) => !s.approval && !s.failed && s.number === send.phone_number && s.message === send.message);
}

/**
 * Sends that never left give their rate-limit hits back (the gate counted each under its
 * `smsHolder`): a caller is never refused "too many SMS" for SMS they never got. Each release is
 * tried; the first failure is thrown after.
 */
export async function releaseLimits({ limiter, hasher }: Pick<SmsServices, "limiter" | "hasher">, callId: string, actions: readonly AiFlowAction[]): Promise<void> {
  const done = await Promise.allSettled(actions.filter((a) => a.type === "send_sms").map((a) => limiter.release(smsHolder(callId, a.phone_number, hasher))));
  for (const d of done) if (d.status === "rejected") throw d.reason;
}

/** The detail of the sms_not_sent written for a send approved by an attempt that died with its instance. */
export const ORPHAN_DETAIL = "approved by an instance that stopped before the send left";

/**
 * An event runs again after its earlier attempt died with its instance. If that attempt's gate
 * approved a send (its sms_approved is in the ledger), the attempt never committed, so the send
 * never left from there: its rate-limit hits go back now, before this attempt's gate counts anew.
 * This attempt may approve the same send again, under the same id (then that approval stands and
 * gets its outcome from here); what it does not carry is recorded as not sent once the event is
 * done (`settleRerun`). Approvals without ids (a call begun before them, a ledger that keeps none)
 * are counted instead: those the committed state does not account for are recorded as not sent now.
 */
export async function settleOrphanSends(ctx: SmsContext): Promise<void> {
  const { ledger, limiter, hasher } = ctx.services;
  const records = await ledger.recordsOf?.(ctx.sessionId);
  if (!records) return;
  const number = ctx.state.sms.consent?.number ?? ctx.state.sms.number;
  const release = async () => {
    if (number) await limiter.release(smsHolder(ctx.sessionId, number, hasher)).catch(() => undefined);
  };
  let orphans = 0;
  if (ctx.eventSeq !== undefined) {
    const prefix = approvalPrefix(ctx.sessionId, ctx.eventSeq);
    const answered = answeredApprovals(records);
    const open = new Set(records.filter((r) => r.kind === "sms_approved" && r.id?.startsWith(prefix) && !answered.has(r.id)).map((r) => r.id));
    for (let i = 0; i < open.size; i++) await release();
    orphans += open.size;
  }
  // Without ids: the committed state's sends that the ledger cannot name are those it counts.
  const ids = keepsIds(records);
  const uncounted = standingWithoutIds(records) - ctx.state.sms.sent.filter((s) => !s.approval || !ids).length;
  for (let i = 0; i < uncounted; i++) {
    await ledger.append({ id: evidenceId(ctx, "sms_not_sent"), kind: "sms_not_sent", callId: ctx.sessionId, at: ctx.nowIso(), ...(number ? { number } : {}), outcome: "not_sent", reason: "instance_stopped", detail: ORPHAN_DETAIL });
    await release();
  }
  orphans += Math.max(0, uncounted);
  if (orphans > 0) ctx.log.warn({ sessionId: ctx.sessionId, orphans }, "sends approved by a dead instance: their limits given back");
}

/**
 * Lines of withdrawn entries that were not about the send (a host flow's own news, said in the same
 * turn as the send: "Ihre Rückrufbitte ist notiert") are said again: the caller never heard them.
 * A line that names a withdrawn send's number is about that send and goes with it.
 */
export function sayKeptLines(ctx: SmsContext, withdrawn: readonly AiFlowAction[]): void {
  const numbers = withdrawn.filter((a) => a.type === "send_sms").map((a) => speakable(a.phone_number, ctx.services.config.homeCountry));
  for (const a of withdrawn) {
    if (a.type !== "speak" || !a.text || numbers.some((n) => a.text!.includes(n))) continue;
    ctx.emit(a);
  }
}

/**
 * Take back the sends this turn's caller event overtook: the state forgets them, the ledger gets
 * one sms_not_sent (withdrawn_by_no) per send and the rate limits their hits back. Once per outbox
 * entry, also when the turn runs again after its commit failed (the records name the approval, and
 * their detail the entry). Returns every action of the withdrawn entries (see sayKeptLines). Ledger
 * and limiter errors are logged: the send is withdrawn whatever they say.
 */
export async function withdrawPending(ctx: SmsContext, why: string): Promise<AiFlowAction[]> {
  const entries = ctx.withdrawPendingSends();
  const all = entries.flatMap((e) => e.actions);
  if (!entries.length) return all;
  forgetWithdrawnSends(ctx.state, approvedSends(ctx.sessionId, entries));
  const { ledger } = ctx.services;
  const earlier = await (ledger.recordsOf?.(ctx.sessionId) ?? Promise.resolve([])).catch(() => []);
  const answered = answeredApprovals(earlier);
  for (const e of entries) {
    const sends = approvedSends(ctx.sessionId, [e]);
    const ref = `[outbox entry ${e.seq}]`;
    const done = sends.some((s) => answered.has(s.approval)) || earlier.some((r) => (r.kind === "sms_withdrawn" || r.kind === "sms_not_sent") && r.detail?.endsWith(ref));
    if (done) continue;
    try {
      await recordNotSent(ledger, ctx.sessionId, sends.map((s) => ({ approval: s.approval, number: s.send.phone_number })), "withdrawn_by_no", `${why} ${ref}`, ctx.nowIso());
      await releaseLimits(ctx.services, ctx.sessionId, e.actions);
    } catch (err) {
      ctx.log.error({ sessionId: ctx.sessionId, err: (err as Error).message }, "a withdrawn send's record or rate-limit release failed");
    }
  }
  return all;
}

/**
 * The call's state was lost mid-call and starts over: what the ledger says of this call still
 * holds. Any record of its SMS flow (a "no": declined, cancelled, or a number put on the
 * do-not-text list; a send that may have left; a question asked) ends the SMS offer for the rest
 * of the call: no caller is asked again or texted twice because a store forgot.
 */
export async function recallFromLedger(ctx: SmsContext): Promise<void> {
  const records = await ctx.services.ledger.recordsOf?.(ctx.sessionId);
  if (!records?.length) return;
  // A new life of the call: its records get ids the old ones cannot have.
  const lives = records.map((r) => Number(/:L(\d+):/.exec(r.id ?? "")?.[1] ?? 0));
  ctx.state.sms.life = Math.max(0, ...lives) + 1;
  const declined = records.some((r) => r.kind === "consent_declined" || r.kind === "sms_cancelled" || r.kind === "opt_out_added");
  const sent = standingSends(records);
  // Any evidence of this call's SMS flow ends the offer: what the caller heard and said before the
  // state was lost cannot be rebuilt, and a send's outcome is named after its approval's event,
  // whose position a new life would reuse. A caller who wanted the SMS loses it; none gets a wrong one.
  ctx.state.sms.declined = true;
  const detail = declined ? "the ledger has this call's no" : sent > 0 ? "the ledger has this call's SMS" : "the ledger has this call's SMS flow from before";
  ctx.guard({ subject: "sms_offer", allowed: false, reason: "declined", detail: `${detail}; the call's state was lost` });
  ctx.log.warn({ sessionId: ctx.sessionId, declined, sent, life: ctx.state.sms.life }, "call state lost mid-call: the SMS offer ends for this call (the ledger has its evidence)");
}
