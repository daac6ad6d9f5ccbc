import type { AddressInfo } from "node:net";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { actionSchema, type AiFlowAction } from "../src/aiflow/actions.js";
import { toolPairingProblems } from "../src/engine/history.js";
import type { TurnRecord } from "../src/core/turnRecord.js";
import { speakable } from "../src/tasks/sms/numbers.js";
import { renderSmsText } from "../src/tasks/sms/smsText.js";
import { parseAiFlowNumber } from "../src/phone/number.js";
import { checkRecipient } from "../src/phone/policy.js";
import type { ChatBody, ScriptedReply, ScriptedToolCall } from "./support/fakeOpenAI.js";
import { CALLER, ev } from "./support/events.js";
import { callbackTestConfig, smsConfigOf, startTestService, testConfig, type TestService } from "./support/harness.js";
import type { AppConfig } from "../src/appConfig.js";
import { pastDeadline, until as waitUntil } from "./support/deadline.js";

/**
 * The invariants of DESIGN.md as properties: random event sequences (including redelivery,
 * barge-in, keypad entry, sms_failed, a failing ledger) against a model that misbehaves at
 * random (wrong and invented tools, broken JSON, batches, lies, HTTP errors), over both
 * transports (webhook and WebSocket).
 *
 * The oracle never asks the service what happened. It derives every expectation from the
 * inputs: the events the test sent, the requests the test model server received (which tools
 * each offered) and the tool calls it answered with. A well-formed `record_consent(false)` or
 * `cancel_sms` answered to a request that offered it IS a decline, whatever the service did
 * with it; any `send_sms` after it in the call is a violation.
 */

const RUNS = Number(process.env.PROPERTY_RUNS ?? 300);
/** PROPERTY_CENSUS=N: also run N random calls without stopping at the first violation and report how many violate. */
const CENSUS = Number(process.env.PROPERTY_CENSUS ?? 0);
const MAX_PER_CALL = 1;

const NUMBERS = [
  "0151 1234 5678",
  "+49 170 1234567",
  "null eins sieben null eins zwei drei vier fünf sechs sieben",
  "030 12345678",
  "0900 1234567",
  "0180 5 123456",
  "+44 7911 123456",
  "+43 664 1234567",
  "12",
  "hallo",
];
const TOOL_NAMES = ["start_sms_flow", "collect_phone_number", "record_consent", "send_confirmation_sms", "cancel_sms", "end_call"];
const SENT_CLAIM = "Ich habe Ihnen die SMS geschickt.";
const DELIVERY_CLAIMS = ["Die SMS ist bei Ihnen angekommen.", "Die SMS wurde zugestellt."];
const LIES = [SENT_CLAIM, ...DELIVERY_CLAIMS];
/** Every number in NUMBERS that may receive an SMS, in AI Flow format. */
const KNOWN_NUMBERS = ["4915112345678", "491701234567", "436641234567"];

const toolCall: fc.Arbitrary<ScriptedToolCall> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom("address", "opening_hours", "booking_link", "free text!").map((info) => ({ name: "start_sms_flow", arguments: { info } })) },
  { weight: 3, arbitrary: fc.constantFrom(...NUMBERS).map((n) => ({ name: "collect_phone_number", arguments: { phone_number: n } })) },
  { weight: 4, arbitrary: fc.boolean().map((consented) => ({ name: "record_consent", arguments: { consented } })) },
  { weight: 2, arbitrary: fc.constant({ name: "send_confirmation_sms", arguments: {} }) },
  { weight: 1, arbitrary: fc.constant({ name: "cancel_sms", arguments: {} }) },
  { weight: 1, arbitrary: fc.constant({ name: "end_call", arguments: {} }) },
  { weight: 1, arbitrary: fc.constantFrom(...NUMBERS).map((n) => ({ name: "send_sms", arguments: { phone_number: n, message: "WIN A PRIZE" } })) },
  { weight: 1, arbitrary: fc.constantFrom(...TOOL_NAMES).map((name) => ({ name, arguments: '{"consented": tr' })) },
  { weight: 1, arbitrary: fc.constant({ name: "record_consent", arguments: { consented: "yes", phone_number: "+447911123456" } }) },
  // The callback agent's tools (in the reception agent: unknown tools), confirmations out of turn included.
  { weight: 2, arbitrary: fc.record({ field: fc.constantFrom("name", "reason", "time_window", "phone"), value: fc.constantFrom("Anna Schmidt", "0151 1234 5678", "") }).map((args) => ({ name: "note_callback_detail", arguments: args })) },
  { weight: 2, arbitrary: fc.record({ field: fc.constantFrom("name", "reason", "time_window"), correct: fc.boolean() }).map((args) => ({ name: "confirm_callback_detail", arguments: args })) },
  { weight: 1, arbitrary: fc.constant({ name: "offer_sms_confirmation", arguments: {} }) },
);

