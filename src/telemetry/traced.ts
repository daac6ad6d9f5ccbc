import type { ConsentLedger, LedgerRecordInput } from "../ledger/ledger.js";
import type { CallStore } from "../store/callStore.js";
import type { Attrs, Tracing } from "../core/telemetry.js";

/**
 * The call store's writes, each in a span `store.<method>` (the call's id comes from the active
 * event or turn). Only what names no person: the method, the seq or the commit's result; never the
 * state, the events or the actions. Reads and the lease renewals (a timer's, every few hundred
 * milliseconds) are not traced. Applied only when tracing is on: off, the store is the store.
 */
const STORE_WRITES = new Set(["arrive", "arriveAndTake", "acquireLease", "releaseLease", "nextEvent", "yieldEvent", "commit", "commitAndNext", "collect", "putBack", "markNotSent"]);

export function tracedStore<S extends object>(store: CallStore<S>, tracing: Tracing): CallStore<S> {
  if (!tracing.enabled) return store;
  return wrapMethods(store, STORE_WRITES, (method, args, run) =>
    tracing.span(`store.${method}`, { "db.operation.name": method, "aiflow.store.shared": store.shared, ...storeArgs(method, args) }, async (s) => {
      const result = await run();
      if (method === "commit" && typeof result === "string") s.set({ "aiflow.commit.result": result });
      if (method === "commitAndNext" && result && typeof result === "object" && "result" in result) s.set({ "aiflow.commit.result": String((result as { result: unknown }).result) });
      if ((method === "arrive" || method === "arriveAndTake") && result && typeof result === "object" && "kind" in result) s.set({ "aiflow.arrival.kind": String((result as { kind: unknown }).kind) });
      if (method === "collect" && result && typeof result === "object" && "kind" in result) s.set({ "aiflow.collect.kind": String((result as { kind: unknown }).kind) });
      return result;
    }, "client"),
  );
}

function storeArgs(method: string, args: unknown[]): Attrs {
  if (method === "commit" || method === "commitAndNext") return { "aiflow.event.seq": (args[2] as { seq?: number } | undefined)?.seq };
  if (method === "yieldEvent") return { "aiflow.event.seq": args[1] as number };
  return {};
}

/** Ledger writes, each in a span `ledger.append` naming the record's kind and outcome (never its number, question or reply). */
export function tracedLedger<L extends ConsentLedger>(ledger: L, tracing: Tracing): L {
  if (!tracing.enabled) return ledger;
  return wrapMethods(ledger, new Set(["append", "setOptOut"]), (method, args, run) => {
    const rec = method === "append" ? (args[0] as LedgerRecordInput) : undefined;
    return tracing.span(`ledger.${method}`, { "aiflow.ledger.kind": rec?.kind, "aiflow.ledger.outcome": rec?.outcome, "aiflow.ledger.reason": rec?.reason }, () => run(), "client");
  });
}

/** A proxy that runs the named methods through `around`; everything else is the object's own. */
function wrapMethods<T extends object>(target: T, methods: ReadonlySet<string>, around: (method: string, args: unknown[], run: () => Promise<unknown>) => Promise<unknown>): T {
  return new Proxy(target, {
    get(obj, prop, receiver) {
      const value: unknown = Reflect.get(obj, prop, receiver);
      if (typeof prop !== "string" || !methods.has(prop) || typeof value !== "function") return value;
      return (...args: unknown[]) => around(prop, args, () => Reflect.apply(value, obj, args) as Promise<unknown>);
    },
  });
}
