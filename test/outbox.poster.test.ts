import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { MemoryOutbox } from "../src/outbox/memoryOutbox.js";
import { OutboxUnavailableError, type Claim, type SettleResult } from "../src/outbox/outbox.js";
import { verifySignature } from "../src/outbox/signing.js";
import { OutboxPoster, type OutboxPosterOptions } from "../src/outbox/webhookPoster.js";
import { freePort } from "./support/redis.js";
import { logLines, startReceiver, type Received, type Receiver, type Reply } from "./support/webhookReceiver.js";

/**
 * The poster against real HTTP receivers on 127.0.0.1, with a memory outbox and the test's
 * clock (`clock.t`): backoff and Retry-After are checked by moving the clock, not by waiting.
 */

const SECRET = "whsec_test_0123456789abcdef";
/** Personal data: must never appear in a log line. */
const BODY = JSON.stringify({ callId: "call-1", caller: "Erika Mustermann", phone: "+4915112345678", notes: "Rückruf ✓" });
const T0 = 1_700_000_000_000;

let clock: { t: number; now: () => number };
let logs: ReturnType<typeof logLines>;
let receivers: Receiver[];
let posters: OutboxPoster[];

beforeEach(() => {
  clock = { t: T0, now: () => clock.t };
  logs = logLines();
  receivers = [];
  posters = [];
});

afterEach(async () => {
  for (const p of posters) await p.stop();
  for (const r of receivers) await r.close();
  // Log lines carry keys, attempts, statuses and error classes: never the secret or the body.
  const all = logs.lines.join("");
  expect(all).not.toContain(SECRET);
  expect(all).not.toContain("Mustermann");
});

async function receiver(reply: (r: Received, n: number) => Reply): Promise<Receiver> {
  const r = await startReceiver(reply);
  receivers.push(r);
  return r;
}

function poster(outbox: MemoryOutbox, url: string, o: Partial<OutboxPosterOptions> = {}): OutboxPoster {
  const p = new OutboxPoster({
    outbox,
    url,
    secret: SECRET,
    timeoutMs: 2000,
    maxAttempts: 5,
    backoff: { initialMs: 1000, maxMs: 60_000, factor: 2 },
    pollMs: 10,
    batch: 10,
    leaseMs: 30_000,
    log: pino({ level: "debug" }, logs),
    now: clock.now,
    random: () => 0.5,
    ...o,
  });
  posters.push(p);
  return p;
}

const logged = () => logs.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
const verifies = (r: Received, nowSeconds: number, secret = SECRET) =>
  verifySignature(secret, { timestamp: r.headers["x-signature-timestamp"], signature: r.headers["x-signature"] }, r.body, { nowSeconds });

