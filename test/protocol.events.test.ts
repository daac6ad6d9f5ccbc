import { describe, expect, it } from "vitest";
import { InvalidEventError, SMS_FAILURE_REASONS, parseEvent, type AiFlowEvent } from "../src/aiflow/events.js";
import { REFERENCE_EVENT_FIXTURES } from "./support/fixtures.js";

/** §6 negative fixture: no type → 400. */
const REFERENCE_NEGATIVE_FIXTURE = `{"session":{"id":"x"}}`;

const SID = "6f1c2a9e-3b4d-4e8f-9a10-2b3c4d5e6f70";
const session = { id: "s-1", account_id: "1234567", phone_number: "4921112345678" };

/** Parse and insist on a known event (fails the test with a clear message otherwise). */
function known(body: unknown): AiFlowEvent {
  const r = parseEvent(body);
  if (r.kind !== "event") throw new Error(`expected a known event, got unknown type ${r.type}`);
  return r.event;
}

/** Call parseEvent and return the InvalidEventError it throws. */
function invalid(body: unknown): InvalidEventError {
  try {
    parseEvent(body);
  } catch (e) {
    expect(e).toBeInstanceOf(InvalidEventError);
    return e as InvalidEventError;
  }
  throw new Error(`expected parseEvent to throw for ${JSON.stringify(body)}`);
}

describe("parseEvent: every §6 fixture of the protocol reference", () => {
  it("has all 14 event fixtures", () => {
    expect(REFERENCE_EVENT_FIXTURES).toHaveLength(14);
  });

  it.each(REFERENCE_EVENT_FIXTURES.map((json, i) => [i, json] as const))("fixture #%i parses without throwing", (_i, json) => {
    const body = JSON.parse(json) as { type: string; session: { id: string } };
    const r = parseEvent(body);
    if (r.kind === "event") {
      expect(r.event.session.id).toBe(body.session.id);
    } else {
      expect(r).toEqual({ kind: "unknown", type: body.type, sessionId: body.session.id });
    }
  });

  it("#0 session_start (current shape) keeps the full session", () => {
    const e = known(JSON.parse(REFERENCE_EVENT_FIXTURES[0]!));
    expect(e).toEqual({
      type: "session_start",
      session: {
        id: SID,
        account_id: "1234567",
        phone_number: "4921112345678",
        direction: "inbound",
        from_phone_number: "4915112345678",
        to_phone_number: "4921112345678",
      },
    });
  });

  it("#1 session_start (older shape): '+'-prefixed numbers and a missing direction are accepted", () => {
    const e = known(JSON.parse(REFERENCE_EVENT_FIXTURES[1]!));
    expect(e.type).toBe("session_start");
    expect(e.session.id).toBe("6f1c2a9e-3b4d-4e8f-9a10-2b3c4d5e6f71");
    expect(e.session.direction).toBeUndefined();
    expect(e.session.from_phone_number).toBe("+499876543210");
    expect(e.session.phone_number).toBe("+491234567890");
  });

  it("#2 session_start outbound", () => {
    const e = known(JSON.parse(REFERENCE_EVENT_FIXTURES[2]!));
    expect(e.type).toBe("session_start");
    expect(e.session.direction).toBe("outbound");
    expect(e.session.to_phone_number).toBe("4915790000687");
  });

  it("#3 user_speak with barged_in false", () => {
    const e = known(JSON.parse(REFERENCE_EVENT_FIXTURES[3]!));
    expect(e).toMatchObject({ type: "user_speak", text: "Ja, schicken Sie mir bitte eine SMS.", barged_in: false });
  });

  it("#4 user_speak with barged_in true and a trimmed session", () => {
    const e = known(JSON.parse(REFERENCE_EVENT_FIXTURES[4]!));
    expect(e).toMatchObject({ type: "user_speak", text: "Moment, stopp", barged_in: true });
    expect(e.session.from_phone_number).toBeUndefined();
  });

  it("#5 legacy user_speak with `transcript` maps to text, barged_in defaults to false", () => {
    const e = known(JSON.parse(REFERENCE_EVENT_FIXTURES[5]!));
    expect(e).toEqual({
      type: "user_speak",
      text: "hello",
      barged_in: false,
      session: { id: "legacy-1", account_id: "account-123", phone_number: "+491234567890" },
    });
  });

  it("#6 dtmf_received", () => {
    expect(known(JSON.parse(REFERENCE_EVENT_FIXTURES[6]!))).toMatchObject({ type: "dtmf_received", digit: "#" });
  });

  it("#7 assistant_speak keeps text and duration_ms", () => {
    const e = known(JSON.parse(REFERENCE_EVENT_FIXTURES[7]!));
    expect(e).toMatchObject({ type: "assistant_speak", text: "Darf ich Ihnen die Bestätigung per SMS senden?", duration_ms: 2300 });
  });

  it.each([
    [8, "assistant_speech_ended"],
    [9, "user_input_timeout"],
    [10, "user_speech_started"],
    [12, "session_end"],
  ] as const)("#%i %s has no extra fields after normalization", (i, type) => {
    const e = known(JSON.parse(REFERENCE_EVENT_FIXTURES[i]!));
    expect(Object.keys(e).sort()).toEqual(["session", "type"]);
    expect(e.type).toBe(type);
    expect(e.session.id).toBe(SID);
  });

  it("#11 sms_failed keeps recipient, reason and message", () => {
    const e = known(JSON.parse(REFERENCE_EVENT_FIXTURES[11]!));
    expect(e).toMatchObject({
      type: "sms_failed",
      recipient: "4915112345678",
      reason: "insufficient_balance",
      message: "Account balance too low to send SMS",
    });
  });

  it("#13 an unknown type gives kind 'unknown' with the session id", () => {
    expect(parseEvent(JSON.parse(REFERENCE_EVENT_FIXTURES[13]!))).toEqual({ kind: "unknown", type: "some_future_event", sessionId: SID });
  });

  it("negative fixture {session:{id:'x'}} throws InvalidEventError naming `type`", () => {
    const err = invalid(JSON.parse(REFERENCE_NEGATIVE_FIXTURE));
    expect(err.name).toBe("InvalidEventError");
    expect(err.message).toMatch(/\btype\b/);
  });
});

