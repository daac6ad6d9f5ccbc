import { describe, expect, it } from "vitest";
import {
  InvalidActionError,
  actionSchema,
  actions,
  checkAction,
  isBuiltAction,
  aiFlowNumberSchema,
  sendSmsActionSchema,
  speakActionSchema,
  transferActionSchema,
  type SpeakOptions,
} from "../src/aiflow/actions.js";

/** Expected-response fixtures of §6 of /work/shared/reference/ai-flow-protocol.md, verbatim. */
const SPEAK_FIXTURE = `{"type":"speak","session_id":"6f1c2a9e-3b4d-4e8f-9a10-2b3c4d5e6f70","text":"Willkommen! Wie kann ich helfen?","tts":{"provider":"azure","language":"de-DE","voice":"de-DE-KatjaNeural"},"barge_in":{"strategy":"minimum_characters","minimum_characters":3,"allow_after_ms":500},"user_input_timeout_seconds":8}`;
const SMS_AND_SPEAK_FIXTURE = `[{"type":"send_sms","session_id":"6f1c2a9e-3b4d-4e8f-9a10-2b3c4d5e6f70","phone_number":"4915112345678","message":"Ihre Buchung ist bestätigt."},
 {"type":"speak","session_id":"6f1c2a9e-3b4d-4e8f-9a10-2b3c4d5e6f70","text":"Ich habe Ihnen die SMS gerade geschickt."}]`;
const TRANSFER_FIXTURE = `{"type":"transfer","session_id":"6f1c2a9e-3b4d-4e8f-9a10-2b3c4d5e6f70","target_phone_number":"4921112345600","caller_id_name":"Support","caller_id_number":"4921112345678","timeout":30}`;

const SID = "6f1c2a9e-3b4d-4e8f-9a10-2b3c4d5e6f70";

/** Run a builder and return the InvalidActionError it throws. */
function refused(build: () => unknown): InvalidActionError {
  try {
    build();
  } catch (e) {
    expect(e).toBeInstanceOf(InvalidActionError);
    return e as InvalidActionError;
  }
  throw new Error("expected the builder to throw InvalidActionError");
}

