import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { actionSchema, type AiFlowAction } from "../src/aiflow/actions.js";
import { toolPairingProblems } from "../src/engine/history.js";
import { speakable } from "../src/flow/numbers.js";
import { renderSmsText } from "../src/guards/smsText.js";
import { parseAiFlowNumber } from "../src/phone/number.js";
import { checkRecipient } from "../src/phone/policy.js";
import type { ScriptedReply, ScriptedToolCall } from "./support/fakeOpenAI.js";
import { CALLER, ev } from "./support/events.js";
import { startTestService, testConfig, type TestService } from "./support/harness.js";

/**
 * The invariants of DESIGN.md as properties: random event sequences (including redelivery,
 * barge-in, keypad entry, sms_failed, a failing ledger) against a model that misbehaves at
 * random (wrong and invented tools, broken JSON, batches, lies, HTTP errors). Whatever
 * happens, an oracle that only watches what left the service must find no violation.
 */

const RUNS = Number(process.env.PROPERTY_RUNS ?? 300);
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
);

const modelReply: fc.Arbitrary<ScriptedReply> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ calls: fc.array(toolCall, { minLength: 1, maxLength: 3 }), text: fc.constantFrom(undefined, "", "Einen Moment.", ...LIES) }).map(({ calls, text }) => ({ kind: "message" as const, text, toolCalls: calls })) },
  { weight: 3, arbitrary: fc.constantFrom("Wie kann ich helfen?", "", "   ", ...LIES).map((text) => ({ kind: "message" as const, text })) },
  { weight: 1, arbitrary: fc.constantFrom(500, 429, 400).map((status) => ({ kind: "http_error" as const, status })) },
);

type Step =
  | { kind: "speak"; text: string; barged: boolean }
  | { kind: "dtmf"; digit: string }
  | { kind: "timeout" }
  | { kind: "speech_ended" }
  | { kind: "sms_failed"; reason: string; own: boolean }
  | { kind: "restart" }
  | { kind: "redeliver" }
  | { kind: "unknown" }
  | { kind: "ledger_down" };

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 10, arbitrary: fc.record({ kind: fc.constant("speak" as const), text: fc.constantFrom("Ja", "Ja, gerne.", "Nein", "Vielleicht", "0170 1234567", "SMS bitte", "Zustimmung wurde schon erteilt."), barged: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("dtmf" as const), digit: fc.constantFrom("0", "1", "7", "5", "#", "*") }) },
  { weight: 1, arbitrary: fc.constant({ kind: "timeout" as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: "speech_ended" as const }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("sms_failed" as const), reason: fc.constantFrom("sender_not_allowed", "insufficient_balance", "no_sms_extension", "smsc_unavailable", "unknown"), own: fc.boolean() }) },
  { weight: 1, arbitrary: fc.constant({ kind: "restart" as const }) },
  { weight: 3, arbitrary: fc.constant({ kind: "redeliver" as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: "unknown" as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: "ledger_down" as const }) },
);

let svc: TestService;
let runId = 0;
beforeAll(async () => {
  svc = await startTestService({
    config: testConfig({ sms: { maxPerCall: MAX_PER_CALL }, recipients: { perRecipient: { max: 1_000_000, windowSeconds: 60 } } }),
  });
});
afterAll(async () => svc.close());

/** What the oracle saw leave the service in one event's response. */
interface Observed {
  event: Record<string, unknown>;
  actions: AiFlowAction[];
  ledgerDown: boolean;
  /** Ledger record kinds written while this event was handled. */
  ledgerKinds: string[];
}

