import type { AiFlowAction } from "../src/aiflow/actions.js";
import { FLOW_NUMBER_FOR_SIM, SIM_CALLER } from "./numbers.js";
import type { SimClock } from "./clock.js";
import type { Rng } from "./rng.js";
import type { Heard, HeardLine, Said } from "./transcript.js";

export interface CallerProfile {
  wantsSms: boolean;
  /** How they answer the consent question. */
  answer: "yes" | "no" | "unclear" | "number";
  /** Chance they speak while a holding line plays or right after it. */
  overHolding: number;
  /** Chance they start talking before a line has finished playing. */
  bargeIn: number;
  /** Chance they say nothing after a line (sipgate then sends user_input_timeout). */
  silent: number;
  /** Says "Nein, doch nicht!" shortly after their yes. */
  changesMind: boolean;
  /** Virtual ms at which they hang up whatever happens. */
  hangsUpAt?: number;
}

/** Lines the caller recognises by their words (what any caller would). */
export const HOLDING = /^Einen Moment bitte/;
export const APOLOGY = /^Entschuldigung, das dauert gerade zu lange/;
export const STORE_APOLOGY = /^Entschuldigung, ich habe gerade eine technische Störung\. Bitte sagen Sie das gleich/;
export const QUESTION = /^Darf ich Ihnen die Informationen per SMS an die Nummer (.+?) (?:schicken|senden)/;

const MS_PER_CHAR = 70;
const MAX_UTTERANCES = 12;

interface Io {
  send(event: Record<string, unknown>): void;
  trace(line: string): void;
}

/**
 * The simulated caller and the sipgate side of the call: plays each delivered line at a caller's
 * pace (70 ms a character), sends assistant_speech_ended and user_input_timeout as sipgate does,
 * and reacts to what was heard: asks for the SMS, answers the consent question (sometimes before
 * it arrived, over a holding line, or over the question itself), changes their mind, goes silent,
 * hangs up.
 */
export class Caller {
  readonly said: Said[] = [];
  readonly heard: Heard[] = [];
  private callId = "";
  private ended = false;
  private playingUntil = 0;
  /** Bumped by every line delivered and every word said: a pending timeout or speech-ended that sees another value is stale. */
  private epoch = 0;
  private utterances = 0;
  private requested = false;
  private answeredQuestions = 0;

  constructor(
    private readonly p: CallerProfile,
    private readonly rng: Rng,
    private readonly clock: SimClock,
    private readonly io: Io,
  ) {}

  begin(callId: string, hangUpAt: number): void {
    this.callId = callId;
    this.event("session_start", {});
    this.clock.at(hangUpAt, () => this.hangUp());
  }

  private session() {
    return { id: this.callId, account_id: "1234567", phone_number: FLOW_NUMBER_FOR_SIM, direction: "inbound", from_phone_number: SIM_CALLER, to_phone_number: FLOW_NUMBER_FOR_SIM };
  }

  private event(type: string, fields: Record<string, unknown>): void {
    this.said.push({ at: this.clock.now(), type, ...(typeof fields.text === "string" ? { text: fields.text, bargedIn: fields.barged_in === true } : {}) });
    this.io.send({ type, ...fields, session: this.session() });
  }

  private hangUp(): void {
    if (this.ended) return;
    this.ended = true;
    this.io.trace("caller hangs up");
    this.event("session_end", {});
  }

