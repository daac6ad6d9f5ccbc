/** Event builders for tests, shaped like sipgate's current payloads (§6 of the protocol reference). */

export const CALLER = "4915112345678";
export const FLOW_NUMBER = "4921112345678";

export interface SessionOpts {
  from?: string;
  to?: string;
  direction?: "inbound" | "outbound";
}

export function session(id: string, o: SessionOpts = {}) {
  return {
    id,
    account_id: "1234567",
    phone_number: FLOW_NUMBER,
    direction: o.direction ?? "inbound",
    from_phone_number: o.from ?? CALLER,
    to_phone_number: o.to ?? FLOW_NUMBER,
  };
}

export const ev = {
  start: (id: string, o?: SessionOpts) => ({ type: "session_start", session: session(id, o) }),
  speak: (id: string, text: string, bargedIn = false, o?: SessionOpts) => ({ type: "user_speak", text, barged_in: bargedIn, session: session(id, o) }),
  dtmf: (id: string, digit: string) => ({ type: "dtmf_received", digit, session: session(id) }),
  timeout: (id: string) => ({ type: "user_input_timeout", session: session(id) }),
  speechEnded: (id: string) => ({ type: "assistant_speech_ended", session: session(id) }),
  assistantSpeak: (id: string, text: string) => ({ type: "assistant_speak", text, duration_ms: 1200, speech_started_at: 1764000000123, session: session(id) }),
  smsFailed: (id: string, reason: string, recipient = CALLER) => ({ type: "sms_failed", recipient, reason, message: "scripted failure", session: session(id) }),
  end: (id: string) => ({ type: "session_end", session: session(id) }),
};