function checkInvariants(id: string, observed: Observed[]): void {
  const config = testConfig({ sms: { maxPerCall: MAX_PER_CALL } });
  const questionFor = (n: string) => config.consent.question.replaceAll("{number}", speakable(n, config.homeCountry));
  const allowedTexts = new Set(
    Object.keys(config.sms.slots.info!.options).map((k) => renderSmsText(config, { info: k })),
  );
  /** The last line the caller heard before the current event (a timeout re-prompt repeats it). */
  let lastLine: string | undefined;
  /** Number whose consent question the caller answered, in the turn the first send to it left. */
  let consentedNumber: string | undefined;
  let declined = false;
  let sends = 0;
  let failedSends = 0;
  let transientFailureFor: string | undefined;
  let lastSentTo: string | undefined;
  const ledger = svc.memoryLedger.records.filter((r) => r.callId === id);
  const questionNumber = (line: string | undefined) =>
    line === undefined ? undefined : KNOWN_NUMBERS.find((n) => line === questionFor(n) || line.endsWith(" " + questionFor(n)));

  observed.forEach((o) => {
    const type = o.event.type;
    // What the caller is answering in this event: the consent question only if it was the last line heard,
    // and only if they did not cut into it.
    const answering = type === "user_speak" && o.event.barged_in !== true ? questionNumber(lastLine) : undefined;
    if (type === "sms_failed" && sends > failedSends && o.event.recipient === lastSentTo) {
      failedSends++;
      if (o.event.reason === "smsc_unavailable" || o.event.reason === "unknown") transientFailureFor = lastSentTo;
    }

    for (const a of o.actions) {
      expect(actionSchema.safeParse(a).success, `invalid action ${JSON.stringify(a)}`).toBe(true);
      if (a.type === "speak") {
        // Invariant 7: never a claim of delivery; "sent" only while a send stands (not failed).
        for (const lie of DELIVERY_CLAIMS) expect(a.text).not.toBe(lie);
        if (sends === failedSends) expect(a.text, "claimed a send that did not happen").not.toBe(SENT_CLAIM);
        const asked = questionNumber(a.text);
        if (asked) {
          // Invariant 2: declined is final, no re-asking.
          expect(declined, "consent asked again after a decline").toBe(false);
          // A question for another number voids consent given for the old one.
          if (asked !== consentedNumber) consentedNumber = undefined;
        }
      }
      if (a.type === "send_sms") {
        sends++;
        const isRetry = sends > MAX_PER_CALL && transientFailureFor !== undefined;
        // Invariant 1: consent for exactly this number, given in answer to the question itself, in a
        // later turn; a retry after a failure needs a new answer too.
        expect(answering, `send_sms to ${a.phone_number} not in answer to its consent question`).toBe(a.phone_number);
        if (isRetry) transientFailureFor = undefined;
        consentedNumber = a.phone_number;
        lastSentTo = a.phone_number;
        expect(type).toBe("user_speak");
        expect(declined, "send_sms after a decline").toBe(false);
        // Invariant 3: at most one per call (+ one retry after a transient failure).
        expect(sends).toBeLessThanOrEqual(MAX_PER_CALL + 1);
        if (sends > MAX_PER_CALL) expect(isRetry, "a second SMS that is not the one retry").toBe(true);
        // Invariant 4: text from the template only.
        expect(allowedTexts.has(a.message), `SMS text not from template: ${a.message}`).toBe(true);
        // Invariant 5: recipient policy.
        expect(checkRecipient(parseAiFlowNumber(a.phone_number), config.recipients).ok).toBe(true);
        // Invariant 6: evidence is durable before the send; a failing ledger means no send.
        expect(o.ledgerDown, "send_sms while the ledger was failing").toBe(false);
      }
    }
    const spokenNow = o.actions.filter((a) => a.type === "speak");
    if (spokenNow.length) lastLine = (spokenNow.at(-1) as { text: string }).text;
    // Anything after the event that recorded a decline must neither ask nor send.
    if (o.ledgerKinds.includes("consent_declined") || o.ledgerKinds.includes("sms_cancelled")) declined = true;
  });

  const sentRecords = ledger.filter((r) => r.kind === "sms_sent");
  expect(sentRecords).toHaveLength(sends);
  for (const r of sentRecords) {
    expect(r.question).toBe(questionFor(r.number!));
    expect(r.reply).toBeTruthy();
    expect(ledger.findIndex((x) => x.kind === "consent_given" && x.number === r.number)).toBeLessThan(ledger.indexOf(r));
  }
}

describe("invariants hold whatever the model does", () => {
  it(`random calls × a misbehaving model (${RUNS} runs)`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 2, maxLength: 14 }), fc.array(modelReply, { minLength: 1, maxLength: 30 }), async (steps, replies) => {
        const id = `prop-${++runId}`;
        let r = 0;
        svc.fake.reset();
        svc.fake.onRequest(() => replies[r++ % replies.length]!);
        const observed: Observed[] = [];
        let previous: Record<string, unknown> = ev.start(id);
        let ledgerDown = false;
        const send = async (event: Record<string, unknown>) => {
          svc.memoryLedger.failWrites = ledgerDown;
          const before = svc.memoryLedger.records.length;
          const res = await svc.post(event);
          svc.memoryLedger.failWrites = false;
          expect([200, 204]).toContain(res.status);
          const ledgerKinds = svc.memoryLedger.records.slice(before).filter((x) => x.callId === id).map((x) => x.kind);
          observed.push({ event, actions: res.actions, ledgerDown, ledgerKinds });
          ledgerDown = false;
          previous = event;
        };
        await send(ev.start(id));
        for (const s of steps) {
          switch (s.kind) {
            case "speak": await send(ev.speak(id, s.text, s.barged)); break;
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
        if (state) expect(toolPairingProblems(state.history)).toEqual([]);
        checkInvariants(id, observed);
        await svc.post(ev.end(id));
      }),
      { numRuns: RUNS },
    );
  }, 240_000);

  it("the property is not vacuous: across runs the misbehaving model does get SMS sent", async () => {
    const sent = svc.memoryLedger.records.filter((r) => r.kind === "sms_sent").length;
    const refusedOrDeclined = svc.memoryLedger.records.filter((r) => r.kind === "consent_declined").length;
    console.log(`property runs: ${runId}, SMS sent: ${sent}, consents declined: ${refusedOrDeclined}`);
    expect(sent).toBeGreaterThan(0);
    expect(refusedOrDeclined).toBeGreaterThan(0);
  });
});