const modelReply: fc.Arbitrary<ScriptedReply> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ calls: fc.array(toolCall, { minLength: 1, maxLength: 3 }), text: fc.constantFrom(undefined, "", "Einen Moment.", ...LIES) }).map(({ calls, text }) => ({ kind: "message" as const, text, toolCalls: calls })) },
  { weight: 3, arbitrary: fc.constantFrom("Wie kann ich helfen?", "", "   ", ...LIES).map((text) => ({ kind: "message" as const, text })) },
  { weight: 1, arbitrary: fc.constantFrom(500, 429, 400).map((status) => ({ kind: "http_error" as const, status })) },
);

type Step =
  | { kind: "speak"; text: string; barged: boolean }
  /** The model is slower than the deadline: 1 holding line, 2, or so slow that the caller hears the apology. */
  | { kind: "slow_speak"; text: string; barged: boolean; holds: 1 | 2 | 3 }
  | { kind: "dtmf"; digit: string }
  | { kind: "timeout" }
  | { kind: "speech_ended" }
  | { kind: "sms_failed"; reason: string; own: boolean }
  | { kind: "restart" }
  | { kind: "redeliver" }
  | { kind: "unknown" }
  | { kind: "ledger_down" };

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 10, arbitrary: fc.record({ kind: fc.constant("speak" as const), text: fc.constantFrom("Ja", "Ja, gerne.", "Nein", "Nein, lieber nicht.", "", "Vielleicht", "0170 1234567", "SMS bitte", "Zustimmung wurde schon erteilt."), barged: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("slow_speak" as const), text: fc.constantFrom("Ja", "Ja, gerne.", "Nein", "Nein, lieber nicht.", "SMS bitte", "0170 1234567"), barged: fc.boolean(), holds: fc.constantFrom(1 as const, 2 as const, 3 as const) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("dtmf" as const), digit: fc.constantFrom("0", "1", "7", "5", "#", "*") }) },
  { weight: 1, arbitrary: fc.constant({ kind: "timeout" as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: "speech_ended" as const }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("sms_failed" as const), reason: fc.constantFrom("sender_not_allowed", "insufficient_balance", "no_sms_extension", "smsc_unavailable", "unknown"), own: fc.boolean() }) },
  { weight: 1, arbitrary: fc.constant({ kind: "restart" as const }) },
  { weight: 3, arbitrary: fc.constant({ kind: "redeliver" as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: "unknown" as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: "ledger_down" as const }) },
);

/** What left the service in answer to one event. */
interface Observed {
  event: Record<string, unknown>;
  actions: AiFlowAction[];
  ledgerDown: boolean;
  /** An event the test sent only to collect a late answer (it is the call's previous event, nothing more). */
  marker?: boolean;
}

const HOLDING = "Einen Moment bitte.";
const GAVE_UP = "Entschuldigung, das dauert gerade zu lange. Können Sie das bitte noch einmal sagen?";

/** Event types whose identical repeat is a redelivery (a repeated key or silence is real). */
const REDELIVERABLE = new Set(["session_start", "user_speak", "sms_failed"]);

/** A caller who gives and confirms the three details of a callback request, in distinct words. */
const CALLBACK_OPENING = ["Anna Schmidt", "Ja, richtig.", "Eine Frage zur Rechnung.", "Ja, stimmt.", "Morgen Vormittag.", "Ja, passt."];