  /** An action reached sipgate for this call. */
  deliver(a: AiFlowAction): void {
    const t = this.clock.now();
    if (a.type === "send_sms") {
      this.heard.push({ kind: "send_sms", number: a.phone_number, deliveredAt: t });
      return;
    }
    if (a.type === "hangup" || a.type === "transfer") {
      this.heard.push({ kind: a.type, deliveredAt: t });
      if (!this.ended) {
        this.ended = true;
        this.clock.at(t + 50, () => this.event("session_end", {}));
      }
      return;
    }
    if (a.type !== "speak" || this.ended) return;
    const text = a.text ?? "";
    const start = Math.max(t, this.playingUntil);
    const line: HeardLine = { kind: "speak", text, deliveredAt: t, start, end: start + MS_PER_CHAR * text.length };
    this.heard.push(line);
    this.playingUntil = line.end;
    const epoch = ++this.epoch;
    if (HOLDING.test(text) && this.rng.chance(this.p.overHolding)) {
      // Impatient: talks while the holding line plays, or right after it.
      this.clock.at(t + this.rng.int(100, 2_500), () => this.speak(this.answerWords()));
    }
    if (!HOLDING.test(text) && this.rng.chance(this.p.bargeIn)) {
      // Talks over the line (sipgate reports a barge-in): over the question, with their answer.
      this.clock.at(start + this.rng.int(0, line.end - start), () => this.speak(QUESTION.test(text) ? this.answerWords() : "Moment, noch eine Frage."));
    }
    this.clock.at(line.end, () => this.played(line, epoch));
    const timeout = a.user_input_timeout_seconds;
    if (timeout !== undefined) {
      this.clock.at(line.end + timeout * 1000, () => {
        if (!this.ended && this.epoch === epoch) this.event("user_input_timeout", {});
      });
    }
  }

  /** A line finished playing (unless the caller cut it short). */
  private played(line: HeardLine, epoch: number): void {
    if (this.ended || line.cutAt !== undefined) return;
    if (this.epoch === epoch) this.clock.at(this.clock.now() + 20, () => !this.ended && this.epoch === epoch && this.event("assistant_speech_ended", {}));
    if (this.epoch !== epoch) return; // more is still to come: react to the last line
    this.react(line.text);
  }

  private react(text: string): void {
    if (HOLDING.test(text)) return;
    if (this.rng.chance(this.p.silent)) return;
    const soon = (words: string) => {
      this.clock.at(this.clock.now() + this.rng.int(300, 2_500), () => this.speak(words));
    };
    if (QUESTION.test(text)) {
      this.answeredQuestions++;
      soon(this.answeredQuestions > 2 ? "Ja." : this.answerWords());
      if (this.p.changesMind && this.p.answer === "yes") this.clock.at(this.clock.now() + this.rng.int(1_000, 4_000), () => this.speak("Nein, doch nicht!"));
      return;
    }
    if (APOLOGY.test(text)) return soon(this.answerWords());
    if (this.p.wantsSms && !this.requested) {
      this.requested = true;
      return soon("Schicken Sie mir bitte die Öffnungszeiten per SMS.");
    }
    if (this.rng.chance(0.5)) soon(this.rng.pick(["Danke, tschüss.", "Wie sind Ihre Öffnungszeiten?", "Danke."]));
  }

  private answerWords(): string {
    switch (this.p.answer) {
      case "yes":
        return this.rng.pick(["Ja, gerne.", "Ja.", "Ja, bitte."]);
      case "no":
        return this.rng.pick(["Nein, lieber nicht.", "Nein."]);
      case "unclear":
        return this.rng.pick(["Hm, ich weiß nicht.", "Ja."]);
      case "number":
        return this.answeredQuestions > 1 ? "Ja, gerne." : "Bitte an die 0170 1234567.";
    }
  }

  private speak(words: string): void {
    if (this.ended) return;
    if (this.utterances >= MAX_UTTERANCES) return this.hangUp();
    this.utterances++;
    const t = this.clock.now();
    const bargedIn = t < this.playingUntil;
    if (bargedIn) {
      // sipgate stops playback: the rest of what was queued is never heard.
      for (const h of this.heard) if (h.kind === "speak" && h.end > t && h.cutAt === undefined) h.cutAt = t;
      this.playingUntil = t;
    }
    this.epoch++;
    // Unique words, so the oracle can tell which utterance a model request answered.
    this.event("user_speak", { text: `${words} [${this.utterances}]`, barged_in: bargedIn });
  }
}
