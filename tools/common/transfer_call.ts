import { z } from "zod";
import { actions } from "../../src/aiflow/actions.js";
import { flowOwnNumber } from "../../src/aiflow/sessionNumbers.js";
import { defineTool, type FlowTypes, type Keys } from "../../src/engine/define.js";
import type { TransferConfig } from "./transferConfig.js";

/**
 * Any flow may offer it: hand the call to a person at one of the configured transfer targets
 * (transferConfig.ts; the reception agent's `agents.reception.transfer`).
 * The caller hears a fixed announcement, then AI Flow's `transfer` leaves with the flow's own
 * number as caller ID. When nobody answers, sipgate sends a new `session_start` for the same call;
 * the flow's session_start hook then says `transfer_failed` and clears the pending mark.
 */

/** What the tool keeps in the flow's state: a transfer that left and has not come back. */
export interface TransferSlice {
  transfer?: { target: string; at: string };
}

/** The lines and notes it uses (with the line a flow says when the call comes back); a flow offering it declares them. Types only: a tool file exports its tool alone. */
export type TransferLineKey = "transfer_announce" | "transfer_announce_unnamed" | "transfer_failed";
export type TransferNoteKey = "transfer_started" | "transfer_unavailable";

/** What the tool needs from the flow offering it: the transfer settings (and the business, the default caller ID), a place for the pending mark, its lines and notes. */
export interface TransferFlowTypes extends FlowTypes {
  state: TransferSlice;
  services: TransferServices;
  lines: Keys<TransferLineKey>;
  notes: Keys<TransferNoteKey>;
}

/** The services a flow offering the tool provides. */
export interface TransferServices {
  transfer: TransferConfig;
  config: { business: { name: string } };
}

/** One enum of the configured target keys, their descriptions in the parameter's description. */
function targetParameters({ transfer }: TransferServices): z.ZodObject<{ target: z.ZodType<string> }> {
  const targets = Object.entries(transfer.targets);
  if (targets.length === 0) {
    return z.object({ target: z.string().describe("no transfer targets are configured: a transfer is not possible") });
  }
  const keys = targets.map(([k]) => k) as [string, ...string[]];
  const described = targets.map(([k, t]) => `${k}: ${t.description}`).join("; ");
  return z.object({ target: z.enum(keys).describe(`who to transfer the caller to (${described})`) });
}

export const transferCall = defineTool<TransferFlowTypes>()({
  name: "transfer_call",
  transitions: [],
  parameters: targetParameters,
  execute(ctx, { target }) {
    const { transfer, config } = ctx.services;
    const to = transfer.targets[target];
    const own = flowOwnNumber(ctx.event.session);
    if (!to || !own) {
      ctx.log.warn({ sessionId: ctx.sessionId, target, ownNumberKnown: own !== undefined }, "transfer not possible");
      return ctx.note("transfer_unavailable");
    }
    if (to.name) ctx.say("transfer_announce", { target: to.name }, { expectAnswer: false });
    else ctx.say("transfer_announce_unnamed", {}, { expectAnswer: false });
    ctx.emit(
      actions.transfer(ctx.sessionId, {
        target_phone_number: to.number,
        caller_id_name: transfer.callerIdName ?? config.business.name,
        caller_id_number: own,
        timeout: transfer.timeoutSeconds,
      }),
    );
    ctx.state.transfer = { target, at: ctx.nowIso() };
    ctx.log.info({ sessionId: ctx.sessionId, target }, "transfer to a person");
    return ctx.note("transfer_started");
  },
});