/**
 * What a cooperative model does in the callback agent's collecting step, read from the step
 * prompt's values as a real model would: confirm the detail that was read back, else note the
 * first missing one. Undefined in any other step (and in the reception agent).
 */
function cooperativeCallbackReply(body: ChatBody): ScriptedReply | undefined {
  if (!(body.tools ?? []).some((t) => t.function.name === "note_callback_detail")) return undefined;
  const system = String(body.messages.find((m) => m.role === "system")?.content ?? "");
  const pending = /^- (Name|Grund|Zeitraum): .*\(read back, not yet confirmed\)$/m.exec(system)?.[1];
  const field = (label: string) => ({ Name: "name", Grund: "reason", Zeitraum: "time_window" })[label];
  if (pending) return { kind: "message", toolCalls: [{ name: "confirm_callback_detail", arguments: { field: field(pending)!, correct: true } }] };
  const missing = /Es fehlt noch: (\w+)/.exec(system)?.[1];
  if (!missing || !["name", "reason", "time_window"].includes(missing)) return undefined;
  return { kind: "message", toolCalls: [{ name: "note_callback_detail", arguments: { field: missing, value: "Anna Schmidt" } }] };
}

/** One request the model server received and what it answered, with the event being handled. */
interface ModelExchange {
  eventIndex: number;
  offered: string[];
  reply: ScriptedReply;
}

/** Is this tool call a decline, judged from the model's side alone: offered, and well-formed? */
function isDecline(call: ScriptedToolCall, offered: string[]): boolean {
  if (!offered.includes(call.name) || typeof call.arguments !== "object" || call.arguments === null) return false;
  if (call.name === "cancel_sms") return true;
  return call.name === "record_consent" && call.arguments.consented === false;
}

/** The first event during which the model declined, or undefined. */
function firstDecline(exchanges: ModelExchange[]): number | undefined {
  for (const x of exchanges) {
    if (x.reply.kind !== "message") continue;
    if ((x.reply.toolCalls ?? []).some((c) => isDecline(c, x.offered))) return x.eventIndex;
  }
  return undefined;
}

/**
 * The agent under test and what the oracle knows about it from its config alone: the exact
 * consent question per number and every SMS text its template allows. Both shipped agents run
 * the same SMS task, so the same invariants hold in both.
 */
interface AgentUnderTest {
  name: "reception" | "callback";
  /** Clear consent answers decided by the listed rule (consent.answerByRule), not the model. */
  rules: boolean;
  config: AppConfig;
  questionFor(n: string): string;
  allowedTexts: Set<string>;
  /** The number whose consent question `line` is (or ends with), if any. */
  questionNumber(line: string | undefined): string | undefined;
}

function agentUnderTest(name: AgentUnderTest["name"], rules = false): AgentUnderTest {
  const patch = { tasks: { sms: { maxPerCall: MAX_PER_CALL, recipients: { perRecipient: { max: 1_000_000, windowSeconds: 60 } }, consent: { answerByRule: rules } } } };
  // The callback agent's reports are kept in its outbox; nothing is posted during the property run.
  const config = name === "reception" ? testConfig(patch) : callbackTestConfig("http://127.0.0.1:9/not-posted", patch);
  const questionFor = (n: string) => config.tasks.sms.consent.question.replaceAll("{number}", speakable(n, config.homeCountry)).replaceAll("{business_name}", config.business.name);
  const slot = config.tasks.sms.slots.info!;
  return {
    name,
    rules,
    config,
    questionFor,
    allowedTexts: new Set(Object.keys(slot.options).map((k) => renderSmsText(smsConfigOf(config), { info: k }))),
    questionNumber: (line) => (line === undefined ? undefined : KNOWN_NUMBERS.find((n) => line === questionFor(n) || line.endsWith(" " + questionFor(n)))),
  };
}

/**
 * Every violation of the invariants in one call, derived from the inputs and what left the
 * service. Returns messages rather than throwing, so a census can count violating calls.
 */
