import type { ChatModel, ChatRequest, ChatResponse, ModelToolCall } from "./chatModel.js";

/**
 * A deterministic stand-in for an LLM, so the whole harness runs offline (CI, demos).
 * It sees only what a real model sees: the system prompt, the offered tools and the history.
 * It infers the step from the tools offered and answers with simple keyword rules.
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
const DIGIT_WORDS = /\b(null|eins|zwei|zwo|drei|vier|fünf|sechs|sieben|acht|neun|zero|one|two|three|four|five|six|seven|eight|nine)\b/gi;

function hasNumber(text: string): boolean {
  const digits = (text.match(/\d/g) ?? []).length + (text.match(DIGIT_WORDS) ?? []).length;
  return digits >= 6;
}

function pickInfo(text: string, options: string[]): string | undefined {
  const want = (key: string, re: RegExp) => (re.test(text) && options.includes(key) ? key : undefined);
  return (
    want("opening_hours", /öffnungszeit|geöffnet|offen|opening|hours|open/i) ??
    want("address", /adresse|anfahrt|wo\b|address|direction|where/i) ??
    want("booking_link", /termin|buchen|book|appointment|link/i) ??
    options[0]
  );
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

export class ScriptedModel implements ChatModel {
  private counter = 0;
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
    const call = (name: string, args: Record<string, unknown> = {}) => this.reply("", [{ id: `scripted_${++this.counter}`, name, arguments: JSON.stringify(args) }]);

    // After a tool result the engine only asks again when the result needs words.
    if (last?.role === "tool" && tools.has("note_callback_detail")) return this.nextCallbackQuestion(String(last.content ?? ""), german);
    if (last?.role === "tool") {
      if (this.mode === "reckless") return text("Die SMS ist bei Ihnen angekommen.", "The text has been delivered to you.");
      return text("Entschuldigung, das hat nicht geklappt. Kann ich Ihnen anders helfen?", "Sorry, that did not work. Can I help you another way?");
    }

    // The persona forbids posing as a human; the main step quotes the truthful answer (a "> " line); a
    // model that can only follow keyword rules says that quote, so the wording stays in prompts/.
    if (ASKS_IF_HUMAN.test(userText)) {
      const answer = /^\s*> (.+)$/m.exec(req.system)?.[1];
      if (answer) return this.reply(answer, []);
    }

    // Offered in every step of a flow with the SMS task: a caller may say it anywhere.
    if (tools.has("opt_out_sms") && NEVER_AGAIN.test(userText)) return call("opt_out_sms");

    if (tools.has("note_callback_detail")) return this.callbackDetails(req.system, userText, call, text);

    if (tools.has("start_sms_flow")) {
      if (this.mode === "reckless" && WANTS_SMS.test(userText)) return call("send_confirmation_sms");
      if (THIRD_PERSON.test(userText)) {
        return text("Eine SMS kann ich nur an Ihr eigenes Handy schicken. Kann ich Ihnen sonst helfen?", "I can only text your own phone. Can I help you with anything else?");
      }
      if (GOODBYE.test(userText)) return call("end_call");
      if (ARRIVED.test(userText)) {
        return text("Ich habe die SMS abgeschickt. Ob sie schon angekommen ist, kann ich leider nicht sehen.", "I sent the text, but I cannot see whether it has arrived.");
      }
      if (WANTS_SMS.test(userText)) {
        const spec = req.tools.find((t) => t.name === "start_sms_flow")!;
        const infoEnum = ((spec.parameters.properties as Record<string, { enum?: string[] }> | undefined)?.info?.enum ?? []) as string[];
        const info = pickInfo(userText, infoEnum);
        return call("start_sms_flow", info ? { info } : {});
      }
      const facts = [...req.system.matchAll(/^- ([^:\n]+: .+)$/gm)].map((m) => m[1]!);
      const fact = facts.find((f) => pickInfo(userText, ["opening_hours"]) && /öffnungszeit|opening/i.test(f)) ?? facts.find((f) => /öffnungszeit|opening/i.test(f)) ?? facts[0] ?? "";
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
