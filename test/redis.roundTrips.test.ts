import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FakeOpenAIServer, reply } from "./support/fakeOpenAI.js";
import { ev } from "./support/events.js";
import { startTestService, testConfig, type TestService } from "./support/harness.js";
import { connectRedis, uniquePrefix } from "./support/redis.js";
import { RedisCallStore } from "../src/store/redisCallStore.js";
import type { SmsSlice } from "../src/tasks/sms/state.js";

/**
 * Issue 21, point 2: what an event costs in store round trips, counted at the client (every
 * command ioredis sends on the store's connection). An event whose turn finishes within the
 * deadline on the instance that takes the call's lease costs at most 4 commands; an instance
 * whose event waits for another instance's turn learns it is done from the store's notice
 * (pub/sub), not by polling.
 */

/** Counts the commands a connection sends (sendCommand is where every ioredis command goes). */
function counted(redis: Redis): { names: string[] } {
  const log = { names: [] as string[] };
  const send = redis.sendCommand.bind(redis);
  redis.sendCommand = ((command: Parameters<Redis["sendCommand"]>[0], stream?: Parameters<Redis["sendCommand"]>[1]) => {
    log.names.push(command.name.toUpperCase());
    return send(command, stream);
  }) as Redis["sendCommand"];
  return log;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let redisA: Redis;
let redisB: Redis;
let A: TestService;
let B: TestService;
let commandsA: { names: string[] };
let commandsB: { names: string[] };
const fake = new FakeOpenAIServer();

beforeAll(async () => {
  await fake.start();
  redisA = await connectRedis();
  redisB = await connectRedis();
  commandsA = counted(redisA);
  commandsB = counted(redisB);
  const prefix = uniquePrefix();
  const config = testConfig();
  A = await startTestService({ fake, config, store: new RedisCallStore<SmsSlice>(redisA, { prefix }) });
  B = await startTestService({ fake, config, store: new RedisCallStore<SmsSlice>(redisB, { prefix }) });
});
afterAll(async () => {
  await A?.close();
  await B?.close();
  redisA?.disconnect();
  redisB?.disconnect();
});

describe("store round trips per event (Redis, counted at the client)", () => {
  it("a caller turn that finishes within the deadline on the instance taking the lease: at most 4 commands, none of them a poll", async () => {
    const id = "round-trips-simple";
    await A.post(ev.start(id));
    await A.post(ev.speak(id, "Guten Tag."));
    await sleep(50);
    fake.enqueue(reply.text("Wir haben Montag bis Freitag geöffnet."));
    commandsA.names.length = 0;
    const answer = await A.post(ev.speak(id, "Wann haben Sie geöffnet?"));
    expect(answer.actions).toEqual([expect.objectContaining({ type: "speak", text: "Wir haben Montag bis Freitag geöffnet." })]);
    // Whatever the event sets going in the background (the watch for its turn, the lease) is counted too.
    await sleep(300);
    expect(commandsA.names.length, commandsA.names.join(" ")).toBeLessThanOrEqual(4);
    // arriveAndTake, commitAndNext (which released the lease), collect: three scripts.
    expect(commandsA.names.filter((n) => n === "EVALSHA" || n === "EVAL")).toHaveLength(3);
  });

  it("an event waiting on another instance's turn learns it is done from the store's notice, not by polling", async () => {
    const id = "round-trips-elsewhere";
    await A.post(ev.start(id));
    // A runs a slow turn (the model holds it) and so holds the call's lease.
    const gate = fake.block();
    fake.enqueue(reply.text("Einen Augenblick, ich sehe nach."), reply.text("Dienstags auch nachmittags."));
    const first = A.post(ev.speak(id, "Wann haben Sie geöffnet?"));
    await gate.arrived;
    // The caller's next words reach B: queued there, run by A with its commit (A holds the lease).
    commandsB.names.length = 0;
    const second = B.post(ev.speak(id, "Und dienstags?"));
    // B waits a second and a half without a deadline (its answer clock stands still): polling every
    // 20 ms, as before, would have sent about 75 reads.
    await sleep(1500);
    const whileWaiting = commandsB.names.length;
    gate.release();
    await first;
    const answer = await second;
    expect(answer.actions.map((a) => (a as { text?: string }).text)).toContain("Dienstags auch nachmittags.");
    expect(whileWaiting, commandsB.names.join(" ")).toBeLessThanOrEqual(4);
    expect(commandsB.names.length, commandsB.names.join(" ")).toBeLessThanOrEqual(8);
  });
});