describe("parseEvent: legacy shapes", () => {
  it("`transcript` is used when `text` is missing", () => {
    expect(known({ type: "user_speak", transcript: "ja bitte", session })).toMatchObject({ type: "user_speak", text: "ja bitte" });
  });

  it("`text` wins over `transcript` when both are present", () => {
    expect(known({ type: "user_speak", text: "neu", transcript: "alt", session })).toMatchObject({ text: "neu" });
  });

  it("an empty text is still a valid user_speak", () => {
    expect(known({ type: "user_speak", text: "", session })).toMatchObject({ type: "user_speak", text: "", barged_in: false });
  });

  it("user_barge_in becomes user_speak with barged_in true", () => {
    expect(known({ type: "user_barge_in", text: "Stopp", session })).toEqual({ type: "user_speak", session, text: "Stopp", barged_in: true });
  });

  it("user_barge_in with the legacy `transcript` field", () => {
    expect(known({ type: "user_barge_in", transcript: "Halt", session })).toEqual({ type: "user_speak", session, text: "Halt", barged_in: true });
  });

  it("user_barge_in without any text gives an empty text", () => {
    expect(known({ type: "user_barge_in", session })).toEqual({ type: "user_speak", session, text: "", barged_in: true });
  });

  it("`digits` maps to digit", () => {
    expect(known({ type: "dtmf_received", digits: "5", session })).toEqual({ type: "dtmf_received", session, digit: "5" });
  });

  it("`digits` with several keys is passed on as one digit string", () => {
    expect(known({ type: "dtmf_received", digits: "0151#", session })).toMatchObject({ digit: "0151#" });
  });

  it.each(["0", "9", "*", "#"])("single digit %s is accepted", (digit) => {
    expect(known({ type: "dtmf_received", digit, session })).toMatchObject({ digit });
  });

  it("'+'-prefixed session numbers and no direction are accepted and kept as sent", () => {
    const s = { id: "old", account_id: "a", phone_number: "+491234567890", from_phone_number: "+499876543210", to_phone_number: "+491234567890" };
    const e = known({ type: "session_start", session: s });
    expect(e.session).toEqual(s);
  });

  it("a session with only an id is enough", () => {
    expect(known({ type: "session_end", session: { id: "only-id" } })).toEqual({ type: "session_end", session: { id: "only-id" } });
  });

  it("unknown extra fields in the session are accepted and dropped (the event is queued and stored until its turn)", () => {
    const e = known({ type: "session_start", session: { id: "x", carrier: "foo" } });
    expect(e.type).toBe("session_start");
    expect((e.session as Record<string, unknown>).carrier).toBeUndefined();
  });

  it("sms_failed without message gets an empty message", () => {
    expect(known({ type: "sms_failed", recipient: "4915112345678", reason: "unknown", session })).toMatchObject({ message: "" });
  });

  it.each(SMS_FAILURE_REASONS.map((r) => [r]))("sms_failed reason %s is accepted", (reason) => {
    expect(known({ type: "sms_failed", recipient: "4915112345678", reason, message: "m", session })).toMatchObject({ reason });
  });

  it("user_speak with barged_in absent gives barged_in false (never undefined)", () => {
    const e = known({ type: "user_speak", text: "x", session });
    expect(e.type === "user_speak" && e.barged_in).toBe(false);
  });
});

