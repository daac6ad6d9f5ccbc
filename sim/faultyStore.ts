import { RESEND_SAFETY, StoreUnavailableError, type CallStore, type StoreRequest } from "../src/store/callStore.js";
import type { SimClock } from "./clock.js";
import type { Rng } from "./rng.js";

/** The faults one instance's view of the shared store suffers. */
export interface StoreFaults {
  /** Virtual time windows in which every store call fails (nothing applied). */
  outages: Array<[number, number]>;
  /** Share of lease renewals that fail (a network blip). */
  renewFailure: number;
  /** The instance dies at this store call (its n-th): from then on nothing it asks returns. */
  crashAtCall?: number;
  /**
   * Share of store requests whose reply is lost: the request ran, the connection drops, and the
   * client sends the same request (same request id) again once it has reconnected, as ioredis
   * does. Meanwhile the instance's other requests fail at once (no offline queue, as src/main.ts
   * configures ioredis).
   */
  lostReplies: number;
  /**
   * Share of those resends that fail as well: the caller sees an error for a request that ran (a
   * client that gives up on it, e.g. by a command timeout; ioredis 6 as src/main.ts configures it
   * keeps the request for the next connection instead, which the reconnect delay models).
   */
  resendFails: number;
}

/**
 * How long a reconnect takes, in virtual ms: ioredis tries again 50 ms after the connection
 * dropped (its default retry strategy), and with maxRetriesPerRequest 1 gives a request up at
 * about its second try.
 */
const RECONNECT_MS: [number, number] = [50, 150];

export interface FaultyStoreIo {
  /** The instance's name: its request ids start with it (ids are unique across instances, as the Redis store's UUIDs are). */
  name: string;
  /** The instance died at a store call. */
  onCrash(): void;
  /** A line for the seed's trace. */
  trace(line: string): void;
}

/**
 * One instance's connection to the shared call store, with faults injected from the seed. A
 * crashed instance's calls never return (a frozen or dead process): its turns stop at whatever
 * await they were in, and its lease runs out on the virtual clock. `rng` draws the renewal
 * failures, `replyRng` the lost replies (apart, so a seed without lost replies draws as before).
 */
export function faultyStore<S extends object>(inner: CallStore<S>, clock: SimClock, rng: Rng, replyRng: Rng, faults: StoreFaults, io: FaultyStoreIo): CallStore<S> {
  let calls = 0;
  let crashed = false;
  let requests = 0;
  /** Until then the connection is down (reconnecting): requests fail at once. */
  let downUntil = -1;
  const hang = () => new Promise<never>(() => undefined);
  return new Proxy(inner, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (prop === "shared") return true;
      // Notifications are hints from the shared store, no request: a crashed instance hears none.
      if (prop === "subscribe") return (callId: string, listener: () => void) => inner.subscribe(callId, () => crashed || listener());
      if (typeof v !== "function" || prop === "close") return typeof v === "function" ? v.bind(target) : v;
      const send = (args: unknown[]) => (v as (...a: unknown[]) => Promise<unknown>).apply(target, args);
      // Not async: a request without a fault reaches the store in the same tick as the caller's call.
      return (...args: unknown[]) => {
        if (crashed) return hang();
        calls++;
        if (faults.crashAtCall !== undefined && calls >= faults.crashAtCall) {
          crashed = true;
          io.onCrash();
          return hang();
        }
        const t = clock.now();
        if (t < downUntil) return Promise.reject(new StoreUnavailableError("simulated reconnect: the connection is down"));
        if (faults.outages.some(([a, b]) => t >= a && t < b)) return Promise.reject(new StoreUnavailableError("simulated store outage"));
        if (prop === "renewLease" && rng.chance(faults.renewFailure)) return Promise.reject(new StoreUnavailableError("simulated renewal failure"));
        if (faults.lostReplies > 0 && replyRng.chance(faults.lostReplies)) {
          const how = RESEND_SAFETY[prop as StoreRequest] as (typeof RESEND_SAFETY)[StoreRequest] | undefined;
          // A request that could not be sent twice safely is not resent here: that would hide a defect.
          if (how !== undefined) return lostReply(String(prop), how === "request_id" ? withRequestId(args) : args);
        }
        return send(args);
      };

      /** The request id is the method's last parameter (see RequestId): the caller's own, or one made here as the store would. */
      function withRequestId(args: unknown[]): unknown[] {
        const at = (v as (...a: unknown[]) => unknown).length - 1;
        return [...args.slice(0, at), ...Array.from({ length: Math.max(0, at - args.length) }, () => undefined), args[at] ?? `${io.name}-r${++requests}`];
      }

      /** The request runs, its reply is lost; after the reconnect it is sent again (same arguments, same request id) and only that reply counts. */
      async function lostReply(name: string, sent: unknown[]): Promise<unknown> {
        await send(sent).catch(() => undefined);
        const reconnectMs = replyRng.int(...RECONNECT_MS);
        downUntil = clock.now() + reconnectMs;
        const id = RESEND_SAFETY[name as StoreRequest] === "request_id" ? ` (request ${String(sent.at(-1))})` : "";
        const fails = replyRng.chance(faults.resendFails);
        io.trace(`store: reply to ${name}${id} lost; reconnecting for ${reconnectMs} ms${fails ? ", then the resend fails" : ""}`);
        await clock.sleep(reconnectMs);
        if (crashed) return hang();
        const t = clock.now();
        if (fails || faults.outages.some(([a, b]) => t >= a && t < b)) {
          io.trace(`store: ${name}${id} resend failed: the caller sees an error for a request that ran`);
          throw new StoreUnavailableError("simulated lost reply: the resend failed");
        }
        io.trace(`store: ${name}${id} resent`);
        return send(sent);
      }
    },
  });
}