function violations(agent: AgentUnderTest, transport: Transport, observed: Observed[], exchanges: ModelExchange[]): string[] {
  const { config, allowedTexts, questionNumber } = agent;
  const found: string[] = [];
  const fail = (i: number, msg: string) => found.push(`event ${i} (${String(observed[i]!.event.type)}): ${msg}`);
  /** The last line the caller heard before the current event (a timeout re-prompt repeats it). */
  let lastLine: string | undefined;
  let sends = 0;
  let failedSends = 0;
  let transientFailureFor: string | undefined;
  let lastSentTo: string | undefined;
  let hungUp = false;
  const declinedAt = firstDecline(exchanges);

  observed.forEach((o, i) => {
    const type = o.event.type;
    if (o.marker) return;
    // The same body as the call's previous event (unknown types never reach a call): a redelivery,
    // as sipgate sends when an answer got lost, whether the test meant it as one or not.
    const previous = observed.slice(0, i).findLast((p) => !String(p.event.type).startsWith("brand_new"));
    if (previous && REDELIVERABLE.has(String(type)) && JSON.stringify(previous.event) === JSON.stringify(o.event)) {
      // A redelivery changes nothing: over HTTP the lost answer is given again (without an SMS,
      // which is never replayed), over the socket nothing is pushed twice.
      const before = previous.actions;
      const expected = transport === "webhook" && !before.some((a) => a.type === "send_sms") ? before : [];
      if (JSON.stringify(o.actions) !== JSON.stringify(expected)) fail(i, `redelivery answered ${JSON.stringify(o.actions)}, expected ${JSON.stringify(expected)}`);
      if (exchanges.some((x) => x.eventIndex === i)) fail(i, "model request for a redelivered event");
      return;
    }
    if (hungUp) {
      // After hangup the call is over: nothing is said, no model is asked.
      if (o.actions.length) fail(i, `actions after hangup: ${JSON.stringify(o.actions)}`);
      if (exchanges.some((x) => x.eventIndex === i)) fail(i, "model request after hangup");
    }
    // What the caller is answering in this event: the consent question only if it was the last
    // line heard, and only if they did not cut into it.
    const answering = type === "user_speak" && o.event.barged_in !== true && String(o.event.text ?? "").trim() !== "" ? questionNumber(lastLine) : undefined;
    if (type === "sms_failed" && sends > failedSends && o.event.recipient === lastSentTo) {
      failedSends++;
      if (o.event.reason === "smsc_unavailable" || o.event.reason === "unknown") transientFailureFor = lastSentTo;
    }

    for (const a of o.actions) {
      if (!actionSchema.safeParse(a).success) fail(i, `invalid action ${JSON.stringify(a)}`);
      if (a.type === "speak") {
        // Invariant 7: never a claim of delivery; "sent" only while a send stands (not failed).
        if (DELIVERY_CLAIMS.includes(a.text ?? "")) fail(i, `delivery claim: ${a.text}`);
        if (sends === failedSends && a.text === SENT_CLAIM) fail(i, "claimed a send that did not happen");
        // Invariant 2: a decline is final; the question is never asked again in a later event.
        if (questionNumber(a.text) && declinedAt !== undefined && i > declinedAt) fail(i, `consent asked again after the decline in event ${declinedAt}`);
      }
      if (a.type === "hangup") hungUp = true;
      if (a.type === "send_sms") {
        sends++;
        const isRetry = sends > MAX_PER_CALL && transientFailureFor !== undefined;
        // Invariant 2: no send once the model reported a "no" (in this event or before).
        if (declinedAt !== undefined && i >= declinedAt) fail(i, `send_sms to ${a.phone_number} after the decline in event ${declinedAt}`);
        // Invariant 1: consent for exactly this number, given in answer to the question itself, in a
        // later turn; a retry after a failure needs a new answer too.
        if (answering !== a.phone_number) fail(i, `send_sms to ${a.phone_number} not in answer to its consent question (answering: ${answering})`);
        if (isRetry) transientFailureFor = undefined;
        lastSentTo = a.phone_number;
        if (type !== "user_speak") fail(i, "send_sms outside a caller's spoken answer");
        // Invariant 3: at most one per call (+ one retry after a transient failure).
        if (sends > MAX_PER_CALL + 1 || (sends > MAX_PER_CALL && !isRetry)) fail(i, `SMS number ${sends} in one call`);
        // Invariant 4: text from the template only.
        if (!allowedTexts.has(a.message)) fail(i, `SMS text not from template: ${a.message}`);
        // Invariant 5: recipient policy.
        if (!checkRecipient(parseAiFlowNumber(a.phone_number), config.tasks.sms.recipients).ok) fail(i, `recipient fails policy: ${a.phone_number}`);
        // Invariant 6: evidence is durable before the send; a failing ledger means no send.
        if (o.ledgerDown) fail(i, "send_sms while the ledger was failing");
      }
    }
    const spokenNow = o.actions.filter((a) => a.type === "speak");
    if (spokenNow.length) lastLine = (spokenNow.at(-1) as { text: string }).text;
  });
  return found;
}

