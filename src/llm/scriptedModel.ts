import { createHash } from "node:crypto";
import type { HistoryMessage } from "../core/callState.js";
import { spokenToDialString } from "../phone/spoken.js";
import type { ChatModel, ChatRequest, ChatResponse, ModelToolCall } from "./chatModel.js";

/**
 * A deterministic stand-in for an LLM, so the whole harness runs offline (CI, demos).
 * It sees only what a real model sees: the system prompt, the offered tools and the history.
 * It infers the step from the tools offered and answers with simple keyword rules; numbers it
 * reads with the service's own parser (src/phone/spoken.ts), so it understands what that does.
 *
 * `reckless` plays a bad model on purpose: it records consent at the first chance, tries
 * to send early and claims delivery, so the guards (and the eval report) have work to do.
 */

const YES = /\b(ja|jawohl|gerne?|bitte|okay|ok|passt|klar|yes|yeah|sure|please|go ahead|of course)\b/i;
const NO = /\b(nein|nee|nicht|keine?n?|lieber nicht|lass\w*|vergessen|no|nope|don't|do not|rather not|never mind|forget)\b/i;
const THIRD_PERSON = /\b(meine[rm]? (frau|mann|mutter|vater|tochter|sohn|freundin|freund|kollegin|kollege)|jemand anderem|my (wife|husband|mother|father|daughter|son|friend|colleague)|someone else|a friend)\b/i;
const WANTS_SMS = /\b(sms|text|texte?n?|schick\w*|send\w*|message|nachricht)\b/i;
const GOODBYE = /\b(tschüss|tschüs|auf wiederhören|wiederhören|ciao|bye|goodbye|das war'?s|that'?s all)\b/i;
const OTHER_NUMBER = /\b(andere[nr]? nummer|other number|different number|another number)\b/i;
const OWN_NUMBER = /\b(meine eigene|eigene nummer|meine nummer|diese nummer|my own|my number|this number)\b/i;
/** "Schicken Sie mir nie wieder eine SMS", "keine SMS mehr", "never text me again": the do-not-text list, not a plain no. */
const NEVER_AGAIN = /\b(nie wieder|keine sms mehr|never (text|send)|no more (texts?|sms))\b/i;
const ARRIVED = /\b(angekommen|erhalten|arrived|received|got it)\b/i;
/** "Bin ich mit einem Menschen verbunden?", "Sind Sie ein Roboter?", "Am I talking to a real person?" */
const ASKS_IF_HUMAN = /\b(mensch(en)?|echte[nr]? person|roboter|maschine|computer|bot|ki|human|real person|robot|machine|an ai)\b/i;
/** The call state line the persona shows after a "no" (tools/sms/task.ts, consentStatus). */
const DECLINED_STATUS = /: the caller declined or cancelled the SMS; final for this call$/m;
/** Tool results that refuse and say to help verbally instead (prompts/model-notes.md: "Refused: …", "Not sent: …"). */
const REFUSED_RESULT = /^(Refused|Not sent):/;

/**
 * What the scripted model says after a tool failed for a reason it cannot help (an "Error: …"
 * result). Exported so the eval harness counts it among the lines that tell a caller something
 * went wrong (evals/harness/errorLines.ts).
 */
export const SCRIPTED_APOLOGY = {
  de: "Entschuldigung, das hat nicht geklappt. Kann ich Ihnen anders helfen?",
  en: "Sorry, that did not work. Can I help you another way?",
} as const;

/** Six digits or more, read as the service reads numbers: digits, digit words, pairs ("achtundneunzig"), hundreds, corrections. */
function hasNumber(text: string): boolean {
  return spokenToDialString(text).replace("+", "").length >= 6;
}

/** What the caller asks about, by the same words in their request and in the business facts. */
const TOPICS: Record<string, RegExp> = {
  opening_hours: /öffnungszeit|geöffnet|offen|opening|hours|open/i,
  address: /adresse|anfahrt|wo\b|address|direction|where/i,
  booking_link: /termin|buchen|book|appointment|link/i,
};

function topicOf(text: string, options: string[]): string | undefined {
  return Object.keys(TOPICS).find((key) => options.includes(key) && TOPICS[key]!.test(text));
}

function pickInfo(text: string, options: string[]): string | undefined {
  return topicOf(text, options) ?? options[0];
}

/** The business facts of the step prompt ("- Öffnungszeiten: …"), not the call-state lines of the persona above it. */
function businessFacts(system: string): string[] {
  const step = /^(Aufgabe in diesem Schritt|Your task in this step)\b/m.exec(system);
  const text = step ? system.slice(step.index) : system;
  return [...text.matchAll(/^- (.+)$/gm)].map((m) => m[1]!).filter((f) => !/^\S+ \(/.test(f));
}

/** The fact about a topic (opening hours when none fits). */
function factAbout(system: string, topic: string | undefined): string {
  const facts = businessFacts(system);
  const re = TOPICS[topic ?? "opening_hours"] ?? TOPICS.opening_hours!;
  return facts.find((f) => re.test(f)) ?? facts.find((f) => TOPICS.opening_hours!.test(f)) ?? facts[0] ?? "";
}

/**
 * The step prompt's example answer ("> …" line) for the rule whose line before it matches
 * `rule`: the wording stays in prompts/, and the scripted model says what the prompt asks.
 */
function quotedAnswer(system: string, rule: RegExp): string | undefined {
  const lines = system.split("\n");
  for (let i = 1; i < lines.length; i++) {
    const quote = /^\s*> (.+)$/.exec(lines[i]!);
    if (quote && rule.test(lines[i - 1]!)) return quote[1]!;
  }
  return undefined;
}

/** The information the caller last asked to have texted (start_sms_flow's arguments in the history). */
function lastRequestedInfo(messages: HistoryMessage[]): string | undefined {
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i]!;
    if (m.role !== "assistant") continue;
    for (const c of m.tool_calls ?? []) {
      if (c.function.name !== "start_sms_flow") continue;
      try {
        const info = (JSON.parse(c.function.arguments) as { info?: unknown }).info;
        if (typeof info === "string") return info;
      } catch {
        // a broken call says nothing about what was wanted
      }
    }
  }
  return undefined;
}

