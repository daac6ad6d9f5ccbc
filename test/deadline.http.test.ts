import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { pino } from "pino";
import type { Redis } from "ioredis";
import { ManualClock } from "../src/engine/clock.js";
import { MemoryLedger } from "../src/ledger/memoryLedger.js";
import { OpenAIChatModel } from "../src/llm/openaiChatModel.js";
import { createService, type Service } from "../src/service.js";
import { RedisCallStore } from "../src/store/redisCallStore.js";
import { RedisRateLimiter } from "../src/store/rateLimiter.js";
import { FakeOpenAIServer, reply } from "./support/fakeOpenAI.js";
import { ev } from "./support/events.js";
import { smsActions, spoken, startTestService, testConfig, type TestService } from "./support/harness.js";
import { atConsentQuestion, pastDeadline, until } from "./support/deadline.js";
import { connectRedis, uniquePrefix } from "./support/redis.js";
import type { AiFlowAction } from "../src/aiflow/actions.js";

/**
 * The answer deadline (server.answerWithinMs, 800 ms) through the real webhook. The deadline
 * runs on a manual clock and the model blocks until the test releases it: what happens when
 * depends on the test's steps, never on the machine's speed.
 */

const HOLDING = "Einen Moment bitte.";
const GAVE_UP = "Entschuldigung, das dauert gerade zu lange. Können Sie das bitte noch einmal sagen?";
const QUESTION = /^Darf ich Ihnen die Informationen per SMS/;

let svc: TestService;
beforeAll(async () => {
  svc = await startTestService({ config: testConfig({ tasks: { sms: { recipients: { perRecipient: { max: 1000, windowSeconds: 60 } } } } }) });
});
afterAll(async () => svc.close());
beforeEach(() => svc.fake.reset());






