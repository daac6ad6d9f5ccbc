import type { SendRefusal, SmsContext } from "./types.js";
import { OptOutListError } from "../../ledger/optOut.js";

/**
 * Why the gate refuses a send to this number because of the list, or undefined. A list that is on
 * but cannot be read (the file unreadable, the database down, a ledger that keeps none) refuses:
 * a caller's "never again" must not depend on a lookup working.
 */
export async function optOutRefusal(ctx: SmsContext, number: string): Promise<{ reason: SendRefusal; detail: string } | undefined> {
  if (!ctx.services.config.optOutList) return undefined;
  const { ledger } = ctx.services;
  try {
    if (!ledger.optedOut) throw new OptOutListError("this consent ledger keeps no do-not-text list");
    return (await ledger.optedOut(number)) ? { reason: "recipient_opted_out", detail: "the number is on the do-not-text list" } : undefined;
  } catch (e) {
    return { reason: "opt_out_list_unavailable", detail: (e as Error).message };
  }
}
