import { randomUUID } from "node:crypto";
import { StoreUnavailableError, type RequestId } from "../../store/callStore.js";
import type { Clock } from "../clock.js";

/** How often a request whose reply was lost is sent again (or its request id asked again) while the store does not answer. */
export const RETRY_MS = 100;
/** How often `untilAnswered` tries: about half a second of store trouble. */
const TRIES = 6;

/**
 * A store request that changes the call, sent with one request id until the store answers (at
 * most TRIES times; then its error is thrown): it acts once, whether a try whose reply was lost
 * ran or not. For requests that must happen (put back what never left, discard at the call's end);
 * an answer's own collect cannot wait (see LostCollects).
 */
export async function untilAnswered<T>(timers: Clock, send: (requestId: RequestId) => Promise<T>, requestId: RequestId = randomUUID()): Promise<T> {
  for (let tries = 1; ; tries++) {
    try {
      return await send(requestId);
    } catch (e) {
      if (!(e instanceof StoreUnavailableError) || tries >= TRIES) throw e;
      await timers.sleep(RETRY_MS);
    }
  }
}
