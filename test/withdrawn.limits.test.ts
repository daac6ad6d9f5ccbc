import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { reply } from "./support/fakeOpenAI.js";
import { CALLER, ev } from "./support/events.js";
import { smsActions, spoken, startTestService, testConfig, type TestService } from "./support/harness.js";
import { atConsentQuestion, ledgerKinds, postPending, until } from "./support/deadline.js";
import { MemoryCallStore } from "../src/store/memoryCallStore.js";
import { StoreUnavailableError, type CommitRequest } from "../src/store/callStore.js";
import type { SmsSlice } from "../src/tasks/sms/state.js";
import { MemoryRateLimiter, RedisRateLimiter } from "../src/store/rateLimiter.js";
import { connectRedis, uniquePrefix } from "./support/redis.js";
import type { Redis } from "ioredis";

/**
 * Issue 17, defect 5: a send the gate approved that never left gives back what it took. A commit
 * that throws after the gate approved a send records sms_not_sent, and every withdrawn send
 * gives its rate-limit hits back, so the caller is not refused "too many SMS" for an SMS they
 * never got.
 */

const HOLDING = "Einen Moment bitte.";
const RATE_LIMITED = /schon mehrere SMS/;

let local: TestService | undefined;
afterEach(async () => {
  await local?.close();
  local = undefined;
});

describe("a commit that throws after the gate approved a send", () => {
  it("the turn is committed as it was when the queue moves again (judged once, sent once); an instance that stops first records sms_not_sent (commit_failed) and gives the hit back", async () => {
    const inner = new MemoryCallStore<SmsSlice>();
    // Commits carrying a send that fail from now on: as many as the worker's resend tries (src/engine/pipeline/resend.ts), so the outage outlasts them.
    const RESEND_TRIES = 6;
    let failSendCommits = 0;
    let thrown = 0;
    // A store whose commit fails (Redis gone, say) for the turn that carries the approved send.
    const store = Object.assign(Object.create(inner) as MemoryCallStore<SmsSlice>, {
      async commitAndNext(callId: string, token: string, r: CommitRequest<SmsSlice>) {
        if (failSendCommits > 0 && r.entry?.actions.some((a) => a.type === "send_sms")) {
          failSendCommits--;
          thrown++;
          throw new StoreUnavailableError("Redis call store: connection lost");
        }
        return inner.commitAndNext(callId, token, r);
      },
    });
    local = await startTestService({
      config: testConfig({ server: { leaseMs: 300 }, tasks: { sms: { recipients: { perRecipient: { max: 1, windowSeconds: 3600 } } } } }),
      store,
    });
    const svc = local;
    const id = "withdrawn-commit-throws";
    await atConsentQuestion(svc, id);
    svc.fake.reset();
    // The yes, and the caller's "Ja?" over the silence (the yes's verdict while its send waits).
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }), reply.tool("record_consent", { consented: true }));
    failSendCommits = RESEND_TRIES;
    const { answer } = await postPending(svc, ev.speak(id, "Ja, gerne."));
    await until(() => thrown === RESEND_TRIES, "the commit threw, every try");
    svc.deadlineClock.advance(800);
    const first = await answer;
    // The turn's result was not committed: the caller hears the holding line, no SMS.
    expect(spoken(first.actions)).toEqual([HOLDING]);
    expect(smsActions(first.actions)).toEqual([]);

    // The caller's next words get the queue going again: the yes's turn is committed as it was (not
    // judged a second time), its send leaves once, and is not refused as "too many SMS".
    const next = await svc.post(ev.speak(id, "Hallo? Ja, bitte."));
    const all = [...next.actions, ...(await svc.post(ev.speechEnded(id))).actions];
    expect(spoken(all).some((t) => RATE_LIMITED.test(t))).toBe(false);
    expect(smsActions(all)).toEqual([expect.objectContaining({ phone_number: CALLER })]);
    const after = ledgerKinds(svc, id);
    expect(after.filter((k) => k === "consent_given")).toHaveLength(1);
    expect(after.filter((k) => k === "sms_approved")).toHaveLength(1);
    expect(after.filter((k) => k === "sms_not_sent")).toHaveLength(0);
    await until(() => ledgerKinds(svc, id).includes("sms_handed_over"), "the send handed over");

    // Another caller: the commit fails and the instance stops before the queue moves again.
    const other = { from: "491701234567" };
    const id2 = "withdrawn-commit-throws-then-stop";
    await svc.post(ev.start(id2, other));
    svc.fake.reset();
    svc.fake.enqueue(reply.tool("start_sms_flow", { info: "address" }), reply.tool("record_consent", { consented: true }));
    await svc.post(ev.speak(id2, "Die Adresse per SMS, bitte.", false, other));
    failSendCommits = RESEND_TRIES;
    const pending = await postPending(svc, ev.speak(id2, "Ja.", false, other));
    await until(() => thrown === 2 * RESEND_TRIES, "the second commit threw, every try");
    svc.deadlineClock.advance(800);
    await pending.answer;
    await svc.pipeline.drain();
    const approval = svc.memoryLedger.records.find((r) => r.callId === id2 && r.kind === "sms_approved")!;
    const withdrawn = svc.memoryLedger.records.find((r) => r.callId === id2 && r.kind === "sms_not_sent")!;
    expect(withdrawn).toMatchObject({ number: "491701234567", reason: "commit_failed", ref: approval.id });
    expect(withdrawn.detail).toMatch(/commit failed/);
  });
});