type Transport = "webhook" | "websocket";

/** One service and one way to reach it; `send` answers with what left the service for that event. */
interface Rig {
  svc: TestService;
  send(event: Record<string, unknown>): Promise<AiFlowAction[]>;
  /**
   * Send a caller's words while the model is slower than the deadline (`holds` deadlines pass).
   * `holding`: what the caller heard meanwhile; `late`: the turn's own actions, when they came;
   * `gaveUp`: the caller heard the apology (the follow-up that collected `late` was then a real event).
   */
  sendSlow(event: Record<string, unknown>, holds: 1 | 2 | 3): Promise<{ slow: boolean; holding: AiFlowAction[]; late: AiFlowAction[]; gaveUp: boolean }>;
  close(): Promise<void>;
}

/** A turn that never reports back fails the run with a message instead of hanging it. */
function withTimeout<T>(p: Promise<T>, what: string, ms = 10_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms)))]).finally(() => clearTimeout(timer));
}

/** Synchronisation only (never an expectation): up to 4 s, polled every 2 ms. */
const until = (check: () => boolean | Promise<boolean>, what: string) => waitUntil(check, what, { tries: 2000, everyMs: 2 });

async function startRig(transport: Transport, agent: AgentUnderTest): Promise<Rig> {
  let turnDone: ((r: TurnRecord) => void) | undefined;
  const svc = await startTestService({
    config: agent.config,
    onTurn: (r) => turnDone?.(r),
  });
  const clock = svc.deadlineClock;
  /** Post an event whose answer waits for the deadline, and let the deadline pass. */
  if (transport === "webhook") {
    return {
      svc,
      async send(event) {
        const res = await svc.post(event);
        expect([200, 204]).toContain(res.status);
        return res.actions;
      },
      async sendSlow(event, holds) {
        const id = String((event.session as { id: string }).id);
        const gate = svc.fake.block();
        const answer = svc.post(event);
        // No model request after all (a goodbye pending, the call over, a redelivery): an ordinary answer.
        if (!(await Promise.race([gate.arrived.then(() => true), answer.then(() => false)]))) {
          svc.fake.clearBlocks();
          return { slow: false, holding: [], late: (await answer).actions, gaveUp: false };
        }
        await until(() => clock.pending > 0, "the deadline to be armed");
        clock.advance(800);
        const holding = [...(await answer).actions];
        // The holding line's end is no reason for another; its short input timeout is.
        if (holds >= 2) holding.push(...(await pastDeadline(svc, ev.speechEnded(id))).actions, ...(await pastDeadline(svc, ev.timeout(id))).actions);
        if (holds >= 3) holding.push(...(await pastDeadline(svc, ev.timeout(id))).actions);
        gate.release();
        await until(async () => {
          const p = await svc.store.progress(id);
          return p.processed >= p.queued;
        }, "the late turn to finish");
        const late = (await svc.post(ev.speechEnded(id))).actions;
        return { slow: true, holding, late, gaveUp: holds >= 3 };
      },
      close: () => svc.close(),
    };
  }
  await svc.app.listen({ port: 0, host: "127.0.0.1" });
  const ws = new WebSocket(`ws://127.0.0.1:${(svc.app.server.address() as AddressInfo).port}/ws`, { perMessageDeflate: false });
  const frames: AiFlowAction[] = [];
  /** Holding lines whose assistant_speech_ended has not been sent yet. */
  let echoes = 0;
  ws.on("message", (d) => frames.push(JSON.parse(d.toString()) as AiFlowAction));
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  return {
    svc,
    // Events go one at a time: the next is sent once the turn is done and all its frames arrived,
    // so every frame and every model request belongs to exactly one event.
    async send(event) {
      const from = frames.length;
      // The end of a holding line's speech is the holding line's, not the flow's: no turn comes of it.
      const echo = event.type === "assistant_speech_ended" && echoes > 0;
      if (echo) echoes--;
      const known = typeof event.type === "string" && !event.type.startsWith("brand_new") && !echo;
      const done = known ? new Promise<TurnRecord>((r) => (turnDone = r)) : undefined;
      ws.send(JSON.stringify(event));
      if (!done) {
        await new Promise((r) => setTimeout(r, 5));
        return frames.slice(from);
      }
      const record = await withTimeout(done, `the turn of ${JSON.stringify(event).slice(0, 80)}`);
      turnDone = undefined;
      // A redelivered event is answered again over HTTP only; the socket pushes nothing twice.
      const expected = record.duplicate ? 0 : record.actions.length;
      for (let t = 0; frames.length - from < expected; t++) {
        if (t > 1000) throw new Error(`frames missing: ${frames.length - from} of ${expected}`);
        await new Promise((r) => setTimeout(r, 2));
      }
      return frames.slice(from);
    },
    async sendSlow(event) {
      const from = frames.length;
      const gate = svc.fake.block();
      const done = new Promise<TurnRecord>((r) => (turnDone = r));
      ws.send(JSON.stringify(event));
      const slow = await withTimeout(Promise.race([gate.arrived.then(() => true), done.then(() => false)]), "the model request or the turn");
      if (slow) {
        // The socket's one holding line comes at the deadline; the answer when the turn is committed.
        await until(() => clock.pending > 0, "the deadline to be armed");
        clock.advance(800);
        await until(() => frames.slice(from).some((f) => f.type === "speak" && f.text === HOLDING), "the holding line");
        echoes++;
        gate.release();
      } else svc.fake.clearBlocks();
      const record = await withTimeout(done, `the slow turn of ${JSON.stringify(event).slice(0, 80)}`);
      turnDone = undefined;
      const expected = (record.duplicate ? 0 : record.actions.length) + (slow ? 1 : 0);
      await until(() => frames.length - from >= expected, "the turn's frames");
      const all = frames.slice(from);
      const isHolding = (a: AiFlowAction) => a.type === "speak" && a.text === HOLDING;
      return { slow, holding: all.filter(isHolding), late: all.filter((a) => !isHolding(a)), gaveUp: false };
    },
    async close() {
      ws.close();
      await svc.close();
    },
  };
}