describe("parseEvent: unknown types", () => {
  it.each(["configure_something", "user_speak with barged_in flag", "timeout", "SESSION_START"])("type %j gives kind unknown", (type) => {
    expect(parseEvent({ type, session })).toEqual({ kind: "unknown", type, sessionId: "s-1" });
  });

  it("an unknown type without a session still gives kind unknown, without sessionId", () => {
    expect(parseEvent({ type: "future" })).toEqual({ kind: "unknown", type: "future", sessionId: undefined });
  });

  it("an unknown type with a non-object session gives no sessionId", () => {
    expect(parseEvent({ type: "future", session: 5 })).toMatchObject({ kind: "unknown", type: "future", sessionId: undefined });
  });
});

describe("parseEvent: tolerant reading (a field the service can do without never costs the turn)", () => {
  const full = { ...session, direction: "inbound", from_phone_number: "4915112345678", to_phone_number: "4921112345678" };

  it.each([
    ["account_id", 42],
    ["account_id", null],
    ["phone_number", null],
    ["phone_number", { n: 1 }],
    ["direction", null],
    ["direction", "sideways"],
    ["direction", 1],
    ["from_phone_number", null],
    ["from_phone_number", false],
    ["to_phone_number", null],
    ["to_phone_number", []],
  ] as const)("session.%s = %j is read as absent (or coerced), the event is kept", (field, value) => {
    const e = known({ type: "session_start", session: { ...full, [field]: value } });
    expect(e.type).toBe("session_start");
    expect(e.session.id).toBe("s-1");
    const read = (e.session as Record<string, unknown>)[field];
    if (field === "account_id" && value === 42) expect(read).toBe("42");
    else expect(read).toBeUndefined();
  });

  it("an account id sent as a number is read as its decimal string", () => {
    expect(known({ type: "session_start", session: { id: "n", account_id: 1234567 } }).session.account_id).toBe("1234567");
  });

  it("numbers sent as JSON integers are read as their digits; other numbers count as absent", () => {
    const e = known({ type: "session_start", session: { id: "n", from_phone_number: 4915112345678, to_phone_number: -5, phone_number: 49.5 } });
    expect(e.session.from_phone_number).toBe("4915112345678");
    expect(e.session.to_phone_number).toBeUndefined();
    expect(e.session.phone_number).toBeUndefined();
  });

  it("direction is read case-insensitively", () => {
    expect(known({ type: "session_start", session: { id: "d", direction: " Outbound " } }).session.direction).toBe("outbound");
  });

  it.each([
    ["text null", { text: null }, ""],
    ["text a number", { text: 5 }, ""],
    ["text missing", {}, ""],
    ["text null, transcript given", { text: null, transcript: "ja" }, "ja"],
    ["transcript an object", { transcript: { a: 1 } }, ""],
  ] as const)("user_speak with %s reads as text %j", (_label, fields, text) => {
    expect(known({ type: "user_speak", ...fields, session })).toEqual({ type: "user_speak", session, text, barged_in: false });
  });

  it.each([null, "yes", 1, {}])("user_speak with barged_in %j reads as not barged in", (barged_in) => {
    expect(known({ type: "user_speak", text: "hallo", barged_in, session })).toMatchObject({ text: "hallo", barged_in: false });
  });

  it.each(["A", "B", "C", "D"])("DTMF key %s of the fourth column is accepted", (digit) => {
    expect(known({ type: "dtmf_received", digit, session })).toMatchObject({ digit });
  });

  it("a key sent as a JSON number is that key", () => {
    expect(known({ type: "dtmf_received", digit: 7, session })).toMatchObject({ digit: "7" });
  });

  it.each([
    ["digit missing", {}],
    ["digit null", { digit: null }],
    ["digit empty", { digit: "" }],
    ["digit x", { digit: "x" }],
    ["digit lower-case a", { digit: "a" }],
    ["digit 10 as a number", { digit: 10 }],
    ["digits with a letter", { digits: "12x" }],
    ["digits as a number (leading zeros lost)", { digits: 151 }],
  ] as const)("dtmf_received with %s is no key press: an empty digit", (_label, fields) => {
    expect(known({ type: "dtmf_received", ...fields, session })).toEqual({ type: "dtmf_received", session, digit: "" });
  });

  it("assistant_speak with ill-typed text, duration and start time keeps the event", () => {
    const e = known({ type: "assistant_speak", text: 5, ssml: null, duration_ms: "2300", speech_started_at: null, session });
    expect(e).toEqual({ type: "assistant_speak", session, text: undefined, duration_ms: undefined });
  });

  it("assistant_speak with a negative duration reads as no duration", () => {
    expect(known({ type: "assistant_speak", text: "x", duration_ms: -1, session })).toMatchObject({ text: "x", duration_ms: undefined });
  });

  it("sms_failed with an undocumented reason is handled as unknown, the raw value kept", () => {
    const e = known({ type: "sms_failed", recipient: "4915112345678", reason: "out_of_coffee", message: "m", session });
    expect(e).toMatchObject({ type: "sms_failed", reason: "unknown", rawReason: "out_of_coffee", message: "m" });
  });

  it("sms_failed with a non-string reason keeps it as text, bounded in length", () => {
    expect(known({ type: "sms_failed", recipient: "4915112345678", reason: { code: 7 }, session })).toMatchObject({ reason: "unknown", rawReason: '{"code":7}' });
    const long = known({ type: "sms_failed", recipient: "4915112345678", reason: "x".repeat(5000), session });
    expect(long.type === "sms_failed" && long.rawReason).toHaveLength(200);
  });

  it("sms_failed without reason (or null) is unknown with no raw value", () => {
    for (const reason of [undefined, null]) {
      const e = known({ type: "sms_failed", recipient: "4915112345678", reason, session });
      expect(e).toMatchObject({ reason: "unknown" });
      expect(e.type === "sms_failed" && e.rawReason).toBeUndefined();
    }
  });

  it("a documented reason carries no raw value", () => {
    const e = known({ type: "sms_failed", recipient: "4915112345678", reason: "smsc_unavailable", session });
    expect(e.type === "sms_failed" && e.rawReason).toBeUndefined();
  });

  it.each([
    ["missing", {}, ""],
    ["null", { recipient: null }, ""],
    ["an object", { recipient: {} }, ""],
    ["a JSON integer", { recipient: 4915112345678 }, "4915112345678"],
  ] as const)("sms_failed with recipient %s still reports the failure (recipient %j)", (_label, fields, recipient) => {
    expect(known({ type: "sms_failed", ...fields, reason: "unknown", message: null, session })).toMatchObject({ type: "sms_failed", recipient, reason: "unknown", message: "" });
  });
});

