import { spokenToDialString } from "../src/phone/spoken.js";
import type { ChatBody, ScriptedReply } from "../test/support/fakeOpenAI.js";

/**
 * The local model server's answers in the peer comparison (peerCompare.ts): one deterministic
 * policy for every design, keyed only on what any chat client sends — the last message (the
 * caller's words or a tool result), the tools offered and the tool calls already in the
 * history. Neither design gets answers tailored to it: the same words with the same tools get
 * the same answer, so requests and tokens differ only by how each design asks.
 *
 *   caller's words: goodbye → end_call; a number → collect_phone_number; a first SMS request →
 *     start_sms_flow (the slot by topic); yes / no → record_consent; anything else → a short text
 *   a tool result: record_consent(true) → send_confirmation_sms when offered (a design without a
 *     code step for the send needs the model to send); any other result → say it (its text)
 */

const YES = /\b(ja|gerne?|bitte|genau|okay|klar|yes|please|sure)\b/i;
const NO = /\b(nein|nicht|no|don't)\b/i;
const WANTS_SMS = /\b(sms|text|schick\w*|send\w*|message|nachricht)\b/i;
const GOODBYE = /\b(tschüss|tschüs|wiederhören|bye|goodbye|das war'?s|that'?s all)\b/i;
const TOPICS: Record<string, RegExp> = {
  opening_hours: /öffnungszeit|opening|hours/i,
  address: /adresse|address/i,
  booking_link: /termin|link|book/i,
};

type Message = ChatBody["messages"][number];

/** Six digits or more, read as the service reads spoken numbers. */
const hasNumber = (text: string) => spokenToDialString(text).replace("+", "").length >= 6;

/** The name of the tool whose result `msg` is, from the assistant message that called it. */
function toolNameOf(messages: Message[], msg: Message): { name: string; args: string } | undefined {
  for (const m of messages) for (const c of m.tool_calls ?? []) if (c.id === msg.tool_call_id) return { name: c.function.name, args: c.function.arguments };
  return undefined;
}

/** start_sms_flow's arguments: each enum slot by the topic the caller named, else its first option. */
function slotArgs(body: ChatBody, text: string): Record<string, string> {
  const spec = body.tools?.find((t) => t.function.name === "start_sms_flow");
  const props = (spec?.function.parameters.properties ?? {}) as Record<string, { enum?: string[] }>;
  const args: Record<string, string> = {};
  for (const [slot, p] of Object.entries(props)) {
    const options = p.enum ?? [];
    args[slot] = options.find((o) => TOPICS[o]?.test(text)) ?? options[0] ?? "";
  }
  return args;
}

export function peerPolicy(delayMs: number) {
  return (body: ChatBody): ScriptedReply => {
    const offered = new Set((body.tools ?? []).map((t) => t.function.name));
    const messages = body.messages;
    const last = messages.at(-1);
    const call = (name: string, args: Record<string, unknown> = {}): ScriptedReply => ({ kind: "message", toolCalls: [{ name, arguments: args }], delayMs });
    const say = (text: string): ScriptedReply => ({ kind: "message", text, delayMs });
    if (last?.role === "tool") {
      const tool = toolNameOf(messages, last);
      if (tool?.name === "record_consent" && /"consented":\s*true/.test(tool.args) && offered.has("send_confirmation_sms")) return call("send_confirmation_sms");
      return say(String(last.content ?? ""));
    }
    const text = last?.role === "user" ? String(last.content ?? "") : "";
    const called = new Set(messages.flatMap((m) => m.tool_calls ?? []).map((c) => c.function.name));
    if (GOODBYE.test(text) && offered.has("end_call")) return call("end_call");
    if (hasNumber(text) && offered.has("collect_phone_number")) return call("collect_phone_number", { phone_number: text });
    if (WANTS_SMS.test(text) && offered.has("start_sms_flow") && !called.has("start_sms_flow")) return call("start_sms_flow", slotArgs(body, text));
    if (offered.has("record_consent") && (NO.test(text) || YES.test(text))) return call("record_consent", { consented: !NO.test(text) });
    return say(/[äöüß]|\b(ich|sie|und)\b/i.test(text) ? "Gern. Kann ich sonst noch helfen?" : "Sure. Anything else?");
  };
}
