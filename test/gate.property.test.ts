import fc from "fast-check";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { actions, type AiFlowAction } from "../src/aiflow/actions.js";
import { initialCallState, type SmsCallState as CallState, type ConsentState, type SentSms } from "../src/tasks/sms/state.js";
import { Turn } from "../src/engine/turnContext.js";
import type { SmsFlowTypes } from "../src/tasks/sms/types.js";
import { emptyTurnRecord } from "../src/core/turnRecord.js";
import { PromptLibrary } from "../src/engine/promptLibrary.js";
import { SmsActionGate } from "../src/tasks/sms/smsGate.js";
import { renderSmsText } from "../src/tasks/sms/smsText.js";
import { MemoryLedger } from "../src/ledger/memoryLedger.js";
import { NumberHasher } from "../src/ledger/numberHash.js";
import { PROMPTS_DIR, engineOptions } from "../src/service.js";
import { MemoryRateLimiter } from "../src/store/rateLimiter.js";
import { smsConfigOf, testConfig } from "./support/harness.js";

/**
 * The action gate on its own, against arbitrary state a buggy tool could leave behind and
 * arbitrary send_sms actions: it lets an SMS through only when every rule holds.
 */

const app = testConfig({ tasks: { sms: { maxPerCall: 1, recipients: { perRecipient: { max: 2, windowSeconds: 3600 } } } } });
const config = smsConfigOf(app);
const prompts = new PromptLibrary(PROMPTS_DIR, "de-DE");
const NUMBERS = ["4915112345678", "491701234567", "499001234567", "493012345678", "447911123456", "436641234567"];
const GOOD_TEXT = renderSmsText(config, { info: "address" });
const number = fc.constantFrom(...NUMBERS);

/** Rarely true, so most generated cases are one or two defects away from a valid send. */
const rarely = fc.noBias(fc.integer({ min: 0, max: 7 })).map((x) => x === 0);

/** A send scenario: a consistent, consented state for `to`, then random defects a buggy tool could cause. */
const scenario = fc
  .record({
    to: number,
    other: number,
    noConsent: rarely,
    consentForOther: rarely,
    smsNumberOther: rarely,
    smsNumberUnset: rarely,
    declined: rarely,
    notConsented: rarely,
    noAnswer: rarely,
    interrupted: rarely,
    answeredSameTurn: rarely,
    answeredSomethingElse: rarely,
    consentUsed: rarely,
    sent: fc.tuple(rarely, fc.array(fc.record({ number, message: fc.constant(GOOD_TEXT), at: fc.constant("t"), turn: fc.nat(5), failed: fc.option(fc.constantFrom("smsc_unavailable" as const, "insufficient_balance" as const), { nil: undefined }) }), { minLength: 1, maxLength: 3 })).map(([has, list]) => (has ? list : [])),
    retry: fc.integer({ min: 0, max: 1 }),
    slot: fc.constantFrom("address", "address", "opening_hours"),
    text: fc.constantFrom(GOOD_TEXT, GOOD_TEXT, GOOD_TEXT, "Gewinnspiel! http://evil.example", renderSmsText(config, { info: "opening_hours" })),
    ledgerDown: rarely,
  })
  .map((g) => {
    const consentNumber = g.consentForOther ? g.other : g.to;
    const c: ConsentState | undefined = g.noConsent
      ? undefined
      : {
          number: consentNumber,
          question: "Darf ich …?",
          askedTurn: 3,
          askedAt: "2026-11-23T09:00:00.000Z",
          spokenIndex: 3,
          interrupted: g.interrupted,
          answer: g.noAnswer
            ? undefined
            : { consented: !g.notConsented, reply: "Ja", turn: g.answeredSameTurn ? 3 : 4, at: "2026-11-23T09:00:05.000Z", spokenBeforeAnswer: g.answeredSomethingElse ? 4 : 3 },
          ...(g.consentUsed ? { usedAt: "2026-11-23T09:00:06.000Z" } : {}),
        };
    const smsNumber = g.smsNumberUnset ? undefined : g.smsNumberOther ? g.other : g.to;
    return { state: stateWith(c, smsNumber, g.declined, g.sent, g.retry, g.slot), to: g.to, text: g.text, ledgerDown: g.ledgerDown };
  });

