import { StoreUnavailableError, type CallStore } from "../src/store/callStore.js";
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
}

/**
 * One instance's connection to the shared call store, with faults injected from the seed. A
 * crashed instance's calls never return (a frozen or dead process): its turns stop at whatever
 * await they were in, and its lease runs out on the virtual clock.
 */
export function faultyStore<S extends object>(inner: CallStore<S>, clock: SimClock, rng: Rng, faults: StoreFaults, onCrash: () => void): CallStore<S> {
  let calls = 0;
  let crashed = false;
  return new Proxy(inner, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (prop === "shared") return true;
      if (typeof v !== "function" || prop === "close") return typeof v === "function" ? v.bind(target) : v;
      return (...args: unknown[]) => {
        if (crashed) return new Promise(() => undefined);
        calls++;
        if (faults.crashAtCall !== undefined && calls >= faults.crashAtCall) {
          crashed = true;
          onCrash();
          return new Promise(() => undefined);
        }
        const t = clock.now();
        if (faults.outages.some(([a, b]) => t >= a && t < b)) return Promise.reject(new StoreUnavailableError("simulated store outage"));
        if (prop === "renewLease" && rng.chance(faults.renewFailure)) return Promise.reject(new StoreUnavailableError("simulated renewal failure"));
        return (v as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}
