import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { Writable } from "node:stream";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MemoryLedger } from "../src/ledger/memoryLedger.js";
import { OpenAIChatModel } from "../src/llm/openaiChatModel.js";
import { MemoryOutbox } from "../src/outbox/memoryOutbox.js";
import { OutboxPoster } from "../src/outbox/webhookPoster.js";
import { ManualClock } from "../src/engine/clock.js";
import { createService, type Service } from "../src/service.js";
import { FakeOpenAIServer, reply } from "./support/fakeOpenAI.js";
import { ev } from "./support/events.js";
import { callbackTestConfig, testConfig } from "./support/harness.js";
import { duplicateKeys } from "./support/jsonKeys.js";
import { startReceiver, type Receiver, type Reply } from "./support/webhookReceiver.js";

/**
 * Issue 22, the small defects (its point 7): the outbox poster's log lines carried "component"
 * twice; the callback agent said "… sonst noch etwas?" and then "Vielen Dank, Anna Schmidt …" in
 * the same answer; after /hangup the chat showed `[step , …]` and the session_end log line had
 * `"step":""`.
 */

const TSX = join("node_modules", ".bin", "tsx");

/** A service whose every log line (debug and up) lands in `lines`. */
function loggedService(config: ReturnType<typeof testConfig>, fake: FakeOpenAIServer, now: () => number): { service: Service; lines: string[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      lines.push(...String(chunk).split("\n").filter(Boolean));
      cb();
    },
  });
  const service = createService({
    clock: new ManualClock(),
    config,
    model: new OpenAIChatModel({ apiKey: "k", baseURL: fake.baseURL, timeoutMs: 2000, maxRetries: 0 }),
    ledger: new MemoryLedger(),
    logger: pino({ level: "debug" }, sink),
    now,
    callbackSecret: "test-secret",
    startPoster: false,
  });
  return { service, lines };
}

const post = (s: Service, e: unknown) => s.app.inject({ method: "POST", url: "/webhook", headers: { "content-type": "application/json" }, payload: JSON.stringify(e) });

describe("the duplicate-key check itself", () => {
  it("finds a key repeated in one object, at any depth, and nothing in clean JSON", () => {
    expect(duplicateKeys('{"level":30,"component":"a","component":"b"}')).toEqual(["component"]);
    expect(duplicateKeys('{"a":{"b":1,"c":[{"d":1,"d":2}],"b":2},"e":"x\\"y"}')).toEqual(["a.c[0].d", "a.b"]);
    expect(duplicateKeys('{"a":{"b":1},"c":{"b":1},"s":"{\\"a\\":1,\\"a\\":2}"}')).toEqual([]);
    expect(() => duplicateKeys('{"a":1')).toThrow();
  });
});

describe("the outbox poster's log lines", () => {
  let fake: FakeOpenAIServer;
  let receiver: Receiver;
  let answer: (n: number) => Reply = () => ({ status: 200 });
  beforeAll(async () => {
    fake = new FakeOpenAIServer();
    await fake.start();
    receiver = await startReceiver((_r, n) => answer(n));
  });
  afterAll(async () => {
    await fake.close();
    await receiver.close();
  });

  it("each parses as JSON with every key once: delivered, retried, dead-lettered, through the service's poster", async () => {
    let now = Date.UTC(2026, 10, 23, 9, 0, 0);
    const config = callbackTestConfig(receiver.url, { logLevel: "debug", agents: { callback: { endpoint: { maxAttempts: 2 } } } });
    const { service, lines } = loggedService(config, fake, () => now);
    try {
      // Three calls, each ended: the first report is refused once (500), then taken; the second
      // refused as a payload (422, dead-lettered at once); the third fails twice (dead-lettered).
      for (const id of ["log-a", "log-b", "log-c"]) {
        await post(service, ev.start(id));
        await post(service, ev.end(id));
      }
      const byKey = new Map<string, number>();
      answer = () => ({ status: 200 });
      const replies: Record<string, Reply[]> = { "log-a": [{ status: 500 }, { status: 200 }], "log-b": [{ status: 422 }], "log-c": [{ status: 503 }, { status: 503 }] };
      const poster = service.poster!;
      // The receiver tells the calls apart by their Idempotency-Key.
      answer = (n) => {
        const key = String(receiver.received[n - 1]!.headers["idempotency-key"]);
        const k = (byKey.get(key) ?? 0) + 1;
        byKey.set(key, k);
        return replies[key]![k - 1]!;
      };
      await poster.runOnce();
      now += 120_000; // past every backoff
      await poster.runOnce();
      expect(await service.outbox!.pending()).toBe(0);
    } finally {
      await service.close();
    }
    const posterLines = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => typeof l.msg === "string" && l.msg.startsWith("outbox:"));
    expect(posterLines.map((l) => l.msg)).toEqual(
      expect.arrayContaining(["outbox: delivered", "outbox: post failed; retrying later", "outbox: the receiver rejected the payload; dead-lettered without retrying", "outbox: giving up after the last attempt; dead-lettered"]),
    );
    for (const l of posterLines) expect(l.component).toBe("callback-poster");
    // Every line the service wrote, the poster's and all others.
    for (const line of lines) expect(duplicateKeys(line), line).toEqual([]);
  });

  it("a poster given a logger without a component names itself, once", async () => {
    const lines: string[] = [];
    const log = pino({ level: "info" }, { write: (l: string) => void lines.push(l.trim()) });
    const outbox = new MemoryOutbox(() => 0);
    await outbox.put("k1", "{}", 0);
    const poster = new OutboxPoster({ outbox, url: receiver.url, secret: "s", timeoutMs: 1000, maxAttempts: 3, backoff: { initialMs: 10, maxMs: 10, factor: 1 }, pollMs: 10, batch: 5, leaseMs: 5000, log, now: () => 0 });
    answer = () => ({ status: 200 });
    await poster.runOnce();
    expect(lines).toHaveLength(1);
    expect(duplicateKeys(lines[0]!)).toEqual([]);
    expect(JSON.parse(lines[0]!)).toMatchObject({ component: "outbox-poster", msg: "outbox: delivered" });
  });
});

