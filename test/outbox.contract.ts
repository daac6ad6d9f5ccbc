import { describe, expect, it } from "vitest";
import type { Claim, Outbox, OutboxOptions } from "../src/outbox/outbox.js";
import { InvalidArgumentError } from "../src/core/errors.js";

/**
 * The Outbox contract, run against every implementation (memory, Redis): due times and leases,
 * latest body wins, final bodies and tombstones, fenced settling, dead letters.
 * Time is the test's clock (`clock.t`), passed to claimDue and injected as `now`.
 */

export interface OutboxUnderTest {
  outbox: Outbox;
  /** A second handle on the same outbox, as a second instance has (Redis: its own connection). */
  other: Outbox;
  close?: () => Promise<void>;
}

export type MakeOutbox = (opts: OutboxOptions & { now: () => number }) => Promise<OutboxUnderTest>;

const T0 = 1_700_000_000_000;
const LEASE = 30_000;

function clock() {
  const c = { t: T0, now: () => c.t };
  return c;
}

const bodyOf = (claims: Claim[]) => claims.map((c) => c.body);

export function outboxContract(name: string, make: MakeOutbox) {
  describe(`Outbox contract: ${name}`, () => {
    it("an entry is claimed once due, leased away from other claimers, and gone once delivered", async () => {
      const c = clock();
      const { outbox, other, close } = await make({ now: c.now });
      expect(await outbox.put("call-1", '{"a":1}', T0 + 1000)).toBe("stored");
      expect(await outbox.pending()).toBe(1);
      expect(await outbox.claimDue(T0 + 999, 10, LEASE)).toEqual([]);
      const [claim, ...more] = await outbox.claimDue(T0 + 1000, 10, LEASE);
      expect(more).toEqual([]);
      expect(claim).toMatchObject({ key: "call-1", body: '{"a":1}', final: false, attempts: 0, leaseUntil: T0 + 1000 + LEASE });
      expect(claim!.token).toEqual(expect.any(String));
      // Leased: nobody gets it, on this handle or another instance's.
      expect(await outbox.claimDue(T0 + 1000, 10, LEASE)).toEqual([]);
      expect(await other.claimDue(T0 + 1000 + LEASE - 1, 10, LEASE)).toEqual([]);
      expect(await outbox.pending()).toBe(1);
      expect(await other.delivered(claim!)).toBe("settled");
      expect(await outbox.pending()).toBe(0);
      expect(await outbox.claimDue(T0 + 10 * LEASE, 10, LEASE)).toEqual([]);
      // Settling twice changes nothing.
      expect(await outbox.delivered(claim!)).toBe("stale");
      expect(await outbox.deadLetters()).toEqual([]);
      await close?.();
    });

    it("a claim whose lease ended (its claimer died) is claimed again; the old claimer's settle is stale", async () => {
      const c = clock();
      const { outbox, other, close } = await make({ now: c.now });
      await outbox.put("call-1", "{}", T0);
      const [dead] = await outbox.claimDue(T0, 10, 100);
      expect(await other.claimDue(T0 + 99, 10, LEASE)).toEqual([]);
      const [taken] = await other.claimDue(T0 + 100, 10, LEASE);
      expect(taken).toMatchObject({ key: "call-1", body: "{}", attempts: 0, version: dead!.version });
      expect(taken!.token).not.toBe(dead!.token);
      expect(await outbox.delivered(dead!)).toBe("stale");
      expect(await outbox.retryLater(dead!, T0, "late")).toBe("stale");
      expect(await outbox.deadLetter(dead!, "late")).toBe("stale");
      expect(await outbox.pending()).toBe(1);
      expect(await outbox.deadLetters()).toEqual([]);
      expect(await other.delivered(taken!)).toBe("settled");
      expect(await outbox.pending()).toBe(0);
      await close?.();
    });

    it("the latest put wins: its body and its due time replace the waiting entry's", async () => {
      const c = clock();
      const { outbox, close } = await make({ now: c.now });
      await outbox.put("call-1", '{"turn":1}', T0 + 5000);
      expect(await outbox.put("call-1", '{"turn":2}', T0 + 1000)).toBe("stored");
      expect(await outbox.pending()).toBe(1);
      const [first] = await outbox.claimDue(T0 + 1000, 10, LEASE);
      expect(first).toMatchObject({ body: '{"turn":2}' });
      await outbox.retryLater(first!, T0 + 1000, "x");
      // A later due time moves it later too.
      expect(await outbox.put("call-1", '{"turn":3}', T0 + 9000)).toBe("stored");
      expect(await outbox.claimDue(T0 + 8999, 10, LEASE)).toEqual([]);
      expect(bodyOf(await outbox.claimDue(T0 + 9000, 10, LEASE))).toEqual(['{"turn":3}']);
      await close?.();
    });

    it("a final body is not replaced by a later snapshot, only by a later final body", async () => {
      const c = clock();
      const { outbox, close } = await make({ now: c.now });
      expect(await outbox.put("call-1", '{"snapshot":1}', T0 + 60_000)).toBe("stored");
      expect(await outbox.put("call-1", '{"final":1}', T0, { final: true })).toBe("stored");
      // A turn committed after session_end was handled (or a redelivered one) puts its snapshot.
      expect(await outbox.put("call-1", '{"snapshot":2}', T0 + 60_000)).toBe("ignored_final");
      expect(await outbox.put("call-1", '{"snapshot":3}', T0 + 60_000, { final: false })).toBe("ignored_final");
      const [claim] = await outbox.claimDue(T0, 10, LEASE);
      expect(claim).toMatchObject({ body: '{"final":1}', final: true });
      await outbox.retryLater(claim!, T0 + 1, "http 500");
      expect(await outbox.put("call-1", '{"final":2}', T0 + 2, { final: true })).toBe("stored");
      expect(await outbox.claimDue(T0 + 2, 10, LEASE)).toMatchObject([{ body: '{"final":2}', final: true, attempts: 1 }]);
      await close?.();
    });

    it("after delivery, puts for the key are ignored for the tombstone period, then stored again", async () => {
      const c = clock();
      const { outbox, other, close } = await make({ now: c.now, tombstoneMs: 10_000 });
      await outbox.put("call-1", '{"final":1}', T0, { final: true });
      const [claim] = await outbox.claimDue(T0, 10, LEASE);
      expect(await outbox.delivered(claim!)).toBe("settled");
      expect(await outbox.put("call-1", '{"snapshot":9}', T0 + 60_000)).toBe("ignored_delivered");
      expect(await other.put("call-1", '{"final":2}', T0, { final: true })).toBe("ignored_delivered");
      expect(await outbox.pending()).toBe(0);
      expect(await outbox.claimDue(T0 + 10 * LEASE, 10, LEASE)).toEqual([]);
      c.t = T0 + 9_999;
      expect(await outbox.put("call-1", "{}", c.t)).toBe("ignored_delivered");
      c.t = T0 + 10_000;
      expect(await outbox.put("call-1", '{"again":1}', c.t)).toBe("stored");
      expect(bodyOf(await outbox.claimDue(c.t, 10, LEASE))).toEqual(['{"again":1}']);
      await close?.();
    });

    it("a body replaced while its claim is in flight is not claimed meanwhile, and stays due after the old body's delivery", async () => {
      const c = clock();
      const { outbox, other, close } = await make({ now: c.now });
      await outbox.put("call-1", '{"snapshot":1}', T0);
      const [claim] = await outbox.claimDue(T0, 10, LEASE);
      // session_end arrives while the expired snapshot is being posted.
      expect(await other.put("call-1", '{"final":1}', T0, { final: true })).toBe("stored");
      // One post per key at a time: the newer body waits for the claim to be settled.
      expect(await other.claimDue(T0, 10, LEASE)).toEqual([]);
      expect(await outbox.pending()).toBe(1);
      expect(await outbox.delivered(claim!)).toBe("replaced");
      expect(await outbox.pending()).toBe(1);
      const [next] = await other.claimDue(T0, 10, LEASE);
      expect(next).toMatchObject({ key: "call-1", body: '{"final":1}', final: true, attempts: 0 });
      expect(next!.version).not.toBe(claim!.version);
      expect(await other.delivered(next!)).toBe("settled");
      expect(await outbox.pending()).toBe(0);
      await close?.();
    });

    it("the same put again (a put resent after its reply was lost) changes nothing: the claim in flight settles, posted once", async () => {
      const c = clock();
      const { outbox, other, close } = await make({ now: c.now });
      expect(await outbox.put("call-1", '{"v":1}', T0, { revision: 3 })).toBe("stored");
      expect(await outbox.put("call-1", '{"v":1}', T0, { revision: 3 })).toBe("stored");
      const [claim] = await outbox.claimDue(T0, 10, LEASE);
      expect(claim).toMatchObject({ version: 1 });
      expect(await other.put("call-1", '{"v":1}', T0, { revision: 3 })).toBe("stored");
      expect(await outbox.delivered(claim!)).toBe("settled");
      expect(await outbox.pending()).toBe(0);
      await close?.();
    });

    it("a body replaced under a claim whose claimer then dies is claimed when the lease ends, the newer body", async () => {
      const c = clock();
      const { outbox, other, close } = await make({ now: c.now });
      await outbox.put("call-1", '{"v":1}', T0);
      const [dead] = await outbox.claimDue(T0, 10, 1000);
      await other.put("call-1", '{"v":2}', T0, { final: true });
      expect(await other.claimDue(T0 + 999, 10, LEASE)).toEqual([]);
      const [taken] = await other.claimDue(T0 + 1000, 10, LEASE);
      expect(taken).toMatchObject({ body: '{"v":2}', final: true });
      expect(await outbox.delivered(dead!)).toBe("stale");
      expect(await other.delivered(taken!)).toBe("settled");
      await close?.();
    });

    it("a snapshot put during a claim with a due time past the lease keeps the entry until that due time", async () => {
      const c = clock();
      const { outbox, close } = await make({ now: c.now });
      await outbox.put("call-1", '{"v":1}', T0);
      const [claim] = await outbox.claimDue(T0, 10, 1000);
      await outbox.put("call-1", '{"v":2}', T0 + 60_000);
      // The claimer dies: not claimable at its lease end, only when the snapshot is due.
      expect(await outbox.claimDue(T0 + 59_999, 10, LEASE)).toEqual([]);
      expect(bodyOf(await outbox.claimDue(T0 + 60_000, 10, LEASE))).toEqual(['{"v":2}']);
      expect(await outbox.delivered(claim!)).toBe("stale");
      await close?.();
    });

    it("retryLater counts the attempt, releases the claim and makes the entry due at the given time", async () => {
      const c = clock();
      const { outbox, other, close } = await make({ now: c.now });
      await outbox.put("call-1", '{"final":1}', T0, { final: true });
      const [first] = await outbox.claimDue(T0, 10, LEASE);
      expect(await outbox.retryLater(first!, T0 + 2000, "http 500")).toBe("settled");
      expect(await outbox.retryLater(first!, T0 + 2000, "http 500")).toBe("stale");
      expect(await outbox.pending()).toBe(1);
      expect(await other.claimDue(T0 + 1999, 10, LEASE)).toEqual([]);
      const [second] = await other.claimDue(T0 + 2000, 10, LEASE);
      expect(second).toMatchObject({ body: '{"final":1}', attempts: 1, version: first!.version });
      expect(await other.retryLater(second!, T0 + 5000, "timeout")).toBe("settled");
      const [third] = await outbox.claimDue(T0 + 5000, 10, LEASE);
      expect(third).toMatchObject({ attempts: 2 });
      // Replaced while in flight: released, due at the later of the retry time and the newer put's.
      await outbox.put("call-1", '{"final":2}', T0 + 5000, { final: true });
      expect(await outbox.retryLater(third!, T0 + 8000, "http 503")).toBe("replaced");
      expect(await outbox.claimDue(T0 + 7999, 10, LEASE)).toEqual([]);
      expect(await outbox.claimDue(T0 + 8000, 10, LEASE)).toMatchObject([{ body: '{"final":2}', attempts: 3 }]);
      await close?.();
    });

    it("deadLetter keeps the body for inspection, tombstones the key and forgets the letter after its retention", async () => {
      const c = clock();
      const { outbox, other, close } = await make({ now: c.now, deadLetterMs: 50_000 });
      await outbox.put("call-1", '{"final":1}', T0, { final: true });
      await outbox.put("call-2", '{"final":2}', T0, { final: true });
      const claims = await outbox.claimDue(T0, 10, LEASE);
      expect(claims.map((x) => x.key).sort()).toEqual(["call-1", "call-2"]);
      const one = claims.find((x) => x.key === "call-1")!;
      await outbox.retryLater(one, T0 + 10, "http 503");
      const [again] = await outbox.claimDue(T0 + 10, 10, LEASE);
      c.t = T0 + 20;
      expect(await other.deadLetter(again!, "http 400")).toBe("settled");
      expect(await outbox.deadLetter(again!, "http 400")).toBe("stale");
      expect(await outbox.pending()).toBe(1);
      expect(await outbox.deadLetters()).toEqual([{ key: "call-1", body: '{"final":1}', final: true, attempts: 2, error: "http 400", at: T0 + 20 }]);
      expect(await outbox.put("call-1", '{"final":3}', T0, { final: true })).toBe("ignored_delivered");
      // Replaced while in flight: no dead letter, the newer body stays due with the attempt counted.
      const two = claims.find((x) => x.key === "call-2")!;
      await outbox.put("call-2", '{"final":4}', T0 + 30, { final: true });
      expect(await outbox.deadLetter(two, "http 422")).toBe("replaced");
      expect(await other.deadLetters()).toHaveLength(1);
      expect(await outbox.claimDue(T0 + 30, 10, LEASE)).toMatchObject([{ key: "call-2", body: '{"final":4}', attempts: 1 }]);
      c.t = T0 + 20 + 49_999;
      expect(await outbox.deadLetters()).toHaveLength(1);
      c.t = T0 + 20 + 50_000;
      expect(await outbox.deadLetters()).toEqual([]);
      await close?.();
    });

    it("revisions order snapshots: an older non-final body written late never replaces a newer one; a final one always wins", async () => {
      const c = clock();
      const { outbox, other, close } = await make({ now: c.now });
      expect(await outbox.put("call-1", '{"rev":5}', T0 + 100, { revision: 5 })).toBe("stored");
      // A late write from an instance that lost the call: revision 4 after 5.
      expect(await other.put("call-1", '{"rev":4}', T0 + 50, { revision: 4 })).toBe("ignored_older");
      expect(await outbox.put("call-1", '{"rev":5b}', T0 + 100, { revision: 5 })).toBe("stored");
      expect(await outbox.put("call-1", '{"rev":6}', T0 + 200, { revision: 6 })).toBe("stored");
      expect(await outbox.claimDue(T0 + 150, 10, LEASE)).toEqual([]);
      // The final report wins whatever its revision; snapshots after it are ignored as before.
      expect(await other.put("call-1", '{"final":1}', T0, { final: true })).toBe("stored");
      expect(await outbox.put("call-1", '{"rev":7}', T0, { revision: 7 })).toBe("ignored_final");
      expect(bodyOf(await outbox.claimDue(T0, 10, LEASE))).toEqual(['{"final":1}']);
      await close?.();
    });

    it("redrive: an operator puts a dead letter back, due again with its attempts reset; nothing else is redriven", async () => {
      const c = clock();
      const { outbox, other, close } = await make({ now: c.now, deadLetterMs: 50_000 });
      await outbox.put("call-1", '{"final":1}', T0, { final: true });
      const [claim] = await outbox.claimDue(T0, 10, LEASE);
      expect(await outbox.deadLetter(claim!, "http 400")).toBe("settled");
      expect(await other.redrive("call-2", T0)).toBe("no_dead_letter");
      c.t = T0 + 100;
      expect(await other.redrive("call-1", T0 + 200)).toBe("requeued");
      expect(await outbox.deadLetters()).toEqual([]);
      expect(await outbox.pending()).toBe(1);
      expect(await outbox.claimDue(T0 + 199, 10, LEASE)).toEqual([]);
      const [again] = await outbox.claimDue(T0 + 200, 10, LEASE);
      expect(again).toMatchObject({ key: "call-1", body: '{"final":1}', final: true, attempts: 0 });
      // Once delivered it is tombstoned like any other; a second redrive finds no letter.
      expect(await outbox.delivered(again!)).toBe("settled");
      expect(await outbox.redrive("call-1", T0 + 300)).toBe("no_dead_letter");
      expect(await outbox.put("call-1", '{"final":2}', T0 + 300, { final: true })).toBe("ignored_delivered");
      // A letter past its retention cannot be redriven.
      await outbox.put("call-3", "{}", T0 + 300, { final: true });
      const [three] = await outbox.claimDue(T0 + 300, 10, LEASE);
      await outbox.deadLetter(three!, "http 422");
      c.t = T0 + 300 + 50_000;
      expect(await outbox.redrive("call-3", c.t)).toBe("no_dead_letter");
      await close?.();
    });

    it("claims the earliest due entries first, up to the limit; two claimers racing never get the same entry", async () => {
      const c = clock();
      const { outbox, other, close } = await make({ now: c.now });
      for (let i = 0; i < 5; i++) await outbox.put(`call-${i}`, `{"i":${i}}`, T0 + (5 - i) * 10);
      await outbox.put("call-later", "{}", T0 + 1000);
      expect((await outbox.claimDue(T0 + 100, 2, LEASE)).map((x) => x.key)).toEqual(["call-4", "call-3"]);
      expect((await other.claimDue(T0 + 100, 10, LEASE)).map((x) => x.key)).toEqual(["call-2", "call-1", "call-0"]);

      for (let i = 0; i < 40; i++) await outbox.put(`race-${i}`, `{"i":${i}}`, T0);
      const rounds = await Promise.all([0, 1, 2, 3, 4, 5].map((n) => (n % 2 ? outbox : other).claimDue(T0 + 100, 7, LEASE)));
      const keys = rounds.flat().map((x) => x.key);
      expect(new Set(keys).size).toBe(keys.length);
      expect(keys.filter((k) => k.startsWith("race-"))).toHaveLength(40);
      expect(await outbox.pending()).toBe(46);
      await close?.();
    });

    it("keeps bodies byte for byte and takes any key", async () => {
      const c = clock();
      const { outbox, other, close } = await make({ now: c.now });
      const bodies = ['{"name":"Jürgen Müßig ✓ 👍","quote":"\\"","nl":"a\\nb","n":12345678901234567890}', "  {\"spaced\" : [ ] }\n", "x".repeat(200_000), '{"nul":"\u0000"}', ""];
      const keys = ["plain", "a:b{c}d", "ü ß {x}", "with space", "e:t:d:"];
      for (let i = 0; i < bodies.length; i++) await outbox.put(keys[i]!, bodies[i]!, T0);
      const claims = await other.claimDue(T0, 10, LEASE);
      expect(new Map(claims.map((x) => [x.key, x.body]))).toEqual(new Map(keys.map((k, i) => [k, bodies[i]!])));
      for (const claim of claims) expect(await outbox.delivered(claim)).toBe("settled");
      expect(await outbox.pending()).toBe(0);
      for (const k of keys) expect(await outbox.put(k, "{}", T0)).toBe("ignored_delivered");
      await close?.();
    });

    it("refuses times that are not numbers and claims without a limit or lease", async () => {
      const c = clock();
      const { outbox, close } = await make({ now: c.now });
      await expect(outbox.put("k", "{}", Number.NaN)).rejects.toBeInstanceOf(InvalidArgumentError);
      await expect(outbox.claimDue(T0, 0, LEASE)).rejects.toBeInstanceOf(InvalidArgumentError);
      await expect(outbox.claimDue(T0, 1, 0)).rejects.toBeInstanceOf(InvalidArgumentError);
      expect(await outbox.pending()).toBe(0);
      await close?.();
    });
  });
}