describe("OutboxPoster", () => {
  it("retries a receiver that fails (500, then a dropped connection) with backoff, the same body and Idempotency-Key each time, until delivered once", async () => {
    const rx = await receiver((_, n) => (n === 1 ? { status: 500 } : n === 2 ? "reset" : { status: 200 }));
    const outbox = new MemoryOutbox(clock.now);
    await outbox.put("call-1", BODY, T0, { final: true });
    const p = poster(outbox, rx.url);

    expect(await p.runOnce()).toMatchObject({ claimed: 1, retried: 1 });
    // Equal jitter with random 0.5: 3/4 of initialMs after the first failure...
    clock.t = T0 + 749;
    expect(await p.runOnce()).toMatchObject({ claimed: 0 });
    clock.t = T0 + 750;
    expect(await p.runOnce()).toMatchObject({ claimed: 1, retried: 1 });
    // ...3/4 of initialMs * factor after the second.
    clock.t = T0 + 750 + 1499;
    expect(await p.runOnce()).toMatchObject({ claimed: 0 });
    clock.t = T0 + 750 + 1500;
    expect(await p.runOnce()).toMatchObject({ claimed: 1, delivered: 1 });
    clock.t = T0 + 3_600_000;
    expect(await p.runOnce()).toMatchObject({ claimed: 0 });

    expect(rx.received).toHaveLength(3);
    for (const r of rx.received) {
      expect(r.body).toBe(BODY);
      expect(r.headers["idempotency-key"]).toBe("call-1");
      expect(r.headers["content-type"]).toBe("application/json");
      expect(r.headers["x-signature"]).toMatch(/^sha256=[0-9a-f]{64}$/);
      expect(verifies(r, Number(r.headers["x-signature-timestamp"]))).toBe(true);
      expect(verifies(r, Number(r.headers["x-signature-timestamp"]), "another secret")).toBe(false);
    }
    expect(verifies(rx.received[2]!, Math.floor((T0 + 2250) / 1000))).toBe(true);
    expect(await outbox.pending()).toBe(0);
    expect(await outbox.deadLetters()).toEqual([]);
    expect(await outbox.put("call-1", BODY, clock.t)).toBe("ignored_delivered");

    const lines = logged();
    expect(lines.filter((l) => l.msg === "outbox: post failed; retrying later").map((l) => [l.key, l.attempt, l.status, l.level])).toEqual([
      ["call-1", 1, 500, 40],
      ["call-1", 2, undefined, 40],
    ]);
    const reset = lines.find((l) => l.attempt === 2)!;
    expect(reset.err).toEqual(expect.stringMatching(/^[A-Z_]+$/)); // an error code (UND_ERR_SOCKET, ECONNRESET), not a message
    expect(lines.filter((l) => l.msg === "outbox: delivered").map((l) => [l.key, l.attempt, l.status])).toEqual([["call-1", 3, 200]]);
  });

  it("dead-letters at once when the receiver rejects the payload (400), and logs it as an error", async () => {
    const rx = await receiver(() => ({ status: 400 }));
    const outbox = new MemoryOutbox(clock.now);
    await outbox.put("call-1", BODY, T0, { final: true });
    expect(await poster(outbox, rx.url).runOnce()).toMatchObject({ claimed: 1, deadLettered: 1 });
    expect(rx.received).toHaveLength(1);
    expect(await outbox.pending()).toBe(0);
    expect(await outbox.deadLetters()).toEqual([{ key: "call-1", body: BODY, final: true, attempts: 1, error: "http 400", at: T0 }]);
    expect(await outbox.put("call-1", BODY, T0, { final: true })).toBe("ignored_delivered");
    expect(logged().find((l) => l.level === 50)).toMatchObject({ key: "call-1", attempt: 1, status: 400, msg: expect.stringContaining("rejected the payload") });
  });

  it("a receiver set-up problem (401, 403, 404) is retried, not dead-lettered: the report waits until it is fixed", async () => {
    const rx = await receiver((_, n) => (n === 1 ? { status: 401 } : n === 2 ? { status: 404 } : { status: 200 }));
    const outbox = new MemoryOutbox(clock.now);
    await outbox.put("call-1", BODY, T0, { final: true });
    const p = poster(outbox, rx.url, { backoff: { initialMs: 1000, maxMs: 10_000, factor: 2 } });
    expect(await p.runOnce()).toMatchObject({ retried: 1, deadLettered: 0 });
    clock.t = T0 + 1_000;
    expect(await p.runOnce()).toMatchObject({ retried: 1, deadLettered: 0 });
    clock.t = T0 + 3_000;
    expect(await p.runOnce()).toMatchObject({ delivered: 1 });
    expect(rx.received).toHaveLength(3);
    expect(await outbox.deadLetters()).toEqual([]);
  });

  it("honours a numeric Retry-After on 429, capped at backoff.maxMs", async () => {
    const rx = await receiver((_, n) => (n === 1 ? { status: 429, headers: { "retry-after": "7" } } : n === 2 ? { status: 429, headers: { "retry-after": "3600" } } : { status: 204 }));
    const outbox = new MemoryOutbox(clock.now);
    await outbox.put("call-1", BODY, T0, { final: true });
    const p = poster(outbox, rx.url, { backoff: { initialMs: 1000, maxMs: 10_000, factor: 2 } });
    expect(await p.runOnce()).toMatchObject({ retried: 1 });
    clock.t = T0 + 6_999;
    expect(await p.runOnce()).toMatchObject({ claimed: 0 });
    clock.t = T0 + 7_000;
    expect(await p.runOnce()).toMatchObject({ retried: 1 });
    clock.t = T0 + 7_000 + 9_999;
    expect(await p.runOnce()).toMatchObject({ claimed: 0 });
    clock.t = T0 + 7_000 + 10_000;
    expect(await p.runOnce()).toMatchObject({ delivered: 1 });
    expect(rx.received).toHaveLength(3);
    expect(logged().filter((l) => l.status === 429).map((l) => l.retryInMs)).toEqual([7_000, 10_000]);
  });

  it("retries a post that times out, and delivers it when the receiver answers", async () => {
    const rx = await receiver((_, n) => (n === 1 ? "hang" : { status: 200 }));
    const outbox = new MemoryOutbox(clock.now);
    await outbox.put("call-1", BODY, T0, { final: true });
    const p = poster(outbox, rx.url, { timeoutMs: 200 });
    expect(await p.runOnce()).toMatchObject({ claimed: 1, retried: 1 });
    expect(logged().find((l) => l.attempt === 1)).toMatchObject({ err: "timeout", level: 40 });
    clock.t = T0 + 60_000;
    expect(await p.runOnce()).toMatchObject({ claimed: 1, delivered: 1 });
    expect(rx.received.map((r) => [r.body, r.headers["idempotency-key"]])).toEqual([
      [BODY, "call-1"],
      [BODY, "call-1"],
    ]);
    expect(await outbox.pending()).toBe(0);
  });

  it("retries 408, 503 and refused connections; dead-letters after maxAttempts posts", async () => {
    const statuses = [408, 503, 502];
    const rx = await receiver((_, n) => ({ status: statuses[n - 1] ?? 500 }));
    const outbox = new MemoryOutbox(clock.now);
    await outbox.put("call-1", BODY, T0, { final: true });
    const p = poster(outbox, rx.url, { maxAttempts: 4 });
    for (let i = 0; i < 3; i++) {
      expect(await p.runOnce()).toMatchObject({ claimed: 1, retried: 1 });
      clock.t += 60_000;
    }
    expect(await p.runOnce()).toMatchObject({ claimed: 1, deadLettered: 1 });
    expect(rx.received).toHaveLength(4);
    expect(await outbox.deadLetters()).toMatchObject([{ key: "call-1", attempts: 4, error: "http 500" }]);
    expect(logged().find((l) => l.level === 50)).toMatchObject({ attempt: 4, status: 500, msg: expect.stringContaining("last attempt") });

    const refused = new MemoryOutbox(clock.now);
    await refused.put("call-2", BODY, clock.t);
    expect(await poster(refused, `http://127.0.0.1:${await freePort()}/`).runOnce()).toMatchObject({ retried: 1 });
    expect(logged().find((l) => l.key === "call-2")).toMatchObject({ err: "ECONNREFUSED", level: 40 });
  });

  it("does not follow a redirect: the body goes to the configured URL only", async () => {
    const elsewhere = await receiver(() => ({ status: 200 }));
    const rx = await receiver(() => ({ status: 307, headers: { location: elsewhere.url } }));
    const outbox = new MemoryOutbox(clock.now);
    await outbox.put("call-1", BODY, T0);
    expect(await poster(outbox, rx.url).runOnce()).toMatchObject({ retried: 1 });
    expect(rx.received).toHaveLength(1);
    expect(elsewhere.received).toHaveLength(0);
  });

  it("a body replaced while it was posted stays due and is posted next", async () => {
    const outbox = new MemoryOutbox(clock.now);
    const rx = await receiver((_, n) => {
      // session_end's final body arrives while the expired snapshot is being posted.
      if (n === 1) void outbox.put("call-1", '{"final":true}', T0, { final: true });
      return { status: 200 };
    });
    await outbox.put("call-1", '{"final":false}', T0);
    const p = poster(outbox, rx.url);
    expect(await p.runOnce()).toMatchObject({ claimed: 1, replaced: 1, delivered: 0 });
    expect(await p.runOnce()).toMatchObject({ claimed: 1, delivered: 1 });
    expect(rx.received.map((r) => r.body)).toEqual(['{"final":false}', '{"final":true}']);
    expect(await outbox.pending()).toBe(0);
  });

  it("never throws out of a cycle: an unreachable outbox is logged and the next cycle tries again", async () => {
    const rx = await receiver(() => ({ status: 200 }));
    let down = true;
    class FlakyOutbox extends MemoryOutbox {
      override async claimDue(now: number, limit: number, leaseMs: number): Promise<Claim[]> {
        if (down) throw new OutboxUnavailableError("Redis outbox: connection refused");
        return super.claimDue(now, limit, leaseMs);
      }
      override async delivered(claim: Claim): Promise<SettleResult> {
        if (down) throw new OutboxUnavailableError("Redis outbox: connection refused");
        return super.delivered(claim);
      }
    }
    const outbox = new FlakyOutbox(clock.now);
    await outbox.put("call-1", BODY, T0, { final: true });
    const p = poster(outbox, rx.url, { leaseMs: 5000 });
    expect(await p.runOnce()).toMatchObject({ claimed: 0, failed: 1 });
    expect(logged().at(-1)).toMatchObject({ level: 40, err: "outbox_unavailable" });

    // Claimed and posted, then the store is gone before the result is recorded.
    down = false;
    const claimDue = outbox.claimDue.bind(outbox);
    outbox.claimDue = async (...args) => claimDue(...args).finally(() => (down = true));
    expect(await p.runOnce()).toMatchObject({ claimed: 1, failed: 1, delivered: 0 });
    expect(logged().at(-1)).toMatchObject({ level: 50, key: "call-1", err: "outbox_unavailable" });
    outbox.claimDue = claimDue;
    down = false;
    // Posted again once the lease ends (the receiver dedupes on the Idempotency-Key).
    expect(await p.runOnce()).toMatchObject({ claimed: 0 });
    clock.t = T0 + 5000;
    expect(await p.runOnce()).toMatchObject({ claimed: 1, delivered: 1 });
    expect(rx.received.map((r) => r.headers["idempotency-key"])).toEqual(["call-1", "call-1"]);
  });

  it("start() drains a backlog in the background; stop() lets the posts in flight finish, then no more cycles run", async () => {
    const rx = await receiver(() => ({ status: 200, delayMs: 30 }));
    const outbox = new MemoryOutbox(); // real time: the loop runs on its own
    for (let i = 0; i < 7; i++) await outbox.put(`call-${i}`, `{"i":${i}}`, Date.now());
    const p = poster(outbox, rx.url, { now: Date.now, batch: 3, pollMs: 5 });
    p.start();
    p.start(); // idempotent
    await until(() => rx.received.length >= 7, "7 posts");
    await until(async () => (await outbox.pending()) === 0, "all delivered");

    await outbox.put("call-late", "{}", Date.now());
    await until(() => rx.received.length === 8, "the 8th post");
    // The 8th post is in flight (the receiver answers after 30 ms): stop waits for it.
    await p.stop();
    expect(await outbox.pending()).toBe(0);
    await outbox.put("call-after-stop", "{}", Date.now());
    await new Promise((r) => setTimeout(r, 50));
    expect(rx.received).toHaveLength(8);
    expect(new Set(rx.received.map((r) => r.headers["idempotency-key"])).size).toBe(8);
  });

  it("a start() right after stop() runs one loop, not two", async () => {
    const rx = await receiver(() => ({ status: 200, delayMs: 20 }));
    const outbox = new MemoryOutbox();
    await outbox.put("call-1", "{}", Date.now());
    const p = poster(outbox, rx.url, { now: Date.now, pollMs: 1 });
    const cycles = vi.spyOn(p, "runOnce");
    p.start();
    await until(() => rx.received.length === 1, "the first post");
    const stopped = p.stop();
    p.start(); // while the cycle is still in flight
    await stopped;
    await new Promise((r) => setTimeout(r, 20));
    await p.stop();
    // A second loop's timer would still fire after stop() and run a cycle.
    const after = cycles.mock.calls.length;
    await new Promise((r) => setTimeout(r, 30));
    expect(cycles.mock.calls.length).toBe(after);
  });

  it("refuses options that would post an entry twice or never", () => {
    const outbox = new MemoryOutbox();
    expect(() => poster(outbox, "http://127.0.0.1:1/", { timeoutMs: 30_000, leaseMs: 30_000 })).toThrow(/leaseMs/);
    expect(() => poster(outbox, "http://127.0.0.1:1/", { maxAttempts: 0 })).toThrow(/maxAttempts/);
    expect(() => poster(outbox, "http://127.0.0.1:1/", { secret: "" })).toThrow(/secret/);
  });
});

async function until(check: () => boolean | Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`timed out waiting for ${what}`);
}
