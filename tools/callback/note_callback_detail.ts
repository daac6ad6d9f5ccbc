import { z } from "zod";
import { defineTool } from "../../src/engine/define.js";
import { CALLBACK_FIELDS } from "../../src/agents/callback/state.js";
import { readBack } from "../../src/agents/callback/readBack.js";
import type { CallbackFlowTypes } from "../../src/agents/callback/types.js";

/**
 * The model notes one detail as the caller gave it; code reads it back with a fixed line. The
 * detail counts only once the caller confirms that read-back (confirm_callback_detail).
 */
export const noteCallbackDetail = defineTool<CallbackFlowTypes>()({
  name: "note_callback_detail",
  transitions: [],
  parameters: () =>
    z.object({
      field: z.enum(CALLBACK_FIELDS).describe("which detail: the caller's name, the reason for the callback, or the time window they prefer"),
      value: z.string().trim().min(1).max(200).describe("the detail in the caller's own words, e.g. 'Anna Schmidt', 'Frage zur Rechnung', 'morgen zwischen 9 und 12 Uhr'"),
    }),
  execute(ctx, { field, value }) {
    // A changed detail needs its own confirmation, even after everything was confirmed.
    readBack(ctx, field, value);
    return ctx.note("callback_detail_read_back", { field, value });
  },
});