describe("a turn slower than the deadline", () => {
  it("answers with a holding line that arms a short input timeout; the turn's actions follow with the next assistant_speech_ended, never with assistant_speak", async () => {
    const id = "dl-holding";
    await svc.post(ev.start(id));
    const gate = svc.fake.block();
    svc.fake.enqueue(reply.tool("start_sms_flow", { info: "address" }));
    const first = svc.post(ev.speak(id, "Schicken Sie mir die Adresse per SMS?"));
    await gate.arrived;
    await until(async () => svc.deadlineClock.pending > 0);
    svc.deadlineClock.advance(800);
    const holding = await first;
    expect(holding.actions).toEqual([expect.objectContaining({ type: "speak", text: HOLDING, user_input_timeout_seconds: 2 })]);

    // assistant_speak arrives while the holding line plays: it never carries the late answer.
    const playing = await pastDeadline(svc, ev.assistantSpeak(id, HOLDING));
    expect(playing.status).toBe(204);
    gate.release();
    await until(async () => (await svc.store.get(id))?.step === "confirm_consent");
    const speak = await svc.post(ev.assistantSpeak(id, HOLDING));
    expect(speak.status).toBe(204);

    const collected = await svc.post(ev.speechEnded(id));
    expect(spoken(collected.actions)).toHaveLength(1);
    expect(spoken(collected.actions)[0]).toMatch(QUESTION);
    // Exactly once: nothing is left for the next event.
    expect((await svc.post(ev.speechEnded(id))).status).toBe(204);
  });

  it("the holding line's timeout collects too; still not ready: another holding line, then an apology, and the late result (a send_sms) is dropped and recorded as not sent", async () => {
    const id = "dl-give-up";
    await atConsentQuestion(svc, id);
    const gate = svc.fake.block();
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
    const yes = svc.post(ev.speak(id, "Ja, gerne."));
    await gate.arrived;
    await until(async () => svc.deadlineClock.pending > 0);
    svc.deadlineClock.advance(800);
    expect(spoken((await yes).actions)).toEqual([HOLDING]);

    const answers: AiFlowAction[][] = [];
    // The end of the holding line's speech is no reason for another one: its short timeout follows.
    const ended = await pastDeadline(svc, ev.speechEnded(id));
    expect(ended.status).toBe(204);
    const second = await pastDeadline(svc, ev.timeout(id));
    answers.push(second.actions);
    expect(spoken(second.actions)).toEqual([HOLDING]);
    const third = await pastDeadline(svc, ev.timeout(id));
    answers.push(third.actions);
    expect(spoken(third.actions)).toEqual([GAVE_UP]);
    expect(third.actions[0]).toMatchObject({ user_input_timeout_seconds: 8 });

    // The turn finishes late: its send_sms never leaves, and the ledger has no approval that stands
    // (the gate approves nothing for an answer given up on; one approved just before is recorded as not sent).
    gate.release();
    await until(async () => (await svc.store.progress(id)).processed >= (await svc.store.progress(id)).queued, "the late turn done");
    const records = svc.memoryLedger.records.filter((r) => r.callId === id);
    const notSent = new Set(records.filter((r) => r.kind === "sms_not_sent" && r.reason === "turn_given_up").map((r) => r.ref));
    expect(records.filter((r) => r.kind === "sms_approved" && !notSent.has(r.id))).toEqual([]);
    expect(records.filter((r) => r.kind === "sms_handed_over")).toEqual([]);
    const after = await svc.post(ev.speechEnded(id));
    answers.push(after.actions);
    expect(answers.flatMap(smsActions)).toEqual([]);
    const state = (await svc.store.get(id))!;
    expect(state.sms.sent).toEqual([]);

    // Neither the holding lines nor the apology are part of the conversation: the consent question
    // is still the last line the caller heard, so their repeated "yes" counts.
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
    const again = await svc.post(ev.speak(id, "Ja, gerne."));
    expect(smsActions(again.actions)).toEqual([expect.objectContaining({ phone_number: "4915112345678" })]);
  });

  it("the holding line is not part of the conversation: not in history, not silence, never repeated by a re-prompt, and a yes right after it counts", async () => {
    const id = "dl-not-conversation";
    await svc.post(ev.start(id));
    const gate = svc.fake.block();
    svc.fake.enqueue(reply.tool("start_sms_flow", { info: "address" }));
    const asked = svc.post(ev.speak(id, "Die Adresse per SMS, bitte."));
    await gate.arrived;
    await until(async () => svc.deadlineClock.pending > 0);
    svc.deadlineClock.advance(800);
    expect(spoken((await asked).actions)).toEqual([HOLDING]);
    gate.release();
    await until(async () => (await svc.store.get(id))?.step === "confirm_consent");
    // The holding line's own timeout: it collects the question, and is no caller silence.
    const collected = await svc.post(ev.timeout(id));
    expect(spoken(collected.actions)[0]).toMatch(QUESTION);
    const state = (await svc.store.get(id))!;
    expect(state.inputTimeouts).toBe(0);
    expect(state.lastLine).toMatch(QUESTION);
    expect(JSON.stringify(state.history)).not.toContain(HOLDING);
    // Real silence after the question: the re-prompt repeats the question, not the holding line.
    const silence = await svc.post(ev.timeout(id));
    expect(spoken(silence.actions).join(" ")).not.toContain(HOLDING);
    expect(spoken(silence.actions).at(-1)).toMatch(QUESTION);
    // The model never saw the holding line either.
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
    const yes = await svc.post(ev.speak(id, "Ja."));
    expect(JSON.stringify(svc.fake.requests.at(-1)!.messages)).not.toContain(HOLDING);
    expect(smsActions(yes.actions)).toHaveLength(1);
  });

  it("events that arrive while a turn runs are handled in order after it, and each action leaves once", async () => {
    const id = "dl-order";
    await svc.post(ev.start(id));
    const gate = svc.fake.block();
    svc.fake.enqueue(reply.text("Antwort eins."), reply.text("Antwort zwei."));
    const one = svc.post(ev.speak(id, "Frage eins"));
    await gate.arrived;
    await until(async () => svc.deadlineClock.pending > 0);
    svc.deadlineClock.advance(800);
    expect(spoken((await one).actions)).toEqual([HOLDING]);
    const two = await pastDeadline(svc, ev.speak(id, "Frage zwei"));
    expect(spoken(two.actions)).toEqual([HOLDING]);
    gate.release();
    await until(async () => svc.fake.requests.length === 2 && (await svc.store.get(id))!.history.some((m) => m.content === "Antwort zwei."));
    // The model saw the questions in the caller's order, each after the answer to the one before.
    const users = svc.fake.requests[1]!.messages.filter((m) => m.role === "user").map((m) => m.content);
    expect(users.slice(-2)).toEqual(["Frage eins", "Frage zwei"]);
    const collected = await svc.post(ev.timeout(id));
    expect(spoken(collected.actions)).toEqual(["Antwort eins.", "Antwort zwei."]);
    expect((await svc.post(ev.speechEnded(id))).status).toBe(204);
  });
});

