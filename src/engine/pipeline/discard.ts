import type { CallStore } from "../../store/callStore.js";
import type { Clock } from "../clock.js";
import type { OutcomeEntry } from "../recovery.js";
import { untilAnswered } from "./resend.js";

/** Take every entry still waiting in the call's outbox, for a call that ends: none of it will be said. Returns them, with what a socket took and never pushed (`withheld`). */
export async function discardOutbox(store: CallStore, timers: Clock, callId: string, withheld: OutcomeEntry[]): Promise<OutcomeEntry[]> {
  const discarded: OutcomeEntry[] = [];
  for (const via of ["http", "ws"] as const) {
    // Sent again under its request id until the store answers: a try whose reply was lost took them all the same.
    const left = await untilAnswered(timers, (rid) => store.collect(callId, { via, collecting: true, mayHold: false, maxHoldingLines: 0, ignoreVerdicts: true }, rid));
    // The session_end turn tells the flow (with the call's last state).
    if (left.kind === "actions") discarded.push(...left.entries);
  }
  // What a socket's collect took after session_end arrived (never pushed): not sent either.
  discarded.push(...withheld);
  return discarded;
}
