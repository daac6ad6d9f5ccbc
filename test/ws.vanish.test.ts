import type { AddressInfo } from "node:net";
import type { Redis } from "ioredis";
import { pino } from "pino";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { ManualClock } from "../src/engine/clock.js";
import { MemoryLedger } from "../src/ledger/memoryLedger.js";
import { OpenAIChatModel } from "../src/llm/openaiChatModel.js";
import { createService, type Service } from "../src/service.js";
import type { CallState } from "../src/core/callState.js";
import { MemoryCallStore } from "../src/store/memoryCallStore.js";
import { RedisCallStore } from "../src/store/redisCallStore.js";
import type { Collected, CollectRequest } from "../src/store/callStore.js";
import type { SmsSlice } from "../src/tasks/sms/state.js";
import { FakeOpenAIServer, reply } from "./support/fakeOpenAI.js";
import { ev } from "./support/events.js";
import { testConfig } from "./support/harness.js";
import { connectRedis, uniquePrefix } from "./support/redis.js";

/**
 * Issue 17, defects 8 and 9, over the WebSocket:
 *  - a call whose keys vanish from the store mid-turn: the socket gets the apology and a hangup,
 *    and nothing waits (or polls) forever, so the service still closes;
 *  - session_end while a "yes" turn's send is pending: the send is withdrawn (recorded as such)
 *    and nothing is pushed after session_end, on the memory store and on Redis alike.
 */

const APOLOGY = "Entschuldigung, ich habe gerade eine technische Störung. Bitte sagen Sie das gleich noch einmal.";
const QUESTION = /^Darf ich Ihnen die Informationen per SMS/;

const fake = new FakeOpenAIServer();
let redis: Redis;
const prefixes: string[] = [];

beforeAll(async () => {
  await fake.start();
  redis = await connectRedis();
});
afterAll(async () => {
  for (const prefix of prefixes) {
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length) await redis.del(...keys);
  }
  redis.disconnect();
  await fake.close();
});
beforeEach(() => fake.reset());

/**
 * The race of defect 9 made deterministic: while `slowGet` is set, reading a call's state (which
 * the session_end turn does before it discards the outbox) takes a while, so the earlier event's
 * WebSocket handler reaches its collect first, as it may on any store under load.
 */
let slowGetMs = 0;
/** While set, a collect waits this long after telling `collectStarted` (the race's other side). */
let slowCollectMs = 0;
let collectStarted: (() => void) | undefined;
const slowly = (ms: number) => (ms ? new Promise((r) => setTimeout(r, ms)) : Promise.resolve());
async function slowCollect() {
  const ms = slowCollectMs;
  collectStarted?.();
  await slowly(ms);
}
class SlowMemoryStore extends MemoryCallStore<SmsSlice> {
  override async get(callId: string): Promise<CallState<SmsSlice> | undefined> {
    await slowly(slowGetMs);
    return super.get(callId);
  }
  override async collect(callId: string, r: CollectRequest): Promise<Collected> {
    await slowCollect();
    return super.collect(callId, r);
  }
}
class SlowRedisStore extends RedisCallStore<SmsSlice> {
  override async get(callId: string): Promise<CallState<SmsSlice> | undefined> {
    await slowly(slowGetMs);
    return super.get(callId);
  }
  override async collect(callId: string, r: CollectRequest): Promise<Collected> {
    await slowCollect();
    return super.collect(callId, r);
  }
}

interface Running {
  svc: Service;
  ledger: MemoryLedger;
  clock: ManualClock;
  url: string;
  redisStore?: RedisCallStore<SmsSlice>;
}

async function start(kind: "memory" | "redis"): Promise<Running> {
  const ledger = new MemoryLedger();
  const clock = new ManualClock();
  let redisStore: RedisCallStore<SmsSlice> | undefined;
  if (kind === "redis") {
    const prefix = uniquePrefix();
    prefixes.push(prefix);
    redisStore = new SlowRedisStore(redis, { prefix });
  }
  const svc = createService({
    config: testConfig({ tasks: { sms: { recipients: { perRecipient: { max: 1000, windowSeconds: 60 } } } } }),
    model: new OpenAIChatModel({ apiKey: "k", baseURL: fake.baseURL, timeoutMs: 10_000, maxRetries: 0 }),
    ledger,
    logger: pino({ level: "silent" }),
    clock,
    store: redisStore ?? new SlowMemoryStore(),
  });
  await svc.app.listen({ port: 0, host: "127.0.0.1" });
  const url = `ws://127.0.0.1:${(svc.app.server.address() as AddressInfo).port}/ws`;
  return { svc, ledger, clock, url, redisStore };
}

async function connect(url: string) {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  const frames: Array<Record<string, unknown>> = [];
  ws.on("message", (d) => frames.push(JSON.parse(d.toString()) as Record<string, unknown>));
  await new Promise<void>((res, rej) => {
    ws.once("open", () => res());
    ws.once("error", rej);
  });
  const send = (e: unknown) => ws.send(JSON.stringify(e));
  const waitFor = async (pred: () => boolean | Promise<boolean>, what = "condition", ms = 3000) => {
    const t0 = Date.now();
    while (!(await pred())) {
      if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}; frames: ${JSON.stringify(frames)}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  return { ws, frames, send, waitFor };
}

const settle = (ms = 100) => new Promise((r) => setTimeout(r, ms));

/** Resolves with what `p` gives, or fails after `ms` naming `what` (instead of hanging the test). */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, rej) => (timer = setTimeout(() => rej(new Error(`${what} did not finish within ${ms} ms`)), ms)));
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

