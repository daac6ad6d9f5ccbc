import type { CallbackField } from "./state.js";
import type { CallbackContext, CallbackLineKey } from "./types.js";

const READ_BACK_LINE: Record<CallbackField, CallbackLineKey> = {
  name: "callback_read_back_name",
  reason: "callback_read_back_reason",
  time_window: "callback_read_back_time_window",
};

/**
 * Read a detail back to the caller with its fixed line and remember when, so only an answer to
 * this read-back can confirm it. A new read-back replaces any earlier confirmation of the field.
 */
export function readBack(ctx: CallbackContext, field: CallbackField, value: string): void {
  const { state } = ctx;
  ctx.say(READ_BACK_LINE[field], { value });
  state.callback.details[field] = { value, confirmed: false, readBackSpoken: state.spoken, readBackTurn: state.turn };
}