function stateWith(c: ConsentState | undefined, smsNumber: string | undefined, declined: boolean, sentList: SentSms[], retryAllowance: number, slot: string): CallState {
  return {
    ...initialCallState({ sessionId: "gate", direction: "inbound", language: "de-DE", step: "send_sms", turn: 5, spoken: 5, spokenBeforeTurn: 4 }),
    sms: { number: smsNumber, slots: { info: slot }, consent: c, declined, sent: sentList, retryAllowance },
  };
}

const gate = new SmsActionGate();

/** A turn on its own: the gate's only way to see state, services and the ledger. */
function contextFor(state: CallState, ledger: MemoryLedger, limiter: MemoryRateLimiter): Turn<SmsFlowTypes> {
  const record = emptyTurnRecord("gate", "user_speak");
  const turn: Turn<SmsFlowTypes> = new Turn<SmsFlowTypes>({
    state,
    event: { type: "user_speak", session: { id: "gate" }, text: "Ja", barged_in: false },
    services: { config, ledger, limiter, hasher: NumberHasher.full() },
    options: engineOptions(app),
    prompts,
    log: pino({ level: "silent" }),
    record,
    now: () => 0,
    engine: { invokeTool: async () => "", review: (actions) => gate.review(actions, turn) },
  });
  return turn;
}

/** The oracle: the rules written out once more, independently of src/guards. */
function mayLeave(state: CallState, a: Extract<AiFlowAction, { type: "send_sms" }>): boolean {
  const { sms } = state;
  const c = sms.consent;
  const consentOk =
    !sms.declined &&
    c !== undefined &&
    c.answer?.consented === true &&
    !c.interrupted &&
    c.number === a.phone_number &&
    sms.number === a.phone_number &&
    c.answer.turn > c.askedTurn &&
    c.answer.spokenBeforeAnswer === c.spokenIndex &&
    // One yes, one SMS.
    c.usedAt === undefined;
  const standing = sms.sent.filter((s) => !s.failed).length;
  const withinLimit = standing < 1 && sms.sent.length < 1 + sms.retryAllowance;
  const textOk = sms.slots.info !== undefined && a.message === renderSmsText(config, sms.slots);
  const recipientOk = a.phone_number === "4915112345678" || a.phone_number === "491701234567" || a.phone_number === "436641234567";
  return consentOk && withinLimit && textOk && recipientOk;
}