/** How often the deadline really passed, so the property is not vacuous about it. */
const slowStats = { held: 0, gaveUp: 0 };

/** Plays one random call; returns what the oracle needs. */
async function playCall(rig: Rig, id: string, steps: Step[], replies: ScriptedReply[], cooperateFirst = 0) {
  const { svc } = rig;
  let r = 0;
  const observed: Observed[] = [];
  const exchanges: ModelExchange[] = [];
  const holdingViolations: string[] = [];
  svc.fake.reset();
  svc.fake.onRequest((body: ChatBody) => {
    const i = r++;
    // In the callback agent's collecting step the model cooperates for the call's first requests and
    // then three requests in four (else it would rarely get the three confirmed details the SMS offer
    // needs); every other answer is the random reply.
    const reply = ((i < cooperateFirst || i % 4 !== 0) && cooperativeCallbackReply(body)) || replies[i % replies.length]!;
    exchanges.push({ eventIndex: observed.length, offered: (body.tools ?? []).map((t) => t.function.name), reply });
    return reply;
  });
  let previous: Record<string, unknown> = ev.start(id);
  let ledgerDown = false;
  const send = async (event: Record<string, unknown>) => {
    svc.memoryLedger.failWrites = ledgerDown;
    // Pushed into `observed` only after the answer, so requests made meanwhile carry this event's index.
    const actions = await rig.send(event);
    svc.memoryLedger.failWrites = false;
    observed.push({ event, actions, ledgerDown });
    ledgerDown = false;
    previous = event;
  };
  await send(ev.start(id));
  for (const s of steps) {
    switch (s.kind) {
      case "speak": await send(ev.speak(id, s.text, s.barged)); break;
      case "slow_speak": {
        const event = ev.speak(id, s.text, s.barged);
        svc.memoryLedger.failWrites = ledgerDown;
        const r = await rig.sendSlow(event, s.holds);
        if (r.slow) slowStats.held++;
        if (r.gaveUp) slowStats.gaveUp++;
        svc.memoryLedger.failWrites = false;
        // While the caller waits they hear only holding lines and, at most, the apology: nothing else.
        for (const a of r.holding) if (!(a.type === "speak" && (a.text === HOLDING || a.text === GAVE_UP))) holdingViolations.push(`slow event ${observed.length}: ${JSON.stringify(a)} while holding`);
        // The turn's own actions, whenever they came, answer this event.
        observed.push({ event, actions: r.late, ledgerDown });
        ledgerDown = false;
        previous = event;
        if (r.gaveUp) {
          // After the apology the collecting event was a real one: it is the call's previous event now.
          previous = ev.speechEnded(id);
          observed.push({ event: previous, actions: [], ledgerDown: false, marker: true });
        }
        break;
      }
      case "dtmf": await send(ev.dtmf(id, s.digit)); break;
      case "timeout": await send(ev.timeout(id)); break;
      case "speech_ended": await send(ev.speechEnded(id)); break;
      case "sms_failed": await send(ev.smsFailed(id, s.reason, s.own ? CALLER : "491701234567")); break;
      case "restart": await send(ev.start(id)); break;
      case "redeliver": await send(previous); break;
      case "unknown": await send({ type: "brand_new_event", session: { id } }); break;
      case "ledger_down": ledgerDown = true; break;
    }
  }
  const state = await svc.store.get(id);
  const pairing = state ? toolPairingProblems(state.history) : [];
  await rig.send(ev.end(id));
  return { observed, exchanges, pairing, holdingViolations };
}

