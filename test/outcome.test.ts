import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AiFlowAction } from "../src/aiflow/actions.js";
import { receptionFlow, type ReceptionFlowTypes } from "../tools/reception/agent.js";
import type { ComposedFlow } from "../src/engine/defineFlow.js";
import type { ActionOutcome } from "../src/engine/recovery.js";
import { Engine } from "../src/engine/engine.js";
import { CallPipeline } from "../src/engine/callPipeline.js";
import { ManualClock } from "../src/engine/clock.js";
import { PromptLibrary } from "../src/engine/promptLibrary.js";
import { MemoryLedger } from "../src/ledger/memoryLedger.js";
import { NumberHasher } from "../src/ledger/numberHash.js";
import { OpenAIChatModel } from "../src/llm/openaiChatModel.js";
import { buildApp } from "../src/server/app.js";
import { engineOptions, PROMPTS_DIR } from "../src/service.js";
import { MemoryCallStore } from "../src/store/memoryCallStore.js";
import { MemoryRateLimiter } from "../src/store/rateLimiter.js";
import { FakeOpenAIServer, reply } from "./support/fakeOpenAI.js";
import { CALLER, ev } from "./support/events.js";
import { receptionServicesOf, testConfig } from "./support/harness.js";

/**
 * Issue 17, point 8: each action's outcome reaches the flow through one callback (`onOutcome`):
 * handed over once its answer was written (the webhook) or its frame sent (the socket), not sent
 * with the reason otherwise. The reception flow with a recording `onOutcome` of its own, composed
 * with the SMS task's (which writes sms_handed_over or sms_not_sent, naming the send's sms_approved).
 */

const outcomes: ActionOutcome[] = [];
// The composed reception flow, its outcomes recorded on the way to the SMS task's own handler.
// Already composed (its tasks folded in, kept for the engine's task stack): copied, not composed again.
const flow: ComposedFlow<ReceptionFlowTypes> = {
  ...receptionFlow,
  onOutcome: async (o, services, state, now) => {
    outcomes.push(o);
    await receptionFlow.onOutcome?.(o, services, state, now);
  },
};
const fake = new FakeOpenAIServer();
const ledger = new MemoryLedger();
const clock = new ManualClock();
let app: ReturnType<typeof buildApp>;
let pipeline: CallPipeline<ReceptionFlowTypes>;

beforeAll(async () => {
  await fake.start();
  const config = testConfig();
  const options = engineOptions(config);
  const prompts = new PromptLibrary(PROMPTS_DIR, config.language);
  const log = pino({ level: "silent" });
  const engine = new Engine<ReceptionFlowTypes>({
    flow,
    services: receptionServicesOf(config, { ledger, limiter: new MemoryRateLimiter(), hasher: NumberHasher.full() }),
    options,
    prompts,
    model: new OpenAIChatModel({ apiKey: "k", baseURL: fake.baseURL, timeoutMs: 2000, maxRetries: 0 }),
    log,
    now: Date.now,
  });
  const store = new MemoryCallStore<ReceptionFlowTypes["state"]>();
  pipeline = new CallPipeline({ engine, store, options, prompts, log, clock });
  app = buildApp({ config, pipeline, store, logger: log });
});
afterAll(async () => {
  await app.close();
  await fake.close();
});

const post = async (event: unknown): Promise<AiFlowAction[]> => {
  const r = await app.inject({ method: "POST", url: "/webhook", headers: { "content-type": "application/json" }, payload: JSON.stringify(event) });
  return r.statusCode === 200 ? [].concat(r.json()) : [];
};

describe("action outcomes", () => {
  it("a written webhook answer hands its actions over, the send_sms among them", async () => {
    const id = "outcome-handed-over";
    await post(ev.start(id));
    fake.enqueue(reply.tool("start_sms_flow", { info: "address" }), reply.tool("record_consent", { consented: true }));
    await post(ev.speak(id, "Die Adresse per SMS, bitte."));
    const answer = await post(ev.speak(id, "Ja."));
    expect(answer.some((a) => a.type === "send_sms")).toBe(true);
    await new Promise((r) => setTimeout(r, 20));
    const handed = outcomes.filter((o) => o.callId === id && o.status === "handed_over").flatMap((o) => (o.status === "handed_over" ? o.actions : []));
    expect(handed.filter((a) => a.type === "send_sms")).toEqual([expect.objectContaining({ phone_number: CALLER })]);
    expect(outcomes.filter((o) => o.callId === id && o.status === "not_sent")).toEqual([]);
    // The ledger: the approval, then its handover naming it.
    const approval = ledger.records.find((r) => r.callId === id && r.kind === "sms_approved")!;
    expect(ledger.records.filter((r) => r.callId === id && r.kind === "sms_handed_over")).toEqual([expect.objectContaining({ ref: approval.id, number: CALLER })]);
  });

  it("a send the call's end overtook is not sent, reason call_ended, once; the ledger says not sent", async () => {
    const id = "outcome-call-ended";
    await post(ev.start(id));
    fake.enqueue(reply.tool("start_sms_flow", { info: "address" }));
    await post(ev.speak(id, "Die Adresse per SMS, bitte."));
    // The yes is slow: the caller hears the holding line, then hangs up before anything collects the send.
    const gate = fake.block();
    fake.enqueue(reply.tool("record_consent", { consented: true }));
    const yes = post(ev.speak(id, "Ja."));
    await gate.arrived;
    for (let i = 0; i < 200 && clock.pending === 0; i++) await new Promise((r) => setTimeout(r, 5));
    clock.advance(800);
    expect((await yes).map((a) => a.type)).toEqual(["speak"]);
    gate.release();
    for (let i = 0; i < 200 && !ledger.records.some((r) => r.callId === id && r.kind === "sms_approved"); i++) await new Promise((r) => setTimeout(r, 5));
    await post(ev.end(id));
    const notSent = outcomes.filter((o) => o.callId === id && o.status === "not_sent");
    expect(notSent).toEqual([expect.objectContaining({ reason: "call_ended", actions: expect.arrayContaining([expect.objectContaining({ type: "send_sms" })]) })]);
    expect(outcomes.filter((o) => o.callId === id && o.status === "handed_over").flatMap((o) => (o.status === "handed_over" ? o.actions : [])).some((a) => a.type === "send_sms")).toBe(false);
    const approval = ledger.records.find((r) => r.callId === id && r.kind === "sms_approved")!;
    expect(ledger.records.filter((r) => r.callId === id && (r.kind === "sms_not_sent" || r.kind === "sms_handed_over"))).toEqual([expect.objectContaining({ kind: "sms_not_sent", reason: "call_ended", ref: approval.id })]);
  });
});