describe("a config still naming the old setting", () => {
  it("speech.fillerAfterMs is refused with the setting that replaced it", () => {
    expect(() => testConfig({ speech: { fillerAfterMs: 1200 } })).toThrow(/speech\.fillerAfterMs: was replaced by server\.answerWithinMs/);
  });
});

describe("two instances on one Redis: a holder that lost its lease writes nothing", () => {
  const fake = new FakeOpenAIServer();
  let redis: Redis;
  const prefix = uniquePrefix();
  const clocks = [new ManualClock(), new ManualClock()];
  const ledger = new MemoryLedger();
  let instances: Service[] = [];

  beforeAll(async () => {
    await fake.start();
    redis = await connectRedis();
    const config = testConfig({ server: { leaseMs: 300 }, tasks: { sms: { recipients: { perRecipient: { max: 1000, windowSeconds: 60 } } } } });
    instances = clocks.map((clock) =>
      createService({
        config,
        clock,
        model: new OpenAIChatModel({ apiKey: "k", baseURL: fake.baseURL, timeoutMs: 10_000, maxRetries: 0 }),
        ledger,
        logger: pino({ level: "silent" }),
        store: new RedisCallStore(redis, { prefix }),
        limiter: new RedisRateLimiter(redis, `${prefix}limit:`),
      }),
    );
  });
  afterAll(async () => {
    for (const s of instances) await s.close();
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
    await fake.close();
  });

  const post = async (i: number, event: unknown) => {
    const r = await instances[i]!.app.inject({ method: "POST", url: "/webhook", headers: { "content-type": "application/json" }, payload: JSON.stringify(event) });
    return { status: r.statusCode, actions: (r.statusCode === 200 ? [].concat(r.json()) : []) as AiFlowAction[] };
  };

  it("A stalls past its lease, B takes the call over and finishes the turn; A's turn is aborted and commits nothing", async () => {
    const id = "lease-fence";
    await post(0, ev.start(id));
    fake.enqueue(reply.tool("start_sms_flow", { info: "address" }));
    expect(spoken((await post(0, ev.speak(id, "SMS bitte"))).actions)[0]).toMatch(QUESTION);

    const gate = fake.block();
    fake.enqueue(reply.tool("record_consent", { consented: true }), reply.tool("record_consent", { consented: true }));
    const onA = post(0, ev.speak(id, "Ja, gerne."));
    await gate.arrived;
    // A stalls (a partition, a frozen process): its lease runs out and B, with the call's next
    // event, takes over and runs the interrupted turn again.
    await redis.del(`${prefix}v4:call:{${id}}:lease`);
    const onB = post(1, ev.timeout(id));
    await until(async () => fake.requests.length >= 3);
    await until(async () => (await instances[1]!.store.progress(id)).processed >= 4);
    // A's renewal finds the lease gone: its turn is aborted, its late answer is not written.
    gate.release();
    for (const c of clocks) c.advance(800);
    const [a, b] = await Promise.all([onA, onB]);
    const later = await post(1, ev.speechEnded(id));
    const all = [...a.actions, ...b.actions, ...later.actions];
    expect(smsActions(all)).toEqual([expect.objectContaining({ phone_number: "4915112345678" })]);
    expect(ledger.records.filter((r) => r.callId === id && r.kind === "sms_approved")).toHaveLength(1);
    expect(ledger.records.filter((r) => r.callId === id && r.kind === "sms_not_sent")).toEqual([]);
    const state = (await instances[1]!.store.get(id))!;
    expect(state.sms.sent).toHaveLength(1);
  });
});