describe("defect 8: the call's keys vanish from Redis mid-turn", () => {
  it("the socket gets the apology and a hangup, nothing waits forever, and the service closes", async () => {
    const r = await start("redis");
    let closed = false;
    try {
      const id = "ws-vanish";
      const c = await connect(r.url);
      c.send(ev.start(id));
      await c.waitFor(() => c.frames.length === 1, "the greeting");
      const gate = fake.block();
      fake.enqueue(reply.text("Die späte Antwort."));
      c.send(ev.speak(id, "Eine Frage"));
      await gate.arrived;
      // Redis loses the call (eviction, a flush, a failover without the data) while the model thinks.
      await redis.del(...r.redisStore!.keys(id));
      gate.release();
      await c.waitFor(() => c.frames.some((f) => f.type === "hangup"), "the apology and the hangup");
      const after = c.frames.slice(1);
      expect(after.map((f) => f.type)).toEqual(["speak", "hangup"]);
      expect(after[0]).toMatchObject({ type: "speak", text: APOLOGY, session_id: id });
      expect(after[1]).toEqual({ type: "hangup", session_id: id });
      // The turn's late answer was never committed: it never leaves.
      await settle(100);
      expect(c.frames.some((f) => f.text === "Die späte Antwort.")).toBe(false);
      c.ws.close();
      // No handler, watcher or pump is left waiting for the vanished event.
      await within(r.svc.close(), 3000, "service.close()");
      closed = true;
    } finally {
      if (!closed) void r.svc.close();
    }
  });
});

describe.each(["memory", "redis"] as const)("defect 9: session_end while a yes turn's send is pending (%s store)", (kind) => {
  let r: Running;
  beforeAll(async () => {
    r = await start(kind);
  });
  afterAll(async () => {
    await within(r.svc.close(), 5000, "service.close()");
  });

  /** A socket whose call has just been asked the consent question. */
  async function atConsentQuestion(id: string) {
    const c = await connect(r.url);
    c.send(ev.start(id));
    await c.waitFor(() => c.frames.length === 1, "the greeting");
    fake.enqueue(reply.tool("start_sms_flow", { info: "address" }));
    c.send(ev.speak(id, "Schicken Sie mir die Adresse per SMS"));
    await c.waitFor(() => c.frames.some((f) => QUESTION.test(String(f.text ?? ""))), "the consent question");
    return c;
  }

  /** The approved send is on record as not sent, the call having ended: its one outcome, never a lone sms_approved. */
  function expectWithdrawn(id: string) {
    const records = r.ledger.records.filter((x) => x.callId === id);
    const approval = records.find((x) => x.kind === "sms_approved")!;
    expect(approval).toBeDefined();
    expect(records.filter((x) => x.kind === "sms_approved")).toHaveLength(1);
    expect(records.filter((x) => x.ref === approval.id)).toEqual([expect.objectContaining({ kind: "sms_not_sent", reason: "call_ended", number: "4915112345678", outcome: "not_sent" })]);
  }

  it("the pending send is withdrawn and recorded so; nothing is pushed after session_end", async () => {
    const id = `ws-end-pending-${kind}`;
    const c = await atConsentQuestion(id);
    const before = c.frames.length;

    // The "yes" turn is slow: the caller hangs up before it is done.
    const gate = fake.block();
    fake.enqueue(reply.tool("record_consent", { consented: true }));
    c.send(ev.speak(id, "Ja, gerne."));
    await gate.arrived;
    c.send(ev.end(id));
    // session_end is queued behind the yes turn (start, request, yes, end).
    await c.waitFor(async () => (await r.svc.store.progress(id)).queued >= 4, "session_end queued");
    const pushedBeforeEnd = c.frames.length;
    slowGetMs = 100;
    gate.release();
    await c.waitFor(async () => (await r.svc.store.progress(id)).ended, "the call ended in the store");
    await c.waitFor(() => r.ledger.records.some((x) => x.callId === id && x.kind === "sms_not_sent"), "sms_not_sent", 3000).catch(() => undefined);
    await settle(200);

    // Nothing at all after session_end: no send_sms, no late line.
    expect(c.frames.slice(pushedBeforeEnd)).toEqual([]);
    expect(c.frames.slice(before).some((f) => f.type === "send_sms")).toBe(false);
    expectWithdrawn(id);
    c.ws.close();
  });

  it("session_end while the yes turn's answer is being collected: it is not pushed either, and recorded as withdrawn", async () => {
    const id = `ws-end-collecting-${kind}`;
    const c = await atConsentQuestion(id);
    const before = c.frames.length;
    fake.enqueue(reply.tool("record_consent", { consented: true }));
    // The yes turn runs at once; its handler's collect is under way (slow) when session_end arrives.
    const started = new Promise<void>((res) => (collectStarted = res));
    slowCollectMs = 150;
    try {
      c.send(ev.speak(id, "Ja, gerne."));
      await started;
      collectStarted = undefined;
      c.send(ev.end(id));
      await c.waitFor(async () => (await r.svc.store.progress(id)).ended, "the call ended in the store");
      await c.waitFor(() => r.ledger.records.some((x) => x.callId === id && x.kind === "sms_not_sent"), "sms_not_sent").catch(() => undefined);
      await settle(300);
    } finally {
      slowCollectMs = 0;
      collectStarted = undefined;
    }
    expect(c.frames.slice(before)).toEqual([]);
    expectWithdrawn(id);
    c.ws.close();
  });
});