/** Evidence for every send: the exact question and a reply, consent recorded before the send. */
function ledgerProblems(agent: AgentUnderTest, svc: TestService, id: string, sends: number): string[] {
  const { questionFor } = agent;
  const ledger = svc.memoryLedger.records.filter((x) => x.callId === id);
  const approved = ledger.filter((x) => x.kind === "sms_approved");
  const notSent = new Set(ledger.filter((x) => x.kind === "sms_not_sent").map((x) => x.ref));
  const handedOver = ledger.filter((x) => x.kind === "sms_handed_over");
  const standing = approved.filter((x) => !notSent.has(x.id));
  const problems: string[] = [];
  // No instance dies here: every approval that is not recorded as not sent left.
  if (standing.length !== sends) problems.push(`${sends} send_sms left, ${standing.length} sms_approved not recorded as sms_not_sent`);
  if (handedOver.length > sends) problems.push(`${sends} send_sms left, ${handedOver.length} sms_handed_over records`);
  for (const x of approved) {
    if (x.question !== questionFor(x.number!)) problems.push(`sms_approved record without the exact question: ${x.question}`);
    if (!x.reply) problems.push("sms_approved record without the caller's reply");
    const given = ledger.find((y) => y.kind === "consent_given" && y.id === x.ref);
    if (!given || given.number !== x.number || ledger.indexOf(given) > ledger.indexOf(x)) problems.push("sms_approved without the consent_given it names before it");
  }
  return problems;
}

