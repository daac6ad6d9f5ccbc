import { cpSync, mkdtempSync, appendFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { z } from "zod";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { actions, type AiFlowAction } from "../src/aiflow/actions.js";
import { parseEvent } from "../src/aiflow/events.js";
import type { CallState } from "../src/core/callState.js";
import { defineStep, defineTool, finish, hostTask, startTask, type Keys, type StepDef } from "../src/engine/define.js";
import { defineFlow } from "../src/engine/defineFlow.js";
import { Engine } from "../src/engine/engine.js";
import { PromptLibrary } from "../src/engine/promptLibrary.js";
import { MemoryLedger } from "../src/ledger/memoryLedger.js";
import { NumberHasher } from "../src/ledger/numberHash.js";
import { OpenAIChatModel } from "../src/llm/openaiChatModel.js";
import { engineOptions, PROMPTS_DIR } from "../src/service.js";
import type { RateLimiter } from "../src/store/rateLimiter.js";
import { smsTask } from "../tools/sms/task.js";
import type { SmsFailureNotice, SmsTaskResult } from "../src/tasks/sms/result.js";
import { SMS_TASK, SMS_TASK_ENTRY } from "../src/tasks/sms/start.js";
import { initialSmsSlice, type SmsSlice } from "../src/tasks/sms/state.js";
import type { SmsContext, SmsFlowTypes, SmsLineKey, SmsServices } from "../src/tasks/sms/types.js";
import type { TurnContext } from "../src/engine/turnContext.js";
import type { TurnRecord } from "../src/core/turnRecord.js";
import { endCall } from "../tools/common/end_call.js";
import { FakeOpenAIServer, reply } from "./support/fakeOpenAI.js";
import { CALLER, ev } from "./support/events.js";
import { smsConfigOf, testConfig } from "./support/harness.js";

/**
 * The SMS consent-and-send flow as a reusable task (issue 13, point 1; issue 19, point 1), seen
 * from a host flow written here, in the test, only from the public parts: the host starts the task
 * with its own parameters (what to send, which number to offer first), gets a typed result back in
 * the step that started it (its onResult), hears about a later sms_failed after it moved on (its
 * onNotice), and cannot get a send_sms past the task's gate, whatever its own code does.
 */

interface HostSlice extends SmsSlice {
  /** `startedBy`: the step whose onResult heard the result (every host step records its own name). */
  desk: { results: Array<{ result: SmsTaskResult; startedBy: string }>; failures: SmsFailureNotice[] };
}
interface HostTypes extends SmsFlowTypes {
  state: HostSlice;
}

/**
 * Compile-time: a host's turn passes for the task's as is (no cast). Keys are contravariant
 * (`Keys`), so a context that can say more lines can say the task's; `npm test` runs tsc.
 */
export const hostContextServesTheTask: (ctx: TurnContext<HostTypes & { lines: Keys<SmsLineKey | "host_only_line"> }>) => SmsContext = (ctx) => ctx;

/** What the host passes: the number to offer first (null: ask), from the test. */
let offerNumber: string | null | undefined = "0170 1234567";

const offerAddressSms = defineTool<HostTypes>()({
  name: "offer_address_sms",
  transitions: [...SMS_TASK_ENTRY],
  parameters: () => z.object({}),
  execute: () => ({ next: startTask(SMS_TASK, { slots: { info: "address" }, offerNumber }) }),
});

const goElsewhere = defineTool<HostTypes>()({
  name: "go_elsewhere",
  transitions: ["elsewhere"],
  parameters: () => z.object({}),
  execute: (ctx) => ({ result: ctx.note("call_ending"), next: "elsewhere" }),
});

/** A host tool that tries to send an SMS itself, around the task. */
const rogueSend = defineTool<HostTypes>()({
  name: "rogue_send",
  transitions: [],
  parameters: () => z.object({}),
  execute(ctx) {
    ctx.emit(actions.sendSms(ctx.sessionId, CALLER, "Praxis Dr. Muster: Adresse: Musterstraße 1, 40210 Düsseldorf. Antworten auf diese SMS werden nicht gelesen."));
    return ctx.note("call_ending");
  },
});

/** A host tool that finishes the SMS task where none runs: a flow definition error, never a silent jump. */
const finishNothing = defineTool<HostTypes>()({
  name: "finish_nothing",
  transitions: ["exit"],
  parameters: () => z.object({}),
  execute: () => ({ next: finish(SMS_TASK, { status: "cancelled" }) }),
});

const step = defineStep<HostTypes>();
/** Each host step hears what reaches it under its own name. */
const hears = (name: string): Pick<StepDef<HostTypes>, "onResult" | "onNotice"> => ({
  onResult: (ctx, done) => void ctx.state.desk.results.push({ result: done.result, startedBy: name }),
  onNotice: (ctx, n) => void ctx.state.desk.failures.push(n.notice),
});
const hostFlow = defineFlow<HostTypes>({
  name: "host",
  initialStep: "desk",
  steps: [
    step({ name: "desk", kind: "llm", prompt: "reception/main", tools: [offerAddressSms, goElsewhere, rogueSend, finishNothing, endCall], ...hears("desk") }),
    step({ name: "elsewhere", kind: "llm", prompt: "reception/main", tools: [endCall], ...hears("elsewhere") }),
  ],
  tasks: [hostTask(smsTask)],
  initialState: () => ({ ...initialSmsSlice(), desk: { results: [], failures: [] } }),
  lines: [],
  notes: [],
  hooks: { promptValues: (_s, { config }) => ({ business_name: config.business.name, business_purpose: config.business.purpose, business_facts: config.business.facts }) },
});

// The host's tools need descriptions like any tool: a copy of prompts/ with three more.
const promptsDir = mkdtempSync(join(tmpdir(), "host-prompts-"));
cpSync(PROMPTS_DIR, promptsDir, { recursive: true });
appendFileSync(join(promptsDir, "tools.md"), "\n## offer_address_sms\nOffer the address by SMS.\n\n## go_elsewhere\nMove on.\n\n## rogue_send\nA host tool that sends an SMS itself.\n\n## finish_nothing\nFinishes a task that is not running.\n");

const fake = new FakeOpenAIServer();
const ledger = new MemoryLedger();
let limiterDown = false;
const limiter: RateLimiter = {
  acquire: async () => {
    if (limiterDown) throw new Error("limits store down");
    return { ok: true };
  },
  release: async () => undefined,
};
let engine: Engine<HostTypes>;
let clock = Date.UTC(2026, 10, 28, 9, 0, 0);

beforeAll(async () => {
  await fake.start();
  const config = testConfig();
  const services: SmsServices = { config: smsConfigOf(config), ledger, limiter, hasher: NumberHasher.full() };
  engine = new Engine<HostTypes>({
    flow: hostFlow,
    services,
    options: engineOptions(config),
    prompts: new PromptLibrary(promptsDir, "de-DE"),
    model: new OpenAIChatModel({ apiKey: "test-key", baseURL: fake.baseURL, timeoutMs: 2000, maxRetries: 0 }),
    log: pino({ level: "silent" }),
    now: () => clock,
  });
});
afterAll(async () => {
  await fake.close();
  rmSync(promptsDir, { recursive: true, force: true });
});
beforeEach(() => {
  fake.reset();
  offerNumber = "0170 1234567";
  limiterDown = false;
});

/** One call driven through the engine turn by turn, as the pipeline would. */
function call(id: string) {
  let state: CallState<HostSlice> | undefined;
  let last: TurnRecord | undefined;
  return {
    get state() {
      return state!;
    },
    get record() {
      return last!;
    },
    async send(event: unknown): Promise<AiFlowAction[]> {
      clock += 1000;
      const p = parseEvent(event);
      if (p.kind !== "event") throw new Error("not an event");
      const out = await engine.runTurn(state, p.event);
      last = out.record;
      if (out.next.kind === "save") state = out.next.state;
      return out.record.actions;
    },
    id,
  };
}

const said = (a: AiFlowAction[]) => a.filter((x): x is Extract<AiFlowAction, { type: "speak" }> => x.type === "speak").map((x) => x.text);
const sends = (a: AiFlowAction[]) => a.filter((x) => x.type === "send_sms");
const QUESTION_0170 = /^Darf ich Ihnen die Informationen per SMS an die Nummer 0 1 7 0/;

describe("the SMS task in a host flow", () => {
  it("starts with the host's parameters (slot, number offered first) and hands the typed result to the step that started it", async () => {
    const c = call("task-handed-over");
    await c.send(ev.start(c.id));
    fake.enqueue(reply.tool("offer_address_sms"));
    expect(said(await c.send(ev.speak(c.id, "Die Adresse bitte per SMS.")))).toEqual([expect.stringMatching(QUESTION_0170)]);
    fake.enqueue(reply.tool("record_consent", { consented: true }));
    const yes = await c.send(ev.speak(c.id, "Ja."));
    expect(sends(yes)).toEqual([expect.objectContaining({ phone_number: "491701234567", message: expect.stringContaining("Musterstraße 1") })]);
    expect(c.state.step).toBe("desk");
    expect(c.state.desk.results).toEqual([{ result: { status: "handed_over", number: "491701234567" }, startedBy: "desk" }]);
  });

  it("declined: the result comes back, and starting again returns declined at once, without a question", async () => {
    const c = call("task-declined");
    await c.send(ev.start(c.id));
    fake.enqueue(reply.tool("offer_address_sms"));
    await c.send(ev.speak(c.id, "SMS bitte."));
    fake.enqueue(reply.tool("record_consent", { consented: false }));
    await c.send(ev.speak(c.id, "Nein, doch nicht."));
    expect(c.state.desk.results.map((r) => r.result.status)).toEqual(["declined"]);
    fake.enqueue(reply.tool("offer_address_sms"), reply.text("Gern sage ich Ihnen die Adresse."));
    const again = await c.send(ev.speak(c.id, "Ach, schicken Sie sie doch."));
    expect(said(again).some((t) => QUESTION_0170.test(t ?? ""))).toBe(false);
    expect(c.state.step).toBe("desk");
    expect(c.state.desk.results.map((r) => r.result)).toEqual([
      { status: "declined", number: "491701234567" },
      { status: "declined", number: "491701234567" },
    ]);
  });

  it("cancelled: offerNumber null asks for a number; calling it off returns cancelled", async () => {
    offerNumber = null;
    const c = call("task-cancelled");
    await c.send(ev.start(c.id));
    fake.enqueue(reply.tool("offer_address_sms"));
    await c.send(ev.speak(c.id, "Schicken Sie mir das."));
    expect(c.state.step).toBe("collect_number");
    fake.enqueue(reply.tool("cancel_sms"));
    await c.send(ev.speak(c.id, "Ach nein, lassen Sie es."));
    expect(c.state.desk.results.map((r) => r.result.status)).toEqual(["cancelled"]);
    expect(c.state.step).toBe("desk");
  });

  it("refused: limits unavailable at the send, and no SMS left afterwards; nothing the caller said was a no", async () => {
    const c = call("task-refused");
    await c.send(ev.start(c.id));
    fake.enqueue(reply.tool("offer_address_sms"));
    await c.send(ev.speak(c.id, "SMS bitte."));
    limiterDown = true;
    fake.enqueue(reply.tool("record_consent", { consented: true }));
    const yes = await c.send(ev.speak(c.id, "Ja."));
    expect(sends(yes)).toEqual([]);
    expect(c.state.desk.results.map((r) => r.result)).toEqual([{ status: "refused", reason: "rate_limiter_unavailable", number: "491701234567" }]);
    // After one SMS was handed over, the task refuses at once: no SMS left in this call.
    limiterDown = false;
    const d = call("task-no-sms-left");
    await d.send(ev.start(d.id));
    fake.enqueue(reply.tool("offer_address_sms"));
    await d.send(ev.speak(d.id, "SMS bitte."));
    fake.enqueue(reply.tool("record_consent", { consented: true }));
    await d.send(ev.speak(d.id, "Ja."));
    fake.enqueue(reply.tool("offer_address_sms"), reply.text("Die SMS ist schon unterwegs."));
    await d.send(ev.speak(d.id, "Noch eine SMS bitte."));
    expect(d.state.desk.results.map((r) => r.result.status)).toEqual(["handed_over", "refused"]);
    expect(d.state.desk.results[1]!.result).toEqual({ status: "refused", reason: "no_sms_left" });
  });

  it("a later sms_failed reaches the host after it moved on; a transient one asks again and returns where the host is now", async () => {
    const c = call("task-failed-later");
    await c.send(ev.start(c.id));
    fake.enqueue(reply.tool("offer_address_sms"));
    await c.send(ev.speak(c.id, "SMS bitte."));
    fake.enqueue(reply.tool("record_consent", { consented: true }));
    await c.send(ev.speak(c.id, "Ja."));
    fake.enqueue(reply.tool("go_elsewhere"), reply.text("Gern."));
    await c.send(ev.speak(c.id, "Und noch etwas anderes."));
    expect(c.state.step).toBe("elsewhere");
    const failed = await c.send(ev.smsFailed(c.id, "smsc_unavailable", "491701234567"));
    expect(c.state.desk.failures).toEqual([{ reason: "smsc_unavailable", number: "491701234567", retrying: true }]);
    // The retry needs a new yes: the question again, then back to where the host was.
    expect(said(failed).some((t) => QUESTION_0170.test(t ?? ""))).toBe(true);
    fake.enqueue(reply.tool("record_consent", { consented: true }));
    const yes = await c.send(ev.speak(c.id, "Ja, bitte nochmal."));
    expect(sends(yes)).toHaveLength(1);
    expect(c.state.step).toBe("elsewhere");
    expect(c.state.desk.results.map((r) => r.result.status)).toEqual(["handed_over", "handed_over"]);
    // A permanent failure later: the host hears of it, no retry.
    await c.send(ev.smsFailed(c.id, "insufficient_balance", "491701234567"));
    expect(c.state.desk.failures.at(-1)).toEqual({ reason: "insufficient_balance", number: "491701234567", retrying: false });
    expect(c.state.step).toBe("elsewhere");
  });

  it("the engine keeps the task stack: nothing runs after the task ended, and finishing a task that does not run is a flow definition error", async () => {
    const c = call("task-stack");
    await c.send(ev.start(c.id));
    fake.enqueue(reply.tool("offer_address_sms"));
    await c.send(ev.speak(c.id, "SMS bitte."));
    // Started by the desk, back to the desk: one frame while the question is open.
    expect(c.state.tasks).toEqual([{ task: "sms", startedBy: "desk", returnTo: "desk" }]);
    fake.enqueue(reply.tool("record_consent", { consented: true }));
    await c.send(ev.speak(c.id, "Ja."));
    expect(c.state.tasks).toEqual([]);
    fake.enqueue(reply.tool("finish_nothing"));
    const out = await c.send(ev.speak(c.id, "Und jetzt?"));
    expect(c.record.guardDecisions).toContainEqual(expect.objectContaining({ reason: "internal_error", detail: expect.stringMatching(/tool finish_nothing finished task sms, but no task is running/) }));
    expect(said(out)).toHaveLength(1); // the apology, nothing else
    expect(c.state.step).toBe("desk");
  });

  it("the gate holds at the action boundary: a host tool that emits send_sms itself gets nothing out", async () => {
    const c = call("task-rogue");
    await c.send(ev.start(c.id));
    fake.enqueue(reply.tool("rogue_send"), reply.text("Erledigt."));
    const out = await c.send(ev.speak(c.id, "Schicken Sie mir die Adresse."));
    expect(sends(out)).toEqual([]);
    expect(ledger.records.filter((r) => r.callId === c.id && r.kind === "sms_approved")).toEqual([]);
  });

  it("the host flow includes the task: its steps, lines, notes, gate and never-replayed send come with it", () => {
    expect(hostFlow.steps.map((x) => x.name)).toEqual(["desk", "elsewhere", "collect_number", "confirm_consent", "send_sms"]);
    expect(hostFlow.lines).toEqual(expect.arrayContaining(["ask_number", "sms_declined", "sms_sent"]));
    expect(hostFlow.notes).toEqual(expect.arrayContaining(["consent_given", "consent_declined"]));
    expect(hostFlow.gate).toBeDefined();
    expect(hostFlow.neverReplay).toEqual(["send_sms"]);
    expect(hostFlow.hookTransitions.sms_failed).toEqual(["confirm_consent"]);
  });
});