describe("action builders match the §6 expected-response fixtures", () => {
  it("speak with tts, barge_in and user_input_timeout_seconds", () => {
    const expected = JSON.parse(SPEAK_FIXTURE) as Record<string, unknown>;
    const built = actions.speak(SID, "Willkommen! Wie kann ich helfen?", {
      tts: { provider: "azure", language: "de-DE", voice: "de-DE-KatjaNeural" },
      barge_in: { strategy: "minimum_characters", minimum_characters: 3, allow_after_ms: 500 },
      user_input_timeout_seconds: 8,
    });
    expect(built).toEqual(expected);
    expect(JSON.parse(JSON.stringify(built))).toEqual(expected);
    expect(actionSchema.safeParse(built).success).toBe(true);
    expect(actionSchema.safeParse(expected).success).toBe(true);
  });

  it("[send_sms, speak] array", () => {
    const expected = JSON.parse(SMS_AND_SPEAK_FIXTURE) as unknown[];
    const built = [
      actions.sendSms(SID, "4915112345678", "Ihre Buchung ist bestätigt."),
      actions.speak(SID, "Ich habe Ihnen die SMS gerade geschickt."),
    ];
    expect(built).toEqual(expected);
    for (const a of expected) expect(actionSchema.safeParse(a).success).toBe(true);
  });

  it("speak without options carries no option keys", () => {
    expect(Object.keys(actions.speak(SID, "Hallo")).sort()).toEqual(["session_id", "text", "type"]);
  });

  it("transfer with timeout", () => {
    const expected = JSON.parse(TRANSFER_FIXTURE) as Record<string, unknown>;
    const built = actions.transfer(SID, {
      target_phone_number: "4921112345600",
      caller_id_name: "Support",
      caller_id_number: "4921112345678",
      timeout: 30,
    });
    expect(built).toEqual(expected);
    expect(actionSchema.safeParse(expected).success).toBe(true);
  });

  it("transfer without timeout is valid (no fallback)", () => {
    const built = actions.transfer(SID, { target_phone_number: "4921112345600", caller_id_name: "Support", caller_id_number: "4921112345678" });
    expect(built).toEqual({ type: "transfer", session_id: SID, target_phone_number: "4921112345600", caller_id_name: "Support", caller_id_number: "4921112345678" });
    expect("timeout" in built).toBe(false);
  });

  it("hangup and barge_in carry only type and session_id", () => {
    expect(actions.hangup(SID)).toEqual({ type: "hangup", session_id: SID });
    expect(actions.bargeIn(SID)).toEqual({ type: "barge_in", session_id: SID });
  });

  it("eleven_labs tts and every barge-in strategy are accepted", () => {
    for (const strategy of ["none", "manual", "minimum_characters", "immediate"] as const) {
      const a = actions.speak(SID, "x", { tts: { provider: "eleven_labs", voice: "abc" }, barge_in: { strategy } });
      expect(a.barge_in?.strategy).toBe(strategy);
    }
  });

  it("boundary values are accepted: transfer timeout 5 and 120, minimum_characters 1 and 100, allow_after_ms 0 and 10000", () => {
    const t = { target_phone_number: "4921112345600", caller_id_name: "S", caller_id_number: "4921112345678" };
    expect(actions.transfer(SID, { ...t, timeout: 5 }).timeout).toBe(5);
    expect(actions.transfer(SID, { ...t, timeout: 120 }).timeout).toBe(120);
    for (const minimum_characters of [1, 100]) {
      expect(actions.speak(SID, "x", { barge_in: { strategy: "minimum_characters", minimum_characters } }).barge_in?.minimum_characters).toBe(minimum_characters);
    }
    for (const allow_after_ms of [0, 10000]) {
      expect(actions.speak(SID, "x", { barge_in: { strategy: "immediate", allow_after_ms } }).barge_in?.allow_after_ms).toBe(allow_after_ms);
    }
  });

  it("vad end_of_turn_silence_ms in 150-2000 is accepted", () => {
    expect(actions.speak(SID, "x", { vad: { end_of_turn_silence_ms: 150 } }).vad).toEqual({ end_of_turn_silence_ms: 150 });
    expect(actions.speak(SID, "x", { vad: { end_of_turn_silence_ms: 2000 } }).vad).toEqual({ end_of_turn_silence_ms: 2000 });
  });

  it("every built action passes actionSchema", () => {
    const built = [
      actions.speak(SID, "x", { user_input_timeout_seconds: 8 }),
      actions.hangup(SID),
      actions.bargeIn(SID),
      actions.sendSms(SID, "4915112345678", "m"),
      actions.transfer(SID, { target_phone_number: "4921112345600", caller_id_name: "S", caller_id_number: "4921112345678", timeout: 30 }),
    ];
    for (const a of built) expect(actionSchema.parse(a)).toEqual(a);
  });
});

