import { describe, expect, it } from "vitest";
import type { AiFlowAction } from "../src/aiflow/actions.js";
import type { AiFlowEvent } from "../src/aiflow/events.js";
import { initialCallState, type SmsCallState as CallState } from "../src/tasks/sms/state.js";
import { replayCollect, RESEND_SAFETY, type CallStore, type CollectRequest, type StoreRequest } from "../src/store/callStore.js";

/**
 * The CallStore contract, run against every implementation (memory, Redis): queue order,
 * lease fencing, atomic commit, outbox collection exactly once, holding lines and giving up.
 */

const session = (id: string) => ({ id, account_id: "1", phone_number: "4921112345678", direction: "inbound" as const, from_phone_number: "4915112345678", to_phone_number: "4921112345678" });
const speak = (id: string, text: string): AiFlowEvent => ({ type: "user_speak", text, barged_in: false, session: session(id) }) as AiFlowEvent;
const timeout = (id: string): AiFlowEvent => ({ type: "user_input_timeout", session: session(id) }) as AiFlowEvent;
const say = (id: string, text: string): AiFlowAction => ({ type: "speak", session_id: id, text });
const state = (id: string, turn = 0): CallState => ({ ...initialCallState({ sessionId: id, direction: "inbound", language: "de-DE", step: "main" }), turn });
const http = (seq: number | undefined, o: Partial<CollectRequest> = {}): CollectRequest => ({ via: "http", seq, collecting: true, mayHold: true, maxHoldingLines: 2, ...o });

