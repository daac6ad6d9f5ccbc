/**
 * The consent rules checked from the caller's side: only from what the caller said and what it
 * heard (lines played to their end), never from the service's ledger or state.
 *   - An SMS only after the caller heard, to its end, a consent question naming that number, and
 *     answered it with a clear yes as the next thing it said, with nothing said after the yes
 *     (silence, sipgate's user_input_timeout, says nothing).
 *   - No SMS after the caller said no to a consent question for that number.
 *   - At most one SMS per yes.
 */

export type CallerEntry =
  /** A line the caller heard; `complete`: played to its end (not barged into). */
  | { kind: "heard"; text: string; complete: boolean }
  | { kind: "said"; text: string }
  /** The caller said nothing until the input timeout. */
  | { kind: "silence" }
  | { kind: "sms"; to: string };

export const CLEAR_YES = /^\s*ja\b/i;
export const CLEAR_NO = /^\s*nein\b/i;

/** The digits of a number as spoken in Germany: 4915112345678 → 015112345678 (other countries: as given). */
export function nationalDigits(e164: string): string {
  return e164.startsWith("49") ? `0${e164.slice(2)}` : e164;
}

/**
 * The configured consent question (consent.question, `{business_name}` filled in) as the caller
 * hears it: the words around `{number}` exactly, and in between the number read out (digits in groups).
 */
export class ConsentQuestion {
  private readonly before: string;
  private readonly after: string;

  constructor(template: string, businessName: string) {
    const [before, after] = template.replaceAll("{business_name}", businessName).split("{number}");
    this.before = before!;
    this.after = after ?? "";
  }

  /** The number (national digits) a heard line asks about, or undefined: it is not the consent question. */
  numberAskedIn(text: string): string | undefined {
    if (!text.startsWith(this.before) || !text.endsWith(this.after) || text.length <= this.before.length + this.after.length) return undefined;
    const middle = text.slice(this.before.length, text.length - this.after.length);
    return /^[\d\s,.-]+$/.test(middle) ? middle.replace(/\D/g, "") : undefined;
  }

  isFor(text: string, number: string): boolean {
    return this.numberAskedIn(text) === nationalDigits(number);
  }
}

/** A transcript in one line, for a report: H heard (h: cut off), S said, … silence, SMS. */
export function transcriptLine(entries: CallerEntry[]): string {
  return entries.map((e) => (e.kind === "heard" ? `${e.complete ? "H" : "h"}:${e.text.slice(0, 40)}` : e.kind === "said" ? `S:${e.text}` : e.kind === "silence" ? "…" : `SMS:${e.to}`)).join(" | ");
}

/** Every rule broken in one call's transcript, in words (empty: none). */
export function consentViolations(entries: CallerEntry[], question: ConsentQuestion): string[] {
  const problems: string[] = [];
  /** The yes that may still cover one SMS, and the number its question named. */
  let openYes: { number: string; at: number } | undefined;
  const declined = new Set<string>();
  let lastHeard: Extract<CallerEntry, { kind: "heard" }> | undefined;
  entries.forEach((e, i) => {
    if (e.kind === "heard") {
      lastHeard = e;
      return;
    }
    // Silence (sipgate's user_input_timeout) says nothing: a yes followed only by silence stands.
    if (e.kind === "silence") return;
    if (e.kind === "said") {
      // Anything said after a yes leaves it unevaluated as far as the caller knows: it no longer covers a send.
      openYes = undefined;
      if (lastHeard?.complete) {
        const asked = question.numberAskedIn(lastHeard.text);
        if (asked && CLEAR_YES.test(e.text)) openYes = { number: asked, at: i };
        if (asked && CLEAR_NO.test(e.text)) declined.add(asked);
      }
      return;
    }
    const to = nationalDigits(e.to);
    if (declined.has(to)) problems.push(`SMS to ${e.to} after the caller said no to it (entry ${i})`);
    else if (!openYes) problems.push(`SMS to ${e.to} with no clear yes as the caller's last words to a fully heard consent question (entry ${i})`);
    else if (openYes.number !== to) problems.push(`SMS to ${e.to}, but the question the caller said yes to named another number (entry ${i})`);
    // One SMS per yes.
    openYes = undefined;
  });
  return problems;
}