describe("the session_end turn names the step the call ended in", () => {
  it("its 'event handled' line has the last step (never \"step\":\"\"), and a session_end of an unknown call has no step key", async () => {
    const fake = new FakeOpenAIServer();
    await fake.start();
    const { service, lines } = loggedService(testConfig({ logLevel: "info" }), fake, Date.now);
    try {
      await post(service, ev.start("end-1"));
      fake.enqueue(reply.tool("start_sms_flow", { info: "opening_hours" }));
      await post(service, ev.speak("end-1", "Die Öffnungszeiten per SMS, bitte."));
      await post(service, ev.end("end-1"));
      await post(service, ev.end("never-started"));
    } finally {
      await service.close();
      await fake.close();
    }
    for (const line of lines) expect(line).not.toContain('"step":""');
    const ends = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === "event handled" && l.event === "session_end");
    expect(ends).toHaveLength(2);
    expect(ends[0]).toMatchObject({ sessionId: "end-1", step: "confirm_consent", stepBefore: "confirm_consent" });
    expect(ends[1]!.sessionId).toBe("never-started");
    expect(ends[1]).not.toHaveProperty("step");
    expect(ends[1]).not.toHaveProperty("stepBefore");
  });
});

describe("npm run chat with the callback agent (the path the new user took)", () => {
  it("the SMS outcome's question ends its answer (the thanks came with the offer), and /hangup shows the step the call ended in", () => {
    const input = ["Anna Schmidt", "Ja", "Es geht um eine Frage zur Rechnung", "Ja", "Morgen früh", "Ja", "Ja, gerne", "/hangup"].join("\n") + "\n";
    const r = spawnSync(TSX, ["src/cli/chat.ts", "--offline", "--config", "config/callback.yaml"], { input, encoding: "utf8", timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    const out = r.stdout.split("\n");
    const agent = (i: number) => (out[i]?.startsWith("agent: ") ? out[i]!.slice(7) : undefined);
    // The thanks is said once, right before the SMS offer …
    const thanks = out.map((_, i) => i).filter((i) => agent(i)?.startsWith("Vielen Dank, Anna Schmidt. Ihre Rückrufbitte ist notiert"));
    expect(thanks).toHaveLength(1);
    expect(agent(thanks[0]! + 1)).toMatch(/^Darf ich Ihnen eine Bestätigung Ihrer Rückrufbitte per SMS/);
    // … and no line follows a "sonst noch …?" in the same answer.
    const anythingElse = out.map((_, i) => i).filter((i) => /sonst noch/.test(agent(i) ?? ""));
    expect(anythingElse.length).toBeGreaterThan(0);
    for (const i of anythingElse) expect(agent(i + 1), out.slice(i, i + 2).join("\n")).toBeUndefined();
    expect(agent(anythingElse[0]!)).toMatch(/^Ich habe die SMS an .* abgeschickt\. Kann ich sonst noch etwas für Sie tun\?$/);
    // After /hangup: the step the call ended in, never an empty one.
    expect(r.stdout).not.toMatch(/\[step ,/);
    expect(r.stdout).toMatch(/\[call ended in step wrap_up, 0 model request\(s\)/);
  }, 60_000);
});
