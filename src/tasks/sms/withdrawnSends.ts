import type { AiFlowAction } from "../../aiflow/actions.js";
import type { ConsentLedger, LedgerRecord } from "../../ledger/ledger.js";
import type { RateLimiter } from "../../store/rateLimiter.js";
import { smsHolder } from "./abuseLimits.js";
import type { SmsCallState } from "./state.js";
import { SUPERSEDED_DETAIL } from "./smsGate.js";
import type { SmsContext } from "./types.js";
import { speakable } from "./numbers.js";

/**
 * A send_sms the gate approved that never left (the caller's "no" overtook it, the call ended
 * first, or its answer was dropped): the state stops saying it was sent (the send and a
 * `handed_over` result for it), so the result and the host's bookkeeping (a callback report)
 * are true. The ledger's sms_withdrawn record is written by `recordWithdrawn`.
 */
export function forgetWithdrawnSends(state: SmsCallState, actions: readonly AiFlowAction[]): void {
  for (const a of actions) {
    if (a.type !== "send_sms") continue;
    const i = state.sms.sent.findLastIndex((s) => !s.failed && s.number === a.phone_number && s.message === a.message);
    if (i >= 0) state.sms.sent.splice(i, 1);
    const r = state.sms.result?.value;
    if (r?.status === "handed_over" && r.number === a.phone_number) state.sms.result = { value: { status: "refused", reason: "turn_superseded", number: r.number }, settled: true };
  }
}

/** The evidence for sends that never left: one sms_withdrawn record each. */
export async function recordWithdrawn(ledger: ConsentLedger, callId: string, actions: readonly AiFlowAction[], detail: string): Promise<void> {
  for (const [i, a] of actions.entries()) {
    if (a.type !== "send_sms") continue;
    await ledger.append({ id: `${callId}:withdrawn:${detail}:${i}`, kind: "sms_withdrawn", callId, at: new Date().toISOString(), number: a.phone_number, outcome: "not_sent", detail });
  }
}

/**
 * Sends that never left give their rate-limit hits back (the gate counted each under its
 * `smsHolder`): a caller is never refused "too many SMS" for SMS they never got. Each release is
 * tried; the first failure is thrown after.
 */
export async function releaseLimits(limiter: RateLimiter, callId: string, actions: readonly AiFlowAction[]): Promise<void> {
  const done = await Promise.allSettled(actions.filter((a) => a.type === "send_sms").map((a) => limiter.release(smsHolder(callId, a.phone_number))));
  for (const d of done) if (d.status === "rejected") throw d.reason;
}

/**
 * Sends of a call the ledger says stand: its sms_sent records less the sms_withdrawn that take one
 * back (not the gate's own refusals, which follow no sms_sent).
 */
function standingSends(records: readonly LedgerRecord[]): number {
  return records.filter((r) => r.kind === "sms_sent").length - records.filter((r) => r.kind === "sms_withdrawn" && r.detail !== SUPERSEDED_DETAIL).length;
}

/** The detail of the sms_withdrawn written for a send approved by an attempt that died with its instance. */
export const ORPHAN_DETAIL = "approved by an instance that stopped before the send left";

/**
 * An event runs again after its earlier attempt died with its instance. If that attempt's gate
 * approved a send (its sms_sent is in the ledger) but the attempt never committed, the send never
 * left: every sms_sent of the call that neither the committed state nor an sms_withdrawn accounts
 * for gets its sms_withdrawn now, and its rate-limit hits back.
 */
export async function settleOrphanSends(ctx: SmsContext): Promise<void> {
  const { ledger, limiter } = ctx.services;
  const records = await ledger.recordsOf?.(ctx.sessionId);
  if (!records) return;
  const orphans = standingSends(records) - ctx.state.sms.sent.length;
  const number = ctx.state.sms.consent?.number ?? ctx.state.sms.number;
  for (let i = 0; i < orphans; i++) {
    await ledger.append({ id: `${ctx.sessionId}:t${ctx.state.turn}:orphan:${i}`, kind: "sms_withdrawn", callId: ctx.sessionId, at: ctx.nowIso(), ...(number ? { number } : {}), outcome: "not_sent", detail: ORPHAN_DETAIL });
    if (number) await limiter.release(smsHolder(ctx.sessionId, number)).catch(() => undefined);
  }
  if (orphans > 0) ctx.log.warn({ sessionId: ctx.sessionId, orphans }, "sends approved by a dead instance recorded as withdrawn");
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
 * one sms_withdrawn per send and the rate limits their hits back. Once per outbox entry, also when
 * the turn runs again after its commit failed (the entry is named in the record's detail). Returns
 * every action of the withdrawn entries (see sayKeptLines). Ledger and limiter errors are logged:
 * the send is withdrawn whatever they say.
 */
export async function withdrawPending(ctx: SmsContext, why: string): Promise<AiFlowAction[]> {
  const entries = ctx.withdrawPendingSends();
  const all = entries.flatMap((e) => e.actions);
  if (!entries.length) return all;
  forgetWithdrawnSends(ctx.state, all);
  const { ledger, limiter } = ctx.services;
  const earlier = await (ledger.recordsOf?.(ctx.sessionId) ?? Promise.resolve([])).catch(() => []);
  for (const e of entries) {
    const ref = `[outbox entry ${e.seq}]`;
    if (earlier.some((r) => r.kind === "sms_withdrawn" && r.detail?.endsWith(ref))) continue;
    try {
      await recordWithdrawn(ledger, ctx.sessionId, e.actions, `${why} ${ref}`);
      await releaseLimits(limiter, ctx.sessionId, e.actions);
    } catch (err) {
      ctx.log.error({ sessionId: ctx.sessionId, err: (err as Error).message }, "a withdrawn send's record or rate-limit release failed");
    }
  }
  return all;
}

/**
 * The call's state was lost mid-call and starts over: what the ledger says of this call still
 * holds. A "no" (declined, cancelled, or a number put on the do-not-text list) or a send that left (an sms_sent not withdrawn) ends the
 * SMS offer for the rest of the call: no caller is asked again or texted twice because a store
 * forgot.
 */
export async function recallFromLedger(ctx: SmsContext): Promise<void> {
  const records = await ctx.services.ledger.recordsOf?.(ctx.sessionId);
  if (!records?.length) return;
  const declined = records.some((r) => r.kind === "consent_declined" || r.kind === "sms_cancelled" || r.kind === "opt_out_added");
  const sent = standingSends(records);
  if (!declined && sent <= 0) return;
  ctx.state.sms.declined = true;
  ctx.guard({ subject: "sms_offer", allowed: false, reason: "declined", detail: declined ? "the ledger has this call's no; the call's state was lost" : "the ledger has this call's SMS; the call's state was lost" });
  ctx.log.warn({ sessionId: ctx.sessionId, declined, sent }, "call state lost mid-call: the SMS offer ends for this call (the ledger has its no or its SMS)");
}