const specs = [
  { key: "to:1", max: 1, windowMs: 10_000 },
  { key: "global", max: 10, windowMs: 60_000 },
];

describe("MemoryRateLimiter.release", () => {
  it("gives the latest acquire of a holder back in every window, and leaves no empty key", async () => {
    const l = new MemoryRateLimiter(() => 0);
    expect(await l.acquire(specs, "sms:call-1:1")).toEqual({ ok: true });
    expect(await l.acquire(specs, "sms:call-2:1")).toEqual({ ok: false, key: "to:1" });
    await l.release("sms:call-1:1");
    expect(l.size).toEqual({ keys: 0, holders: 0 });
    expect(await l.acquire(specs, "sms:call-2:1")).toEqual({ ok: true });
    // A second release of the same holder has nothing left to give back; another holder's hits stay.
    await l.release("sms:call-1:1");
    await l.release("sms:unknown:1");
    expect(await l.acquire(specs)).toEqual({ ok: false, key: "to:1" });
    expect(l.size).toEqual({ keys: 2, holders: 1 });
  });

  it("gives back only the holder's own hit when other hits count in the same window", async () => {
    let now = 0;
    const l = new MemoryRateLimiter(() => now);
    const global = [{ key: "global", max: 3, windowMs: 60_000 }];
    await l.acquire(global, "a");
    now = 10;
    await l.acquire(global, "b");
    now = 20;
    await l.acquire(global, "a");
    await l.release("a");
    // "a"'s latest hit (at 20) went; "a"'s first and "b"'s stay, so one more fits.
    expect(await l.acquire(global)).toEqual({ ok: true });
    expect(await l.acquire(global)).toEqual({ ok: false, key: "global" });
  });

  it("drops keys whose hits all expired, and holders with them", async () => {
    let now = 0;
    const l = new MemoryRateLimiter(() => now);
    await l.acquire([{ key: "short", max: 5, windowMs: 1000 }], "h1");
    await l.acquire([{ key: "refused", max: 1, windowMs: 1000 }]);
    // Refused by its full window: the pruned, empty "other" window is not kept.
    expect(await l.acquire([{ key: "other", max: 5, windowMs: 1000 }, { key: "refused", max: 1, windowMs: 1000 }])).toEqual({ ok: false, key: "refused" });
    expect(l.size).toEqual({ keys: 2, holders: 1 });
    // Long after every window: the next acquire sweeps what expired, also keys nobody touches again.
    now = 120_000;
    await l.acquire([{ key: "fresh", max: 5, windowMs: 1000 }]);
    expect(l.size).toEqual({ keys: 1, holders: 0 });
    // A release whose hits expired gives nothing back (and finds nothing).
    await l.release("h1");
    expect(l.size).toEqual({ keys: 1, holders: 0 });
  });

  it("a release after the holder's hits expired gives back nothing that counts now", async () => {
    let now = 0;
    const l = new MemoryRateLimiter(() => now);
    const one = [{ key: "k", max: 1, windowMs: 1000 }];
    await l.acquire(one, "old");
    now = 1500;
    expect(await l.acquire(one, "new")).toEqual({ ok: true });
    await l.release("old");
    expect(await l.acquire(one)).toEqual({ ok: false, key: "k" });
  });
});

describe("RedisRateLimiter.release", () => {
  let redis: Redis;
  beforeAll(async () => {
    redis = await connectRedis();
  });
  afterAll(async () => {
    await redis.quit();
  });

  it("removes exactly the hit the holder's acquire added, in every window, and its note", async () => {
    const prefix = uniquePrefix();
    const l = new RedisRateLimiter(redis, prefix);
    expect(await l.acquire(specs, "sms:call-1:1")).toEqual({ ok: true });
    expect(await l.acquire([specs[1]!], "sms:call-2:2")).toEqual({ ok: true });
    expect(await l.acquire(specs, "sms:call-3:1")).toEqual({ ok: false, key: "to:1" });
    expect(await redis.zcard(`${prefix}global`)).toBe(2);
    expect(await redis.pttl(`${prefix}held:sms:call-1:1`)).toBeGreaterThan(10_000);
    await l.release("sms:call-1:1");
    expect(await redis.exists(`${prefix}to:1`)).toBe(0);
    expect(await redis.zcard(`${prefix}global`)).toBe(1);
    expect(await redis.exists(`${prefix}held:sms:call-1:1`)).toBe(0);
    expect(await l.acquire(specs, "sms:call-3:1")).toEqual({ ok: true });
    // Nothing more to give back for that holder: the others' hits stay.
    await l.release("sms:call-1:1");
    await l.release("sms:nobody:1");
    expect(await redis.zcard(`${prefix}global`)).toBe(2);
    expect(await l.acquire(specs)).toEqual({ ok: false, key: "to:1" });
  });

  it("gives back the holder's latest acquire first", async () => {
    const prefix = uniquePrefix();
    let now = 1_000_000;
    const l = new RedisRateLimiter(redis, prefix, () => now);
    const global = [{ key: "global", max: 5, windowMs: 60_000 }];
    await l.acquire(global, "h");
    now += 10;
    await l.acquire(global, "h");
    await l.release("h");
    expect(await redis.zrangebyscore(`${prefix}global`, "-inf", "+inf", "WITHSCORES")).toEqual([expect.any(String), "1000000"]);
    await l.release("h");
    expect(await redis.exists(`${prefix}global`)).toBe(0);
  });
});