describe("parseEvent: invalid bodies throw InvalidEventError naming the field", () => {
  it("a session without id names `session.id`", () => {
    expect(invalid({ type: "session_start", session: { account_id: "1" } }).message).toContain("session.id");
  });

  it("a session id of the wrong type names `session.id`", () => {
    expect(invalid({ type: "user_speak", text: "x", session: { id: 5 } }).message).toContain("session.id");
    expect(invalid({ type: "user_speak", text: "x", session: { id: null } }).message).toContain("session.id");
  });

  it("a session with an empty id names `session.id`", () => {
    expect(invalid({ type: "user_speak", text: "x", session: { id: "" } }).message).toContain("session.id");
  });

  it("a known type without session names `session`", () => {
    expect(invalid({ type: "session_start" }).message).toMatch(/\bsession\b/);
  });

  it.each([null, "s-1", 5, []])("a known type with session %j names `session`", (bad) => {
    expect(invalid({ type: "sms_failed", reason: "unknown", session: bad }).message).toMatch(/\bsession\b/);
  });

  it("a non-string type names `type`", () => {
    expect(invalid({ type: 5, session }).message).toMatch(/\btype\b/);
  });

  it("a null type names `type`", () => {
    expect(invalid({ type: null, session }).message).toMatch(/\btype\b/);
  });

  it.each([
    ["an array", []],
    ["an array of events", [{ type: "session_start", session }]],
    ["null", null],
    ["a string", "session_start"],
    ["a number", 42],
    ["undefined", undefined],
    ["a boolean", true],
  ] as const)("%s is rejected as a body that must be a JSON object", (_label, body) => {
    const err = invalid(body);
    expect(err.message).toMatch(/body/);
    expect(err.message).toMatch(/object/);
  });
});