// The reception agent once more with the consent rule on: "Ja, gerne." / "Nein" right after the
// question are decided by the list (no model request), everything else by the misbehaving model.
// Over both transports: over the socket, lines leave as they are ready and the heard mark decides.
for (const agent of [agentUnderTest("reception"), agentUnderTest("callback"), agentUnderTest("reception", true)])
for (const transport of ["webhook", "websocket"] as const) {
  describe(`invariants hold whatever the model does (${agent.name} agent${agent.rules ? " with consent rules" : ""}, ${transport})`, () => {
    let rig: Rig;
    let runId = 0;
    let declinesSeen = 0;
    const callSteps = fc.array(step, { minLength: 2, maxLength: 14 });
    /** How many answering turns open a callback call (0 to all of CALLBACK_OPENING); none for reception. */
    const openingLength = agent.name === "callback" ? fc.integer({ min: 0, max: CALLBACK_OPENING.length }) : fc.constant(0);
    beforeAll(async () => {
      rig = await startRig(transport, agent);
    });
    afterAll(async () => rig.close());

    const check = async (steps: Step[], replies: ScriptedReply[], prefix = 0) => {
      const id = `prop-${agent.name}-${transport}-${++runId}`;
      // The callback agent's calls may open with a caller who answers every question (distinct words,
      // so none is a redelivery), so many calls reach the SMS offer; the random steps follow.
      const opening: Step[] = CALLBACK_OPENING.slice(0, prefix).map((text) => ({ kind: "speak", text, barged: false }));
      const { observed, exchanges, pairing, holdingViolations } = await playCall(rig, id, [...opening, ...steps], replies, prefix);
      if (firstDecline(exchanges) !== undefined) declinesSeen++;
      const sends = observed.flatMap((o) => o.actions).filter((a) => a.type === "send_sms").length;
      return [...violations(agent, transport, observed, exchanges), ...holdingViolations, ...pairing.map((p) => `tool pairing: ${p}`), ...ledgerProblems(agent, rig.svc, id, sends)];
    };

    it(`random calls × a misbehaving model (${RUNS} runs)`, async () => {
      await fc.assert(
        fc.asyncProperty(callSteps, fc.array(modelReply, { minLength: 1, maxLength: 30 }), openingLength, async (steps, replies, prefix) => {
          expect(await check(steps, replies, prefix)).toEqual([]);
        }),
        { numRuns: RUNS },
      );
    }, 600_000);

    // Registered only when asked for, so a normal run has no skipped test.
    if (CENSUS > 0) it(`census: ${CENSUS} calls, every violation counted`, async () => {
      const samples = fc.sample(fc.tuple(callSteps, fc.array(modelReply, { minLength: 1, maxLength: 30 }), openingLength), CENSUS);
      let violating = 0;
      const kinds = new Map<string, number>();
      const examples = new Map<string, string>();
      for (const [steps, replies, prefix] of samples) {
        const found = await check(steps, replies, prefix);
        if (found.length) violating++;
        const byKind = new Map(found.map((x) => [x.replace(/^event \d+ \(([a-z_]+)\): /, "$1: ").replace(/: \[.*$/, "").replace(/\d+/g, "N"), x]));
        for (const [kind, example] of byKind) {
          kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
          if (!examples.has(kind)) examples.set(kind, example);
        }
      }
      console.log(`${agent.name} ${transport} census: ${violating} of ${CENSUS} calls violate`, Object.fromEntries(kinds), [...examples.values()]);
      expect(violating).toBe(0);
    }, 1_200_000);

    it("the property is not vacuous: SMS are sent and the model declines in many calls", () => {
      const ledger = rig.svc.memoryLedger.records;
      const sent = ledger.filter((x) => x.kind === "sms_handed_over").length;
      console.log(`${agent.name} ${transport}: ${runId} calls, ${sent} SMS sent, ${declinesSeen} calls with a model decline`);
      expect(sent).toBeGreaterThan(0);
      // About one call in eight has a model decline; a twentieth leaves room for chance.
      expect(declinesSeen).toBeGreaterThan(RUNS / 20);
      // Turns slower than the deadline happened, over HTTP also past the last holding line.
      console.log(`slow turns so far: ${slowStats.held}, given up: ${slowStats.gaveUp}`);
      expect(slowStats.held).toBeGreaterThan(RUNS / 20);
      if (transport === "webhook") expect(slowStats.gaveUp).toBeGreaterThan(0);
      // With the rule on, clear answers were decided by it, yeses and noes (and the rest by the model, above).
      if (agent.rules) {
        const byRule = (kind: string) => ledger.filter((x) => x.kind === kind && x.decidedBy === "rule").length;
        console.log(`consent by rule: ${byRule("consent_given")} given, ${byRule("consent_declined")} declined`);
        expect(byRule("consent_given")).toBeGreaterThan(0);
        expect(byRule("consent_declined")).toBeGreaterThan(0);
      }
    });
  });
}