/** The callback agent's details: the label in its step prompt → the field, and how the model asks for each. */
const CALLBACK_FIELD_OF: Record<string, string> = { Name: "name", Grund: "reason", Reason: "reason", Zeitraum: "time_window", "Time window": "time_window" };
const CALLBACK_QUESTIONS: Record<string, [string, string]> = {
  name: ["Wie ist Ihr Name?", "What is your name?"],
  reason: ["Worum geht es bei Ihrer Rückrufbitte?", "What is the callback about?"],
  time_window: ["Wann dürfen wir Sie zurückrufen?", "When may we call you back?"],
};

/** The caller's words without the usual lead-in ("Mein Name ist …", "Es geht um …"). */
function callbackValue(text: string): string {
  const v = text.replace(/^(nein,?\s*)?(mein name ist|ich heiße|ich bin|my name is|i am|it'?s about|es geht um|am besten|gern(e)?)\s+/i, "").replace(/[.!]+$/, "").trim();
  return v || text.trim();
}

/** The options start_sms_flow offers for `info`, from its JSON schema. */
function infoOptions(req: ChatRequest): string[] {
  const spec = req.tools.find((t) => t.name === "start_sms_flow");
  return ((spec?.parameters.properties as Record<string, { enum?: string[] }> | undefined)?.info?.enum ?? []) as string[];
}

export class ScriptedModel implements ChatModel {
  constructor(private readonly mode: "careful" | "reckless" = "careful") {}

  private lastUsage = { promptTokens: 0, completionTokens: 0 };

  async complete(req: ChatRequest): Promise<ChatResponse> {
    // Rough token counts (4 characters a token) so offline runs still report prompt size and cost.
    this.lastUsage = { promptTokens: Math.ceil(JSON.stringify([req.system, req.messages, req.tools]).length / 4), completionTokens: 12 };
    const german = /Antworte auf Deutsch/.test(req.system);
    const tools = new Set(req.tools.map((t) => t.name));
    const last = req.messages[req.messages.length - 1];
    const userText = [...req.messages].reverse().find((m) => m.role === "user")?.content ?? "";
    const text = (de: string, en: string) => this.reply(german ? de : en, []);
    // The same request always gets the same answer, ids included (a counter would differ between
    // two calls that start alike, and a cassette keyed by the request would keep only one of them);
    // a different history gets a different id, so ids stay unique within a call.
    const callId = `scripted_${createHash("sha256").update(JSON.stringify([req.system, req.messages])).digest("hex").slice(0, 12)}`;
    const call = (name: string, args: Record<string, unknown> = {}) => this.reply("", [{ id: callId, name, arguments: JSON.stringify(args) }]);

    // After a tool result the engine only asks again when the result needs words.
    if (last?.role === "tool" && tools.has("note_callback_detail")) return this.nextCallbackQuestion(String(last.content ?? ""), german);
    if (last?.role === "tool") {
      if (this.mode === "reckless") return text("Die SMS ist bei Ihnen angekommen.", "The text has been delivered to you.");
      // A refusal is no failure: the note says to help verbally (after a "no", what the prompt says then).
      if (REFUSED_RESULT.test(String(last.content ?? ""))) return this.helpVerbally(req, userText, german);
      return text(SCRIPTED_APOLOGY.de, SCRIPTED_APOLOGY.en);
    }

    // The persona forbids posing as a human; the step prompt quotes the truthful answer (a "> " line); a
    // model that can only follow keyword rules says that quote, so the wording stays in prompts/.
    if (ASKS_IF_HUMAN.test(userText)) {
      const answer = quotedAnswer(req.system, /mensch|human|real person|a person/i);
      if (answer) return this.reply(answer, []);
    }

    // Offered in every step of a flow with the SMS task: a caller may say it anywhere.
    if (tools.has("opt_out_sms") && NEVER_AGAIN.test(userText)) return call("opt_out_sms");

    if (tools.has("note_callback_detail")) return this.callbackDetails(req.system, userText, call, text);

    if (tools.has("start_sms_flow")) {
      // After a "no" the prompt asks for no second offer and no new start: the information by voice.
      const declined = DECLINED_STATUS.test(req.system);
      if (this.mode === "reckless" && WANTS_SMS.test(userText)) return call("send_confirmation_sms");
      if (THIRD_PERSON.test(userText)) {
        return text("Eine SMS kann ich nur an Ihr eigenes Handy schicken. Kann ich Ihnen sonst helfen?", "I can only text your own phone. Can I help you with anything else?");
      }
      if (GOODBYE.test(userText)) return call("end_call");
      if (ARRIVED.test(userText)) {
        return text("Ich habe die SMS abgeschickt. Ob sie schon angekommen ist, kann ich leider nicht sehen.", "I sent the text, but I cannot see whether it has arrived.");
      }
      if (WANTS_SMS.test(userText)) {
        if (declined) return this.helpVerbally(req, userText, german);
        const info = pickInfo(userText, infoOptions(req));
        return call("start_sms_flow", info ? { info } : {});
      }
      const fact = factAbout(req.system, topicOf(userText, Object.keys(TOPICS)));
      if (declined) return text(`Gern: ${fact}`, `Sure: ${fact}`);
      return text(`Gern: ${fact} Möchten Sie das auch per SMS?`, `Sure: ${fact} Would you like that by text as well?`);
    }

    if (tools.has("record_consent")) {
      if (this.mode === "reckless") return call("record_consent", { consented: true });
      if (THIRD_PERSON.test(userText) || GOODBYE.test(userText)) return call("record_consent", { consented: false });
      if (hasNumber(userText)) return call("collect_phone_number", { phone_number: userText });
      if (OTHER_NUMBER.test(userText)) return call("ask_for_other_number");
      if (NO.test(userText) && !/\bja\b|\byes\b/i.test(userText)) return call("record_consent", { consented: false });
      if (YES.test(userText)) return call("record_consent", { consented: true });
      return text("Ich schicke Ihnen die SMS nur, wenn Sie zustimmen.", "I only send the text if you agree.");
    }

    if (tools.has("send_confirmation_sms")) {
      if (hasNumber(userText)) return call("collect_phone_number", { phone_number: userText });
      if (OTHER_NUMBER.test(userText)) return call("ask_for_other_number");
      if (NO.test(userText)) return call("cancel_sms");
      if (YES.test(userText)) return call("send_confirmation_sms");
      return text("Soll ich es noch einmal versuchen?", "Shall I try again?");
    }

    if (tools.has("collect_phone_number")) {
      if (hasNumber(userText)) return call("collect_phone_number", { phone_number: userText });
      if (OWN_NUMBER.test(userText)) {
        const own = /(?:Nummer der anrufenden Person|Caller's number): (.+)/.exec(req.system)?.[1];
        if (own && !/unknown/.test(own)) return call("collect_phone_number", { phone_number: own });
      }
      if (NO.test(userText)) return call("cancel_sms");
      return text("Wie lautet die Handynummer?", "What is the mobile number?");
    }
    return text("Wie kann ich helfen?", "How can I help?");
  }

  /**
   * The information the caller wanted, by voice: after their "no", the prompt's example answer
   * for a later request comes first; the topic is the last one the caller spoke of ("schicken
   * Sie es doch per SMS"), else what they asked to have texted before.
   */
  private helpVerbally(req: ChatRequest, userText: string, german: boolean): ChatResponse {
    const topic = [userText, ...req.messages.filter((m) => m.role === "user").map((m) => m.content).reverse()].map((t) => topicOf(t, Object.keys(TOPICS))).find(Boolean) ?? lastRequestedInfo(req.messages);
    const fact = factAbout(req.system, topic);
    const afterNo = DECLINED_STATUS.test(req.system) ? quotedAnswer(req.system, /abgelehnt|declined/i) : undefined;
    if (afterNo) return this.reply(`${afterNo} ${fact}`.trim(), []);
    return this.reply(german ? `Gern: ${fact}` : `Sure: ${fact}`, []);
  }

  /**
   * The callback agent's collecting step: a detail read back and not yet confirmed is confirmed
   * or rejected by the caller's yes or no (anything else is taken as the corrected value); else
   * the caller's words are the first missing detail. Both are read from the step prompt's values.
   */
  private callbackDetails(system: string, userText: string, call: (name: string, args?: Record<string, unknown>) => ChatResponse, text: (de: string, en: string) => ChatResponse): ChatResponse {
    if (GOODBYE.test(userText)) return call("end_call");
    const pending = /^- (Name|Grund|Reason|Zeitraum|Time window): .*\(read back, not yet confirmed\)$/m.exec(system)?.[1];
    if (pending) {
      const field = CALLBACK_FIELD_OF[pending]!;
      if (NO.test(userText) && !/\bja\b|\byes\b/i.test(userText)) return call("confirm_callback_detail", { field, correct: false });
      if (YES.test(userText) || /\b(richtig|stimmt|genau|correct|right)\b/i.test(userText)) return call("confirm_callback_detail", { field, correct: true });
      return call("note_callback_detail", { field, value: callbackValue(userText) });
    }
    const missing = /(?:Es fehlt noch|Still missing): (.+)$/m.exec(system)?.[1] ?? "";
    const field = missing.split(",").map((f) => f.trim()).find((f) => f in CALLBACK_QUESTIONS);
    if (!field) {
      // The wrap-up: everything confirmed; "nein danke" ends the call like a goodbye.
      if (NO.test(userText)) return call("end_call");
      return text("Gern geschehen. Kann ich sonst noch etwas für Sie tun?", "You're welcome. Is there anything else I can do for you?");
    }
    return call("note_callback_detail", { field, value: callbackValue(userText) });
  }

  /** After a callback tool result: ask for what is missing next (or again, after a no). */
  private nextCallbackQuestion(result: string, german: boolean): ChatResponse {
    const again = /^The caller said the (\w+) is not right/.exec(result)?.[1];
    const next = again ?? /Still missing: (\w+)/.exec(result)?.[1];
    const q = next ? CALLBACK_QUESTIONS[next] : undefined;
    const [de, en] = q ?? ["Kann ich sonst noch etwas für Sie tun?", "Is there anything else I can do for you?"];
    return this.reply(german ? de : en, []);
  }

  private reply(text: string, toolCalls: ModelToolCall[]): ChatResponse {
    return { text, toolCalls, usage: this.lastUsage, model: `scripted-${this.mode}` };
  }
}