describe("action builders refuse invalid actions with InvalidActionError", () => {
  it.each([
    ["+49 151 1234", "spaces and too short"],
    ["+49 151 12345678", "spaces"],
    ["0151 12345678", "national format with a space"],
    ["015112345678", "national format (leading 0)"],
    ["0151-1234-5678", "dashes"],
    ["+4915112345678", "leading + (builder wants digits without +)"],
    ["491511", "too short"],
    ["4915112345678901", "too long (16 digits)"],
    ["", "empty"],
    ["49151abc5678", "letters"],
  ])("send_sms with phone_number %j (%s)", (phone) => {
    const err = refused(() => actions.sendSms(SID, phone, "Hallo"));
    expect(err.name).toBe("InvalidActionError");
    expect(err.message).toContain("send_sms");
    expect(err.message).toContain("phone_number");
  });

  it("send_sms with an empty message names `message`", () => {
    const err = refused(() => actions.sendSms(SID, "4915112345678", ""));
    expect(err.message).toContain("send_sms");
    expect(err.message).toContain("message");
  });

  it("send_sms with an empty session id names `session_id`", () => {
    expect(refused(() => actions.sendSms("", "4915112345678", "m")).message).toContain("session_id");
  });

  it("speak with empty text", () => {
    const err = refused(() => actions.speak(SID, ""));
    expect(err.message).toContain("speak");
    expect(err.message).toContain("text");
  });

  it.each([3, 4, 121, 200, 30.5, 0, -1])("transfer timeout %s", (timeout) => {
    const err = refused(() =>
      actions.transfer(SID, { target_phone_number: "4921112345600", caller_id_name: "Support", caller_id_number: "4921112345678", timeout }),
    );
    expect(err.message).toContain("transfer");
    expect(err.message).toContain("timeout");
  });

  it("transfer to a '+' or national number names target_phone_number", () => {
    for (const target of ["+4921112345600", "0211 12345600"]) {
      const err = refused(() => actions.transfer(SID, { target_phone_number: target, caller_id_name: "S", caller_id_number: "4921112345678" }));
      expect(err.message).toContain("target_phone_number");
    }
  });

  it("transfer with an empty caller_id_name", () => {
    const err = refused(() => actions.transfer(SID, { target_phone_number: "4921112345600", caller_id_name: "", caller_id_number: "4921112345678" }));
    expect(err.message).toContain("caller_id_name");
  });

  it.each([0, 101, 2.5])("barge_in minimum_characters %s", (minimum_characters) => {
    const err = refused(() => actions.speak(SID, "Hallo", { barge_in: { strategy: "minimum_characters", minimum_characters } }));
    expect(err.message).toContain("barge_in.minimum_characters");
  });

  it("barge_in allow_after_ms out of range", () => {
    expect(refused(() => actions.speak(SID, "x", { barge_in: { strategy: "immediate", allow_after_ms: 10001 } })).message).toContain("allow_after_ms");
    expect(refused(() => actions.speak(SID, "x", { barge_in: { strategy: "immediate", allow_after_ms: -1 } })).message).toContain("allow_after_ms");
  });

  it("unknown barge-in strategy", () => {
    const opts = { barge_in: { strategy: "sometimes" } } as unknown as SpeakOptions;
    expect(refused(() => actions.speak(SID, "x", opts)).message).toContain("barge_in.strategy");
  });

  it("user_input_timeout_seconds 0, negative or above 600", () => {
    for (const s of [0, -5, 601]) {
      expect(refused(() => actions.speak(SID, "x", { user_input_timeout_seconds: s })).message).toContain("user_input_timeout_seconds");
    }
  });

  it("vad outside 150-2000", () => {
    for (const ms of [149, 2001]) expect(refused(() => actions.speak(SID, "x", { vad: { end_of_turn_silence_ms: ms } })).message).toContain("vad");
  });

  it("an unknown tts provider", () => {
    const opts = { tts: { provider: "polly" } } as unknown as SpeakOptions;
    expect(refused(() => actions.speak(SID, "x", opts)).message).toContain("tts");
  });

  it("an unknown option key sneaking into speak (strict)", () => {
    const opts = { end_of_conversation: true } as unknown as SpeakOptions;
    expect(refused(() => actions.speak(SID, "x", opts)).message).toMatch(/end_of_conversation/);
  });

  it("hangup with an empty session id", () => {
    expect(() => actions.hangup("")).toThrow(InvalidActionError);
  });
});