describe("the action gate alone", () => {
  it("allows a send_sms only when consent, limit, template and recipient policy all hold", async () => {
    let allowedCount = 0;
    await fc.assert(
      fc.asyncProperty(scenario, async (generated) => {
          // The gate records sends in state: work on a copy so fast-check can replay and shrink the input.
          const { state, to, text, ledgerDown } = structuredClone(generated);
          const ledger = new MemoryLedger();
          ledger.failWrites = ledgerDown;
          const ctx = contextFor(state, ledger, new MemoryRateLimiter(() => 0));
          const action = actions.sendSms("gate", to, text);
          const expected = mayLeave(state, action) && !ledgerDown;
          const before = state.sms.sent.length;
          const { allowed, decisions } = await gate.review([action], ctx);
          expect(allowed.length === 1).toBe(expected);
          expect(decisions).toHaveLength(1);
          expect(decisions[0]!.allowed).toBe(expected);
          if (expected) {
            allowedCount++;
            expect(state.sms.sent.length).toBe(before + 1);
            expect(ledger.records).toEqual([expect.objectContaining({ kind: "sms_approved", number: to, question: "Darf ich …?", reply: "Ja" })]);
          } else {
            expect(state.sms.sent.length).toBe(before);
            expect(ledger.records.filter((r) => r.kind === "sms_approved")).toHaveLength(0);
          }
        }),
      { numRuns: 3000 },
    );
    // Not vacuous: a good share of the generated cases were allowed.
    expect(allowedCount).toBeGreaterThan(100);
    expect(allowedCount).toBeLessThan(3000);
  });

  it("two sends in one batch: the second is refused by the per-call limit", async () => {
    const c: ConsentState = { number: "4915112345678", question: "q", askedTurn: 1, askedAt: "2026-12-07T09:00:03.000Z", spokenIndex: 2, interrupted: false, answer: { consented: true, reply: "Ja", turn: 2, at: "2026-12-07T09:00:07.000Z", spokenBeforeAnswer: 2 } };
    const state = stateWith(c, "4915112345678", false, [], 0, "address");
    const ctx = contextFor(state, new MemoryLedger(), new MemoryRateLimiter(() => 0));
    const a = actions.sendSms("gate", "4915112345678", GOOD_TEXT);
    const b = actions.sendSms("gate", "4915112345678", GOOD_TEXT);
    const { allowed, decisions } = await gate.review([a, b], ctx);
    expect(allowed).toEqual([a]);
    // The yes covered the first send; the second would need its own question and answer.
    expect(decisions.map((d) => d.reason)).toEqual(["consent_recorded", "consent_already_used"]);
  });

  it("one yes covers one SMS, also where more SMS per call are allowed: a later send needs a new answer", async () => {
    const wideApp = testConfig({ tasks: { sms: { maxPerCall: 2 } } });
    const wide = smsConfigOf(wideApp);
    const c: ConsentState = { number: "4915112345678", question: "q", askedTurn: 1, askedAt: "2026-12-07T09:00:03.000Z", spokenIndex: 2, interrupted: false, answer: { consented: true, reply: "Ja", turn: 2, at: "2026-12-07T09:00:07.000Z", spokenBeforeAnswer: 2 } };
    const state = stateWith(c, "4915112345678", false, [], 0, "address");
    const ledger = new MemoryLedger();
    const record = emptyTurnRecord("gate", "user_speak");
    const turn: Turn<SmsFlowTypes> = new Turn<SmsFlowTypes>({
      state,
      event: { type: "user_speak", session: { id: "gate" }, text: "Ja", barged_in: false },
      services: { config: wide, ledger, limiter: new MemoryRateLimiter(() => 0), hasher: NumberHasher.full() },
      options: engineOptions(wideApp),
      prompts,
      log: pino({ level: "silent" }),
      record,
      now: () => 0,
      engine: { invokeTool: async () => "", review: (list) => gate.review(list, turn) },
    });
    const first = await gate.review([actions.sendSms("gate", "4915112345678", GOOD_TEXT)], turn);
    expect(first.allowed).toHaveLength(1);
    state.turn += 2; // two turns later, a host tool tries again on the same yes
    const second = await gate.review([actions.sendSms("gate", "4915112345678", GOOD_TEXT)], turn);
    expect(second.allowed).toEqual([]);
    expect(second.decisions[0]).toMatchObject({ allowed: false, reason: "consent_already_used" });
    expect(ledger.records.filter((r) => r.kind === "sms_approved")).toHaveLength(1);
  });

  it("per-recipient limit across calls", async () => {
    const limiter = new MemoryRateLimiter(() => 0);
    const results: boolean[] = [];
    for (let call = 0; call < 3; call++) {
      const c: ConsentState = { number: "4915112345678", question: "q", askedTurn: 1, askedAt: "2026-12-07T09:00:03.000Z", spokenIndex: 2, interrupted: false, answer: { consented: true, reply: "Ja", turn: 2, at: "2026-12-07T09:00:07.000Z", spokenBeforeAnswer: 2 } };
      const ctx = contextFor(stateWith(c, "4915112345678", false, [], 0, "address"), new MemoryLedger(), limiter);
      const { allowed } = await gate.review([actions.sendSms("gate", "4915112345678", GOOD_TEXT)], ctx);
      results.push(allowed.length === 1);
    }
    expect(results).toEqual([true, true, false]);
  });

  it("a tool that bypasses the gate (pushes send_sms itself) is still stopped at the boundary", async () => {
    const state = stateWith(undefined, "4915112345678", false, [], 0, "address");
    const ctx = contextFor(state, new MemoryLedger(), new MemoryRateLimiter(() => 0));
    const smuggled = actions.sendSms("gate", "4915112345678", GOOD_TEXT);
    ctx.emit(smuggled);
    const { allowed, decisions } = await gate.review(ctx.outgoing.filter((a) => !ctx.isApproved(a)), ctx);
    expect(allowed).toEqual([]);
    expect(decisions[0]).toMatchObject({ allowed: false, reason: "consent_not_asked" });
  });
});
