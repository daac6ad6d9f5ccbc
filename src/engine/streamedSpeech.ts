import type { GuardDecision } from "../core/turnRecord.js";

/**
 * Turns streamed model text into spoken sentences: each complete sentence is checked (no
 * false claims) and spoken at once, so the caller hears the first sentence while the model
 * is still writing the rest. After a refused sentence nothing more of this answer is spoken.
 */
export class StreamedSpeech {
  private buffer = "";
  private refused = false;
  readonly spoken: string[] = [];

  constructor(
    private readonly check: (sentence: string) => GuardDecision,
    private readonly speak: (sentence: string) => void,
    private readonly onRefused: (decision: GuardDecision) => void,
  ) {}

  push(delta: string): void {
    if (this.refused) return;
    this.buffer += delta;
    // A sentence ends at . ! ? followed by white space; "8.30" or "z.B." without a space do not split.
    for (let m = /^([\s\S]*?[.!?])\s+/.exec(this.buffer); m; m = /^([\s\S]*?[.!?])\s+/.exec(this.buffer)) {
      this.buffer = this.buffer.slice(m[0].length);
      this.say(m[1]!);
      if (this.refused) return;
    }
  }

  /** The model finished: whatever is left is the last sentence. */
  finish(): void {
    if (!this.refused) this.say(this.buffer);
    this.buffer = "";
  }

  get text(): string {
    return this.spoken.join(" ");
  }

  private say(raw: string): void {
    const sentence = raw.trim();
    if (!sentence) return;
    const verdict = this.check(sentence);
    if (!verdict.allowed) {
      this.refused = true;
      this.onRefused(verdict);
      return;
    }
    this.spoken.push(sentence);
    this.speak(sentence);
  }
}
