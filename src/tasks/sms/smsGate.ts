import { checkAction, type AiFlowAction, type SendSmsAction } from "../../aiflow/actions.js";
import type { ActionGate } from "../../engine/define.js";
import { recordEvidence, type SendRefusal, type SmsContext, type SmsFlowTypes } from "./types.js";
import type { GuardDecision } from "../../core/turnRecord.js";
import { maskNumber, parseAiFlowNumber } from "../../phone/number.js";
import { checkRecipient } from "../../phone/policy.js";
import { smsBudget } from "./smsBudget.js";
import { consentVerdict } from "./consentRules.js";
import { abuseLimits, smsHolder } from "./abuseLimits.js";
import { renderSmsText, SmsSlotError } from "./smsText.js";
import { approvalPrefix, nextApprovalId } from "./evidenceIds.js";
import { optOutRefusal } from "./optOutCheck.js";
import { telemetry } from "../../core/telemetry.js";

/** The detail of an sms_withdrawn the gate writes instead of approving (no sms_sent precedes it). */
export const SUPERSEDED_DETAIL = "the turn's answer can no longer leave (lease lost or answer given up)";

/** The gate's decisions: a send refused for a typed reason, a malformed action, a send with consent. */
type GateDecision = GuardDecision<SendRefusal | "invalid_action" | "consent_recorded">;

/**
 * The one gate every outgoing action passes. It re-derives every SMS rule from state and
 * config, independent of what the tool that built the action believed, so neither a tool
 * bug nor a lying model can send an SMS without recorded consent for exactly that number.
 */
export class SmsActionGate implements ActionGate<SmsFlowTypes> {
  async review(actions: AiFlowAction[], ctx: SmsContext): Promise<{ allowed: AiFlowAction[]; decisions: GateDecision[] }> {
    const allowed: AiFlowAction[] = [];
    const decisions: GateDecision[] = [];
    for (const action of actions) {
      // The protocol schema (a builder-made action was checked when built and is frozen since);
      // every SMS rule below is re-derived for every send_sms, builder-made or not.
      const valid = checkAction(action);
      if (!valid.success) {
        decisions.push(this.refuse(ctx, action.type, "invalid_action", valid.issues.join("; ")));
        continue;
      }
      if (action.type !== "send_sms") {
        allowed.push(action);
        continue;
      }
      // The gate's decision on this send, with its reason (the recipient masked).
      const decision = await telemetry.span("sms.gate send_sms", () => ({ "aiflow.sms.recipient": maskNumber(action.phone_number) }), async (span) => {
        const d = await this.reviewSend(action, ctx);
        span.set(() => ({ "aiflow.gate.allowed": d.allowed, "aiflow.gate.reason": d.reason, "aiflow.gate.detail": d.detail }));
        return d;
      });
      decisions.push(decision);
      if (decision.allowed) allowed.push(action);
    }
    return { allowed, decisions };
  }

  private refuse(ctx: SmsContext, subject: string, reason: SendRefusal | "invalid_action", detail?: string): GateDecision {
    const d: GateDecision = { subject, allowed: false, reason, ...(detail ? { detail } : {}) };
    ctx.log.warn({ sessionId: ctx.sessionId, step: ctx.state.step, guard: d }, "action refused");
    return d;
  }

  private async reviewSend(action: SendSmsAction, ctx: SmsContext): Promise<GateDecision> {
    const { state } = ctx;
    const { config } = ctx.services;
    const { sms } = state;
    const n = action.phone_number;
    const refuse = (reason: SendRefusal, detail?: string) => this.refuse(ctx, "send_sms", reason, detail);

    const consent = consentVerdict(state, n);
    if (!consent.valid) return refuse(`consent_${consent.reason}`, `recipient ${maskNumber(n)}`);

    if (!smsBudget(state, config).canSend) return refuse("sms_limit_per_call", `${sms.sent.length} sent, limit ${config.maxPerCall}`);

    let expected: string;
    try {
      expected = renderSmsText(config, sms.slots);
    } catch (e) {
      return refuse("template_slots_invalid", e instanceof SmsSlotError ? e.message : String(e));
    }
    if (action.message !== expected) return refuse("message_not_from_template");

    const parsed = parseAiFlowNumber(n);
    const policy = checkRecipient(parsed, config.recipients);
    if (!policy.ok) return refuse(`recipient_${policy.reason}`, policy.detail);
    // Beside the operator's static list: callers' own wishes, read on every send (fail closed).
    const optedOut = await optOutRefusal(ctx, n);
    if (optedOut) return refuse(optedOut.reason, optedOut.detail);

    // This turn's result must still be able to leave: not when another instance took the call over
    // (a stalled or partitioned holder) nor when the caller was already told it took too long. Then
    // nothing is approved: no limit counted, no ledger record (there is no approval for an outcome
    // to answer); the refusal stays in the turn's record.
    if (!(await ctx.stillOwner())) return refuse("turn_superseded", "lease lost or answer given up");

    const { hasher } = ctx.services;
    const limits = abuseLimits(config, hasher, n, parsed?.country ?? "unknown", state.callerNumber);
    let acquired;
    try {
      // Counted under the send's holder: a send that never leaves gives its hits back.
      acquired = await ctx.services.limiter.acquire(limits.map((l) => l.spec), smsHolder(ctx.sessionId, n, hasher));
    } catch (e) {
      return refuse("rate_limiter_unavailable", (e as Error).message);
    }
    if (!acquired.ok) {
      const hit = limits.find((l) => l.spec.key === acquired.key)!;
      return refuse(`${hit.kind}_rate_limited`, `more than ${hit.spec.max} SMS in ${hit.spec.windowMs / 1000}s`);
    }

    // Evidence first: the send leaves only once its approval is durable. Named by the event and the
    // send's place among this turn's approvals, so the transport's outcome can name it (its `ref`),
    // and a retry of the event writes the same approval once.
    const c = sms.consent!;
    const thisTurn = ctx.eventSeq !== undefined ? approvalPrefix(ctx.sessionId, ctx.eventSeq) : undefined;
    const approvedBefore = thisTurn ? sms.sent.filter((s) => s.approval?.startsWith(thisTurn)).length : 0;
    let approval: string;
    try {
      approval = await recordEvidence(ctx, {
        id: nextApprovalId(ctx, approvedBefore),
        kind: "sms_approved",
        number: n,
        question: c.question,
        reply: c.answer!.reply,
        consentAskedAt: c.askedAt,
        consentAnsweredAt: c.answer!.at,
        message: action.message,
        outcome: "approved",
        // The consent this send rests on was judged by a listed rule (no model was asked) or by the model.
        ...(c.answer!.rule ? { decidedBy: "rule" as const, rule: c.answer!.rule } : { model: ctx.modelUsed ?? config.model }),
        ...(c.givenId ? { ref: c.givenId } : {}),
      });
    } catch (e) {
      // Not sent: its hits go back.
      await ctx.services.limiter.release(smsHolder(ctx.sessionId, n, hasher)).catch((r: Error) => ctx.log.error({ sessionId: ctx.sessionId, err: r.message }, "rate limiter could not take back an unsent SMS"));
      return refuse("ledger_unavailable", (e as Error).message);
    }
    sms.sent.push({ number: n, message: action.message, at: ctx.nowIso(), turn: state.turn, approval });
    c.usedAt = ctx.nowIso();
    ctx.log.info({ sessionId: ctx.sessionId, recipient: maskNumber(n) }, "send_sms approved");
    return { subject: "send_sms", allowed: true, reason: "consent_recorded" };
  }
}