export function callStoreContract(name: string, make: () => Promise<{ store: CallStore; id: () => string; close?: () => Promise<void> }>) {
  describe(`CallStore contract: ${name}`, () => {
    it("queues a call's events in arrival order and hands them to the lease holder one by one", async () => {
      const { store, id, close } = await make();
      const c = id();
      expect(await store.arrive(c, { key: "k1", event: speak(c, "eins"), via: "http", holdingFollowUp: false })).toEqual({ kind: "queued", seq: 1 });
      expect(await store.arrive(c, { key: "k2", event: speak(c, "zwei"), via: "http", holdingFollowUp: false })).toEqual({ kind: "queued", seq: 2 });
      expect(await store.nextEvent(c, "nobody")).toMatchObject({ held: false });
      expect(await store.acquireLease(c, "A", 5000)).toBe(true);
      expect(await store.acquireLease(c, "B", 5000)).toBe(false);
      const first = await store.nextEvent(c, "A");
      expect(first.event).toMatchObject({ seq: 1, key: "k1", via: "http", attempts: 1, event: { type: "user_speak", text: "eins" } });
      expect(await store.commit(c, "A", { seq: 1, state: state(c, 1), ttlSeconds: 60, entry: { seq: 1, via: "http", actions: [say(c, "a1")] }, droppable: true })).toBe("committed");
      expect((await store.nextEvent(c, "A")).event).toMatchObject({ seq: 2 });
      expect(await store.progress(c)).toEqual({ processed: 1, queued: 2, ready: { http: 1, ws: 0 }, ended: false });
      expect((await store.get(c))!.turn).toBe(1);
      await store.releaseLease(c, "A");
      expect(await store.acquireLease(c, "B", 5000)).toBe(true);
      // Taken up twice: once by A, once by B (a turn that kills its instance is counted).
      expect((await store.nextEvent(c, "B")).event).toMatchObject({ seq: 2, attempts: 2 });
      await close?.();
    });

    it("fences: a holder whose lease expired or was taken commits nothing", async () => {
      const { store, id, close } = await make();
      const c = id();
      await store.arrive(c, { key: "k", event: speak(c, "ja"), via: "http", holdingFollowUp: false });
      expect(await store.acquireLease(c, "A", 150)).toBe(true);
      await store.nextEvent(c, "A");
      await new Promise((r) => setTimeout(r, 300));
      expect(await store.renewLease(c, "A", 150)).toMatchObject({ held: false });
      expect(await store.acquireLease(c, "B", 5000)).toBe(true);
      expect(await store.commit(c, "A", { seq: 1, state: state(c, 9), ttlSeconds: 60, entry: { seq: 1, via: "http", actions: [say(c, "stale")] }, droppable: true })).toBe("lease_lost");
      expect(await store.get(c)).toBeUndefined();
      expect((await store.progress(c)).ready.http).toBe(0);
      // The event is still there for the new holder.
      expect((await store.nextEvent(c, "B")).event).toMatchObject({ seq: 1 });
      expect(await store.renewLease(c, "B", 5000)).toMatchObject({ held: true });
      await close?.();
    });

    it("collects the outbox exactly once, in order; a non-collecting event takes only its own actions", async () => {
      const { store, id, close } = await make();
      const c = id();
      await store.acquireLease(c, "A", 5000);
      for (const n of [1, 2, 3]) {
        await store.arrive(c, { key: `k${n}`, event: speak(c, `${n}`), via: "http", holdingFollowUp: false });
        await store.nextEvent(c, "A");
        await store.commit(c, "A", { seq: n, state: state(c, n), ttlSeconds: 60, entry: { seq: n, via: "http", actions: [say(c, `a${n}`)] }, droppable: true });
      }
      expect(await store.collect(c, http(2, { collecting: false, mayHold: false }))).toMatchObject({ kind: "actions", actions: [say(c, "a2")] });
      const both = await Promise.all([store.collect(c, http(undefined)), store.collect(c, http(undefined))]);
      const delivered = both.filter((x) => x.kind === "actions");
      expect(delivered).toMatchObject([{ kind: "actions", actions: [say(c, "a1"), say(c, "a3")] }]);
      expect(both.filter((x) => x.kind === "nothing")).toHaveLength(1);
      await close?.();
    });

    it("holding lines while a turn runs, then giving up drops the late result; a holding line's follow-ups only collect", async () => {
      const { store, id, close } = await make();
      const c = id();
      const a = await store.arrive(c, { key: "k1", event: speak(c, "ja"), via: "http", holdingFollowUp: false });
      expect(await store.collect(c, http(1))).toEqual({ kind: "hold", count: 1 });
      expect(await store.arrive(c, { key: "t", event: timeout(c), via: "http", holdingFollowUp: true })).toEqual({ kind: "collect" });
      expect(await store.collect(c, http(undefined, { mayHold: false }))).toEqual({ kind: "nothing" });
      expect(await store.collect(c, http(undefined))).toEqual({ kind: "hold", count: 2 });
      expect(await store.collect(c, http(undefined))).toEqual({ kind: "give_up", droppedThrough: 1 });
      // The turn finishes late: dropped, not delivered.
      await store.acquireLease(c, "A", 5000);
      expect((await store.nextEvent(c, "A")).droppedThrough).toBe(1);
      expect(await store.commit(c, "A", { seq: (a as { seq: number }).seq, state: state(c, 1), ttlSeconds: 60, entry: { seq: 1, via: "http", actions: [say(c, "late")] }, droppable: true })).toBe("dropped");
      expect(await store.get(c)).toBeUndefined();
      expect(await store.progress(c)).toMatchObject({ processed: 1, queued: 1, ready: { http: 0, ws: 0 } });
      // After giving up, a timeout is real silence again: it is queued.
      expect(await store.arrive(c, { key: "t2", event: timeout(c), via: "http", holdingFollowUp: true })).toEqual({ kind: "queued", seq: 2 });
      await close?.();
    });

    it("a late answer ready at the next event is delivered, and the holding count starts again", async () => {
      const { store, id, close } = await make();
      const c = id();
      await store.arrive(c, { key: "k1", event: speak(c, "ja"), via: "http", holdingFollowUp: false });
      expect(await store.collect(c, http(1))).toEqual({ kind: "hold", count: 1 });
      await store.acquireLease(c, "A", 5000);
      await store.nextEvent(c, "A");
      expect(await store.commit(c, "A", { seq: 1, state: state(c, 1), ttlSeconds: 60, entry: { seq: 1, via: "http", actions: [say(c, "answer")] }, droppable: true })).toBe("committed");
      expect(await store.arrive(c, { key: "e", event: timeout(c), via: "http", holdingFollowUp: true })).toEqual({ kind: "collect" });
      expect(await store.collect(c, http(undefined))).toMatchObject({ kind: "actions", actions: [say(c, "answer")] });
      // Not outstanding any more: the next timeout is the caller's silence.
      expect(await store.arrive(c, { key: "e2", event: timeout(c), via: "http", holdingFollowUp: true })).toEqual({ kind: "queued", seq: 2 });
      expect(await store.collect(c, http(2))).toEqual({ kind: "hold", count: 1 });
      await close?.();
    });

    it("session end removes state and outbox; the queue goes on for later events", async () => {
      const { store, id, close } = await make();
      const c = id();
      await store.acquireLease(c, "A", 5000);
      await store.arrive(c, { key: "k1", event: speak(c, "x"), via: "ws", holdingFollowUp: false });
      await store.nextEvent(c, "A");
      await store.commit(c, "A", { seq: 1, state: state(c, 1), ttlSeconds: 60, entry: { seq: 1, via: "ws", actions: [say(c, "x")] }, droppable: true });
      expect(await store.size()).toBeGreaterThanOrEqual(1);
      await store.arrive(c, { key: "k2", event: { type: "session_end", session: session(c) } as AiFlowEvent, via: "ws", holdingFollowUp: false });
      await store.nextEvent(c, "A");
      expect(await store.commit(c, "A", { seq: 2, state: null, ttlSeconds: 60, droppable: false })).toBe("committed");
      expect(await store.get(c)).toBeUndefined();
      expect(await store.progress(c)).toMatchObject({ processed: 2, queued: 2, ready: { http: 0, ws: 0 }, ended: true });
      expect(await store.arrive(c, { key: "k3", event: speak(c, "late"), via: "ws", holdingFollowUp: false })).toEqual({ kind: "queued", seq: 3 });
      await close?.();
    });

    it("a commit without state leaves the state as it was and still delivers its actions", async () => {
      const { store, id, close } = await make();
      const c = id();
      await store.acquireLease(c, "A", 5000);
      await store.arrive(c, { key: "k1", event: speak(c, "x"), via: "http", holdingFollowUp: false });
      await store.nextEvent(c, "A");
      await store.commit(c, "A", { seq: 1, state: state(c, 7), ttlSeconds: 60, droppable: true });
      await store.arrive(c, { key: "k2", event: speak(c, "y"), via: "http", holdingFollowUp: false });
      await store.nextEvent(c, "A");
      expect(await store.commit(c, "A", { seq: 2, state: undefined, ttlSeconds: 60, entry: { seq: 2, via: "http", actions: [say(c, "replayed")] }, droppable: true })).toBe("committed");
      expect((await store.get(c))!.turn).toBe(7);
      expect(await store.collect(c, http(2))).toMatchObject({ kind: "actions", actions: [say(c, "replayed")] });
      await close?.();
    });

    it("keeps its own copies: what a caller changes after handing something in, or after taking it out, changes nothing stored", async () => {
      const { store, id, close } = await make();
      const c = id();
      const event = speak(c, "eins") as AiFlowEvent & { text: string };
      await store.arrive(c, { key: "k1", event, via: "http", holdingFollowUp: false });
      event.text = "changed after arrive";
      await store.acquireLease(c, "A", 5000);
      const taken = (await store.nextEvent(c, "A")).event!;
      expect(taken.event).toMatchObject({ text: "eins" });
      // A turn that is fenced out changes its copy of the event; the next holder gets the original.
      (taken.event as AiFlowEvent & { text: string }).text = "changed by a turn";
      expect((await store.nextEvent(c, "A")).event!.event).toMatchObject({ text: "eins" });
      const committed = state(c, 1);
      const action = say(c, "a1") as AiFlowAction & { text: string };
      await store.commit(c, "A", { seq: 1, state: committed, ttlSeconds: 60, entry: { seq: 1, via: "http", actions: [action] }, droppable: true });
      committed.turn = 99;
      committed.history.push({ role: "user", content: "after the commit" });
      action.text = "changed after commit";
      const loaded = (await store.get(c))!;
      expect(loaded).toMatchObject({ turn: 1, history: [] });
      // A turn that is dropped changes the state it loaded; what is stored stays as committed.
      loaded.turn = 42;
      loaded.history.push({ role: "user", content: "a dropped turn" });
      expect(await store.get(c)).toMatchObject({ turn: 1, history: [] });
      expect(await store.collect(c, http(1))).toMatchObject({ kind: "actions", actions: [say(c, "a1")] });
      await close?.();
    });

    it("stores what a JSON round trip keeps: no undefined fields, no Date objects, no NaN", async () => {
      const { store, id, close } = await make();
      const c = id();
      await store.arrive(c, { key: "k1", event: speak(c, "x"), via: "http", holdingFollowUp: false });
      await store.acquireLease(c, "A", 5000);
      await store.nextEvent(c, "A");
      const odd = { ...state(c, 1), pendingHangup: undefined, updatedAt: Number.NaN, extra: { at: new Date(0), gone: () => 1 } } as unknown as CallState;
      await store.commit(c, "A", { seq: 1, state: odd, ttlSeconds: 60, droppable: true });
      const loaded = (await store.get(c)) as unknown as Record<string, unknown>;
      expect(loaded).toStrictEqual(JSON.parse(JSON.stringify(odd)));
      expect("pendingHangup" in loaded).toBe(false);
      expect(loaded.extra).toStrictEqual({ at: "1970-01-01T00:00:00.000Z" });
      expect(loaded.updatedAt).toBeNull();
      await close?.();
    });

    it("state expires with its TTL", async () => {
      const { store, id, close } = await make();
      const c = id();
      await store.acquireLease(c, "A", 5000);
      await store.arrive(c, { key: "k1", event: speak(c, "x"), via: "http", holdingFollowUp: false });
      await store.nextEvent(c, "A");
      await store.commit(c, "A", { seq: 1, state: state(c, 1), ttlSeconds: 1, droppable: true });
      expect(await store.get(c)).toBeDefined();
      await new Promise((r) => setTimeout(r, 1100));
      expect(await store.get(c)).toBeUndefined();
      await close?.();
    });

    it("heard and barged marks: what a queued event had heard, a silent commit after an undelivered entry, a barge-in (issue 17)", async () => {
      const { store, id, close } = await make();
      const c = id();
      await store.arrive(c, { key: "k1", event: speak(c, "eins"), via: "http", holdingFollowUp: false });
      await store.acquireLease(c, "A", 5000);
      await store.nextEvent(c, "A");
      await store.commit(c, "A", { seq: 1, state: state(c, 1), ttlSeconds: 60, entry: { seq: 1, via: "http", actions: [say(c, "frage")], spokenThrough: 3 }, droppable: true });
      // Not delivered yet: an event arriving now has heard nothing of it.
      await store.arrive(c, { key: "k2", event: speak(c, "ja"), via: "http", holdingFollowUp: false });
      expect((await store.nextEvent(c, "A")).event).toMatchObject({ seq: 2, heard: 0, barged: 0 });
      // A silent turn committed meanwhile does not make the waiting line heard.
      await store.commit(c, "A", { seq: 2, state: state(c, 2), ttlSeconds: 60, entry: { seq: 2, via: "http", actions: [], spokenThrough: 4 }, droppable: true });
      await store.arrive(c, { key: "k3", event: speak(c, "noch mal"), via: "http", holdingFollowUp: false });
      expect((await store.nextEvent(c, "A")).event).toMatchObject({ seq: 3, heard: 0 });
      // Delivered: the mark moves to the waiting entry's (raised) line count.
      expect(await store.collect(c, http(undefined))).toMatchObject({ kind: "actions", actions: [say(c, "frage")] });
      await store.commit(c, "A", { seq: 3, state: state(c, 3), ttlSeconds: 60, droppable: true });
      await store.arrive(c, { key: "k4", event: { ...speak(c, "ja!"), barged_in: true } as AiFlowEvent, via: "http", holdingFollowUp: false });
      expect((await store.nextEvent(c, "A")).event).toMatchObject({ seq: 4, heard: 4, barged: 4 });
      await close?.();
    });

    it("a delayed arrival (kept through an outage) marks every line delivered so far as possibly unheard, as a barge-in does (issue 17)", async () => {
      const { store, id, close } = await make();
      const c = id();
      await store.arrive(c, { key: "k1", event: speak(c, "eins"), via: "http", holdingFollowUp: false });
      await store.acquireLease(c, "A", 5000);
      await store.nextEvent(c, "A");
      await store.commit(c, "A", { seq: 1, state: state(c, 1), ttlSeconds: 60, entry: { seq: 1, via: "http", actions: [say(c, "frage")], spokenThrough: 2 }, droppable: true });
      expect(await store.collect(c, http(1))).toMatchObject({ kind: "actions" });
      // Said before the question reached the caller, queued only now: it may answer nothing delivered.
      await store.arrive(c, { key: "k2", event: speak(c, "ja"), via: "http", holdingFollowUp: false, delayed: true });
      expect((await store.nextEvent(c, "A")).event).toMatchObject({ seq: 2, heard: 2, barged: 2 });
      await close?.();
    });

    it("a send waits for the caller events queued after it; their commit can withdraw it; a discard takes it anyway (issue 17)", async () => {
      const { store, id, close } = await make();
      const c = id();
      const sms = { type: "send_sms", session_id: c, phone_number: "4915112345678", message: "Hallo" } as AiFlowAction;
      await store.arrive(c, { key: "k1", event: speak(c, "ja"), via: "http", holdingFollowUp: false });
      await store.acquireLease(c, "A", 5000);
      await store.nextEvent(c, "A");
      await store.arrive(c, { key: "k2", event: speak(c, "nein, doch nicht"), via: "http", holdingFollowUp: false });
      await store.commit(c, "A", { seq: 1, state: state(c, 1), ttlSeconds: 60, entry: { seq: 1, via: "http", actions: [sms, say(c, "gesendet")] }, droppable: true });
      // Held while "nein" is unevaluated: nothing leaves, also not for a holding line's follow-up.
      expect(await store.collect(c, http(undefined, { mayHold: false }))).toEqual({ kind: "nothing" });
      const next = await store.nextEvent(c, "A");
      expect(next.pendingSends).toMatchObject([{ seq: 1, actions: [sms, say(c, "gesendet")] }]);
      // The "no" takes it back in its own commit.
      await store.commit(c, "A", { seq: 2, state: state(c, 2), ttlSeconds: 60, entry: { seq: 2, via: "http", actions: [say(c, "keine SMS")] }, droppable: true, withdraw: [1] });
      expect(await store.collect(c, http(2))).toMatchObject({ kind: "actions", actions: [say(c, "keine SMS")] });

      // Another send held for a verdict: a discard (the call ends) takes it, hold or not.
      await store.arrive(c, { key: "k3", event: speak(c, "ja"), via: "http", holdingFollowUp: false });
      await store.nextEvent(c, "A");
      await store.arrive(c, { key: "k4", event: speak(c, "hm"), via: "http", holdingFollowUp: false });
      await store.commit(c, "A", { seq: 3, state: state(c, 3), ttlSeconds: 60, entry: { seq: 3, via: "http", actions: [sms] }, droppable: true });
      expect(await store.collect(c, http(undefined, { mayHold: false, ignoreVerdicts: true }))).toMatchObject({ kind: "actions", actions: [sms] });
      await close?.();
    });

    it("putBack: a lost answer's entries return in order; a send is refused when an event was processed since; an ended or ending call takes nothing back (issue 17)", async () => {
      const { store, id, close } = await make();
      const c = id();
      const sms = { type: "send_sms", session_id: c, phone_number: "4915112345678", message: "Hallo" } as AiFlowAction;
      await store.arrive(c, { key: "k1", event: speak(c, "ja"), via: "http", holdingFollowUp: false });
      await store.acquireLease(c, "A", 5000);
      await store.nextEvent(c, "A");
      await store.commit(c, "A", { seq: 1, state: state(c, 1), ttlSeconds: 60, entry: { seq: 1, via: "http", actions: [sms, say(c, "gesendet")], spokenThrough: 2 }, droppable: true });
      const taken = await store.collect(c, http(1));
      if (taken.kind !== "actions") throw new Error("expected actions");
      expect(await store.putBack(c, taken.entries, taken.processed)).toEqual([]);
      // What had been delivered may not have been heard: the barged mark moves up to the heard mark.
      await store.arrive(c, { key: "k2", event: timeout(c), via: "http", holdingFollowUp: false });
      expect((await store.nextEvent(c, "A")).event).toMatchObject({ seq: 2, barged: 2 });
      // Held while that caller event is unevaluated; once it is, the entry leaves again.
      expect(await store.collect(c, http(undefined, { mayHold: false }))).toEqual({ kind: "nothing" });
      await store.commit(c, "A", { seq: 2, state: state(c, 2), ttlSeconds: 60, droppable: true });
      const again = await store.collect(c, http(undefined));
      expect(again).toMatchObject({ kind: "actions", actions: [sms, say(c, "gesendet")] });
      if (again.kind !== "actions") throw new Error("expected actions");
      // An event processed since that collect never saw the send: it is not put back.
      await store.arrive(c, { key: "k3", event: speak(c, "nein"), via: "http", holdingFollowUp: false });
      await store.nextEvent(c, "A");
      await store.commit(c, "A", { seq: 3, state: state(c, 3), ttlSeconds: 60, droppable: true });
      const refused = await store.putBack(c, again.entries, again.processed);
      expect(refused).toMatchObject([{ seq: 1, actions: [sms, say(c, "gesendet")] }]);
      // The call ends: from the moment its session_end is queued (its turn may have taken the outbox
      // already, and its commit deletes it) nothing goes back, everything is returned as not delivered.
      await store.arrive(c, { key: "k4", event: { type: "session_end", session: session(c) } as AiFlowEvent, via: "http", holdingFollowUp: false });
      await store.nextEvent(c, "A");
      expect(await store.putBack(c, [{ seq: 3, via: "http", actions: [say(c, "vor dem Ende")] }], 4)).toMatchObject([{ seq: 3 }]);
      expect((await store.progress(c)).ready.http).toBe(0);
      await store.commit(c, "A", { seq: 4, state: null, ttlSeconds: 60, droppable: false });
      expect(await store.putBack(c, [{ seq: 3, via: "http", actions: [say(c, "spät")] }], 4)).toMatchObject([{ seq: 3 }]);
      expect((await store.progress(c)).ready.http).toBe(0);
      await close?.();
    });

    it("the same mutating request twice changes nothing the second time, also with other requests in between; a new request id acts again (issue 17)", async () => {
      const { store, id, close } = await make();
      const c = id();
      const covered = new Set<StoreRequest>();
      let n = 0;
      // A client whose reply was lost sends the request again (same request id): the second reply is the first one's.
      const twice = async <T>(request: StoreRequest, send: (requestId: string) => Promise<T>, between?: () => Promise<unknown>): Promise<T> => {
        covered.add(request);
        const requestId = `${c}-request-${++n}`;
        const first = await send(requestId);
        await between?.();
        expect(await send(requestId), `${request} sent again`).toEqual(first);
        return first;
      };
      const arriving = { key: "k1", event: speak(c, "ja"), via: "http" as const, holdingFollowUp: false };
      expect(await twice("arrive", (rid) => store.arrive(c, arriving, rid))).toEqual({ kind: "queued", seq: 1 });
      await store.arrive(c, { key: "k2", event: speak(c, "nein"), via: "http", holdingFollowUp: false });
      expect(await store.progress(c)).toMatchObject({ queued: 2 });

      await store.acquireLease(c, "A", 5000);
      expect((await twice("nextEvent", (rid) => store.nextEvent(c, "A", rid))).event).toMatchObject({ seq: 1, attempts: 1 });
      expect((await store.nextEvent(c, "A")).event).toMatchObject({ seq: 1, attempts: 2 });
      // One attempt given back, not two (and not the one counted in between).
      await twice("yieldEvent", (rid) => store.yieldEvent(c, 1, rid), () => store.nextEvent(c, "A"));
      expect((await store.nextEvent(c, "A")).event).toMatchObject({ seq: 1, attempts: 3 });

      // Committed, not "bad head": one event off the queue, one outbox entry.
      const entry = { seq: 1, via: "http" as const, actions: [say(c, "a1")], spokenThrough: 1 };
      expect(await twice("commit", (rid) => store.commit(c, "A", { seq: 1, state: state(c, 1), ttlSeconds: 60, entry, droppable: true }, rid))).toBe("committed");
      expect(await store.progress(c)).toEqual({ processed: 1, queued: 2, ready: { http: 1, ws: 0 }, ended: false });
      expect((await store.nextEvent(c, "A")).event).toMatchObject({ seq: 2 });

      // The actions the first run took, once.
      const taken = await twice("collect", (rid) => store.collect(c, http(undefined, { mayHold: false }), rid));
      expect(taken).toMatchObject({ kind: "actions", actions: [say(c, "a1")] });
      if (taken.kind !== "actions") throw new Error("expected actions");
      expect((await store.progress(c)).ready.http).toBe(0);
      // Holding lines counted once each: event 2 is still running.
      expect(await twice("collect", (rid) => store.collect(c, http(2), rid))).toEqual({ kind: "hold", count: 1 });
      expect(await store.collect(c, http(undefined))).toEqual({ kind: "hold", count: 2 });

      // Put back once: an answer that takes it in between delivers it, and the resend brings no second copy.
      let again: unknown;
      expect(await twice("putBack", (rid) => store.putBack(c, taken.entries, taken.processed, rid), async () => (again = await store.collect(c, http(undefined, { mayHold: false }))))).toEqual([]);
      expect(again).toMatchObject({ kind: "actions", actions: [say(c, "a1")] });
      expect((await store.progress(c)).ready.http).toBe(0);

      // Noted once: sent again, the note is not added twice (the next event gets it once).
      const sendEntry = { seq: 1, actions: [{ type: "send_sms" as const, session_id: c, phone_number: "+4915112345678", message: "m" }] };
      await twice("markNotSent", (rid) => store.markNotSent(c, [sendEntry], rid));
      expect((await store.nextEvent(c, "A")).notSent).toEqual([sendEntry]);

      // A new request id is a new request, even with the same arguments.
      expect(await store.arrive(c, arriving, `${c}-request-new`)).toEqual({ kind: "queued", seq: 3 });

      // The combined requests: the lease taken once (attempts counted once), one commit, the next event once.
      const d = id();
      const took = await twice("arriveAndTake", (rid) => store.arriveAndTake(d, { ...arriving, event: speak(d, "ja") }, { token: "T", ttlMs: 5000 }, rid));
      expect(took).toMatchObject({ kind: "queued", seq: 1, taken: { held: true, event: { seq: 1, attempts: 1 } } });
      await store.arrive(d, { key: "k2", event: speak(d, "zwei"), via: "http", holdingFollowUp: false });
      const went = await twice("commitAndNext", (rid) => store.commitAndNext(d, "T", { seq: 1, state: state(d, 1), ttlSeconds: 60, droppable: true }, rid));
      expect(went).toMatchObject({ result: "committed", next: { event: { seq: 2, attempts: 1 } } });
      expect(await store.progress(d)).toMatchObject({ processed: 1, queued: 2 });
      // Every request that carries a request id is covered here.
      const withIds = Object.entries(RESEND_SAFETY).filter(([, how]) => how === "request_id").map(([request]) => request);
      expect([...covered].sort()).toEqual(withIds.sort());
      await close?.();
    });

    it("a collect whose reply was lost: its request id asked again with a request that takes nothing tells what it took; one that never ran takes nothing after (issue 17)", async () => {
      const { store, id, close } = await make();
      const c = id();
      await store.acquireLease(c, "A", 5000);
      for (const n of [1, 2]) {
        await store.arrive(c, { key: `k${n}`, event: speak(c, `${n}`), via: "http", holdingFollowUp: false });
        await store.nextEvent(c, "A");
        await store.commit(c, "A", { seq: n, state: state(c, n), ttlSeconds: 60, entry: { seq: n, via: "http", actions: [say(c, `a${n}`)] }, droppable: true });
      }
      // The store ran it, the client never saw the reply.
      await store.collect(c, http(undefined), `${c}-lost`);
      expect(await store.collect(c, replayCollect("http"), `${c}-lost`)).toMatchObject({ kind: "actions", actions: [say(c, "a1"), say(c, "a2")], entries: [{ seq: 1 }, { seq: 2 }], processed: 2 });
      // Never ran: asked under its id, it is answered "nothing" and changes nothing, and the id is used up.
      await store.arrive(c, { key: "k3", event: speak(c, "3"), via: "http", holdingFollowUp: false });
      await store.nextEvent(c, "A");
      await store.commit(c, "A", { seq: 3, state: state(c, 3), ttlSeconds: 60, entry: { seq: 3, via: "http", actions: [say(c, "a3")] }, droppable: true });
      await store.arrive(c, { key: "k4", event: speak(c, "4"), via: "http", holdingFollowUp: false });
      expect(await store.collect(c, replayCollect("http"), `${c}-never`)).toEqual({ kind: "nothing" });
      expect(await store.collect(c, http(undefined), `${c}-never`)).toEqual({ kind: "nothing" });
      expect(await store.progress(c)).toEqual({ processed: 3, queued: 4, ready: { http: 1, ws: 0 }, ended: false });
      // No holding line counted either: the next answer's is the first.
      expect(await store.collect(c, http(4, { collecting: false }))).toEqual({ kind: "hold", count: 1 });
      await close?.();
    });

    it("markNotSent: every later event gets the committed sends noted as never sent until a commit that writes a state names them; none for a call without state or that ended (issue 17)", async () => {
      const { store, id, close } = await make();
      const c = id();
      const send = (seq: number, n: string) => ({ seq, actions: [say(c, `gesendet ${n}`), { type: "send_sms" as const, session_id: c, phone_number: `+49151123456${n}`, message: "m" }] });
      // No state yet: nothing to make true, nothing noted.
      await store.markNotSent(c, [send(1, "01")]);
      for (let i = 1; i <= 4; i++) await store.arrive(c, { key: `k${i}`, event: speak(c, `w${i}`), via: "http", holdingFollowUp: false });
      await store.acquireLease(c, "A", 5000);
      expect((await store.nextEvent(c, "A")).notSent).toBeUndefined();
      expect(await store.commit(c, "A", { seq: 1, state: state(c, 1), ttlSeconds: 60, entry: { seq: 1, via: "http", actions: send(1, "01").actions }, droppable: true })).toBe("committed");
      await store.markNotSent(c, [send(1, "01")]);
      await store.markNotSent(c, [send(1, "01"), send(2, "02")]);
      const second = await store.nextEvent(c, "A");
      expect(second.event).toMatchObject({ seq: 2 });
      expect(second.notSent).toEqual([send(1, "01"), send(2, "02")]);
      // A commit that leaves the state unchanged does not clear the note: its state never knew.
      expect(await store.commit(c, "A", { seq: 2, state: undefined, ttlSeconds: 60, droppable: true, notSentSeen: [1, 2] })).toBe("committed");
      expect((await store.nextEvent(c, "A")).notSent).toEqual([send(1, "01"), send(2, "02")]);
      // A commit with a state clears what it names, and only that.
      expect(await store.commit(c, "A", { seq: 3, state: state(c, 3), ttlSeconds: 60, droppable: true, notSentSeen: [1] })).toBe("committed");
      expect((await store.nextEvent(c, "A")).notSent).toEqual([send(2, "02")]);
      // The call ends: the note goes with its state, and an ended call takes no new one.
      expect(await store.commit(c, "A", { seq: 4, state: null, ttlSeconds: 60, droppable: false })).toBe("committed");
      await store.markNotSent(c, [send(3, "03")]);
      await store.arrive(c, { key: "k5", event: speak(c, "w5"), via: "http", holdingFollowUp: false });
      const after = await store.nextEvent(c, "A");
      expect(after.event).toMatchObject({ seq: 5 });
      expect(after.notSent).toBeUndefined();
      await close?.();
    });

    it("an event's trace (its span where it arrived) is queued with it: the lease holder's turn links to it", async () => {
      const { store, id, close } = await make();
      const c = id();
      const trace = "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01";
      await store.arrive(c, { key: "k1", event: speak(c, "ja"), via: "http", holdingFollowUp: false, trace });
      await store.arrive(c, { key: "k2", event: speak(c, "nein"), via: "http", holdingFollowUp: false });
      await store.acquireLease(c, "A", 5000);
      expect((await store.nextEvent(c, "A")).event).toMatchObject({ seq: 1, trace });
      await store.commit(c, "A", { seq: 1, state: state(c, 1), ttlSeconds: 60, droppable: true });
      expect((await store.nextEvent(c, "A")).event?.trace).toBeUndefined();
      await close?.();
    });

    it("arriveAndTake takes an idle call's lease with its next event and state; commitAndNext goes on to the next event or releases the lease; subscribers hear of commits", async () => {
      const { store, id, close } = await make();
      const c = id();
      let heard = 0;
      const subscription = store.subscribe(c, () => heard++);
      await subscription.ready;
      const took = await store.arriveAndTake(c, { key: "k1", event: speak(c, "eins"), via: "http", holdingFollowUp: false }, { token: "A", ttlMs: 5000 });
      expect(took).toMatchObject({ kind: "queued", seq: 1, taken: { held: true, event: { seq: 1, attempts: 1, key: "k1" }, pendingSends: [], current: { state: undefined } } });
      // Held by A: the next arrival is queued, not taken.
      expect(await store.arriveAndTake(c, { key: "k2", event: speak(c, "zwei"), via: "http", holdingFollowUp: false }, { token: "B", ttlMs: 5000 })).toEqual({ kind: "queued", seq: 2 });
      expect(await store.acquireLease(c, "B", 5000)).toBe(false);
      const entry = { seq: 1, via: "http" as const, actions: [say(c, "a1")] };
      const first = await store.commitAndNext(c, "A", { seq: 1, state: state(c, 1), ttlSeconds: 60, entry, droppable: true });
      // The next event comes with the state just committed.
      expect(first).toMatchObject({ result: "committed", next: { held: true, event: { seq: 2, attempts: 1 }, current: { state: { turn: 1 } } } });
      const second = await store.commitAndNext(c, "A", { seq: 2, state: state(c, 2), ttlSeconds: 60, droppable: true });
      expect(second).toEqual({ result: "committed", released: { queued: 2 } });
      // Released: anyone may take it now.
      expect(await store.acquireLease(c, "B", 5000)).toBe(true);
      expect(await store.commitAndNext(c, "A", { seq: 3, state: state(c, 3), ttlSeconds: 60, droppable: true })).toEqual({ result: "lease_lost" });
      await store.releaseLease(c, "B");
      expect(await store.progress(c)).toEqual({ processed: 2, queued: 2, ready: { http: 1, ws: 0 }, ended: false });
      // A holding line's follow-up only collects: no lease taken.
      await store.arrive(c, { key: "k3", event: speak(c, "drei"), via: "http", holdingFollowUp: false });
      expect(await store.collect(c, http(3, { collecting: false }))).toEqual({ kind: "hold", count: 1 });
      expect(await store.arriveAndTake(c, { key: "k4", event: timeout(c), via: "http", holdingFollowUp: true }, { token: "C", ttlMs: 5000 })).toEqual({ kind: "collect" });
      expect(await store.acquireLease(c, "D", 5000)).toBe(true);
      await new Promise((r) => setTimeout(r, 50));
      // Two commits and the release by B (an event queued meanwhile may take the free lease).
      expect(heard).toBe(3);
      subscription.close();
      await close?.();
    });

    it("yieldEvent gives back the attempt a live instance counted, once, only for the head (issue 17)", async () => {
      const { store, id, close } = await make();
      const c = id();
      await store.arrive(c, { key: "k1", event: speak(c, "nein"), via: "http", holdingFollowUp: false });
      await store.acquireLease(c, "A", 5000);
      expect((await store.nextEvent(c, "A")).event).toMatchObject({ attempts: 1 });
      await store.yieldEvent(c, 1);
      await store.yieldEvent(c, 1);
      await store.yieldEvent(c, 7);
      expect((await store.nextEvent(c, "A")).event).toMatchObject({ seq: 1, attempts: 1 });
      await close?.();
    });
  });
}