describe("actionSchema is strict and protocol-shaped", () => {
  it.each([
    ["speak", { type: "speak", session_id: SID, text: "x", extra: 1 }],
    ["speak with end_of_conversation", { type: "speak", session_id: SID, text: "x", end_of_conversation: true }],
    ["send_sms", { type: "send_sms", session_id: SID, phone_number: "4915112345678", message: "m", sender: "X" }],
    ["transfer with destination", { type: "transfer", session_id: SID, target_phone_number: "4921112345600", caller_id_name: "S", caller_id_number: "4921112345678", destination: "x" }],
    ["hangup with reason", { type: "hangup", session_id: SID, reason: "bye" }],
    ["barge_in with text", { type: "barge_in", session_id: SID, text: "x" }],
    ["audio with url", { type: "audio", session_id: SID, audio: "UklGR", url: "http://x" }],
  ])("rejects extra fields: %s", (_label, action) => {
    expect(actionSchema.safeParse(action).success).toBe(false);
  });

  it("an unknown key inside the barge_in config object is stripped, never sent", () => {
    const r = speakActionSchema.safeParse({ type: "speak", session_id: SID, text: "x", barge_in: { strategy: "none", foo: 1 } });
    // The config objects inside actions are not strict; the unknown key is dropped, never sent.
    expect(r.success).toBe(true);
    expect(r.success && r.data.barge_in).toEqual({ strategy: "none" });
  });

  it("speak needs exactly one of text and ssml", () => {
    expect(actionSchema.safeParse({ type: "speak", session_id: SID }).success).toBe(false);
    expect(actionSchema.safeParse({ type: "speak", session_id: SID, text: "x", ssml: "<speak>x</speak>" }).success).toBe(false);
    expect(actionSchema.safeParse({ type: "speak", session_id: SID, ssml: "<speak>x</speak>" }).success).toBe(true);
  });

  it("rejects actions without session_id or with an unknown type", () => {
    expect(actionSchema.safeParse({ type: "hangup" }).success).toBe(false);
    expect(actionSchema.safeParse({ type: "configure_voice_to_voice", session_id: SID }).success).toBe(false);
    expect(actionSchema.safeParse({ type: "end_call", session_id: SID }).success).toBe(false);
  });

  it("mix_audio needs audio unless stop is true; volume 0-1", () => {
    expect(actionSchema.safeParse({ type: "mix_audio", session_id: SID }).success).toBe(false);
    expect(actionSchema.safeParse({ type: "mix_audio", session_id: SID, stop: true }).success).toBe(true);
    expect(actionSchema.safeParse({ type: "mix_audio", session_id: SID, audio: "UklGR", volume: 0.5 }).success).toBe(true);
    expect(actionSchema.safeParse({ type: "mix_audio", session_id: SID, audio: "UklGR", volume: 1.5 }).success).toBe(false);
  });

  it("configure_transcription: upper-case providers, 1-4 languages", () => {
    expect(actionSchema.safeParse({ type: "configure_transcription", session_id: SID, provider: "DEEPGRAM", languages: ["de-DE"] }).success).toBe(true);
    expect(actionSchema.safeParse({ type: "configure_transcription", session_id: SID, provider: "azure" }).success).toBe(false);
    expect(actionSchema.safeParse({ type: "configure_transcription", session_id: SID, languages: [] }).success).toBe(false);
    expect(actionSchema.safeParse({ type: "configure_transcription", session_id: SID, languages: ["de", "en", "fr", "it", "es"] }).success).toBe(false);
  });

  it("aiFlowNumberSchema: E.164 digits without '+', 7-15 digits, no leading 0", () => {
    for (const ok of ["4915112345678", "1234567", "123456789012345"]) expect(aiFlowNumberSchema.safeParse(ok).success).toBe(true);
    for (const bad of ["+4915112345678", "015112345678", "123456", "1234567890123456", "49 151 12345678", ""]) {
      expect(aiFlowNumberSchema.safeParse(bad).success).toBe(false);
    }
  });

  it("the per-type schemas agree with the union", () => {
    const sms = { type: "send_sms", session_id: SID, phone_number: "4915112345678", message: "m" };
    expect(sendSmsActionSchema.safeParse(sms).success).toBe(true);
    expect(transferActionSchema.safeParse(sms).success).toBe(false);
    expect(actionSchema.safeParse(sms).success).toBe(true);
  });
});

describe("builder-made actions are validated once", () => {
  it("a built action is frozen, deeply, and passes checkAction without a second parse", () => {
    const a = actions.speak("s1", "Hallo", { barge_in: { strategy: "minimum_characters", minimum_characters: 3 } });
    expect(Object.isFrozen(a)).toBe(true);
    expect(Object.isFrozen(a.barge_in)).toBe(true);
    expect(isBuiltAction(a)).toBe(true);
    expect(checkAction(a)).toEqual({ success: true });
    expect(() => ((a as { text: string }).text = "x")).toThrow(TypeError);
  });

  it("anything not made by a builder is parsed", () => {
    const sms = actions.sendSms("s1", "4915112345678", "Hallo");
    expect(isBuiltAction({ ...sms })).toBe(false);
    expect(checkAction({ ...sms, phone_number: "+49 151" })).toMatchObject({ success: false });
  });

  it("options from config are not frozen with the action", () => {
    const tts = { provider: "azure" as const, language: "de-DE", voice: "v" };
    expect(Object.isFrozen(actions.speak("s1", "Hallo", { tts }).tts)).toBe(true);
    expect(Object.isFrozen(tts)).toBe(false);
  });
});
