import { LANGUAGES, type Language } from "../../config/schema.js";
import type { SmsCallState as CallState } from "./state.js";
import type { GuardDecision } from "../../core/turnRecord.js";

/**
 * The agent may say an SMS was sent only while one stands (sent, not failed); it may never
 * say one was delivered (AI Flow's send is fire-and-forget). These patterns catch such
 * claims in model text, in every supported language whatever the call's language, clause
 * by clause: a negation only clears its own clause ("ob sie angekommen ist, kann ich nicht
 * sehen" is truthful), so "Kein Problem, ich habe die SMS geschickt" is still caught.
 */
const PATTERNS: Record<Language, { sent: RegExp[]; delivered: RegExp[]; negation: RegExp }> = {
  "de-DE": {
    sent: [
      /\b(habe|hab|haben)\b.*\b(geschickt|gesendet|verschickt|versendet|abgeschickt|rausgeschickt|zugeschickt)\b/i,
      /\b(ist|sind|wurde|wurden|wird gerade)\b.*\b(geschickt|gesendet|verschickt|versendet|abgeschickt|unterwegs)\b/i,
    ],
    delivered: [/\b(zugestellt|angekommen|eingetroffen|erhalten)\b/i],
    negation: /\b(nicht|kein|keine|keinen|ob)\b/i,
  },
  "en-US": {
    sent: [/\b(i|we)('ve| have)?\s+(just\s+|already\s+)?(sent|texted)\b/i, /\b(sms|text|message)\b.*\b(has been|was|is)\s+(sent|on its way)\b/i],
    delivered: [/\b(delivered|arrived|received)\b/i],
    negation: /\b(not|n't|cannot|whether|if)\b/i,
  },
};

function clauses(text: string): string[] {
  return text
    .split(/(?<=[.?!])\s+|[,;:–—]\s*|\s+(?:aber|but|und|and)\s+/i)
    .map((c) => c.trim())
    .filter(Boolean);
}

export function checkModelUtterance(text: string, state: CallState, _language: Language): GuardDecision<"ok" | "false_claim_delivered" | "false_claim_sent"> {
  const standing = state.sms.sent.some((s) => !s.failed);
  for (const clause of clauses(text)) {
    if (clause.endsWith("?")) continue;
    for (const lang of LANGUAGES) {
      const p = PATTERNS[lang];
      if (p.negation.test(clause)) continue;
      if (p.delivered.some((r) => r.test(clause))) return { subject: "utterance", allowed: false, reason: "false_claim_delivered", detail: clause };
      if (!standing && p.sent.some((r) => r.test(clause))) return { subject: "utterance", allowed: false, reason: "false_claim_sent", detail: clause };
    }
  }
  return { subject: "utterance", allowed: true, reason: "ok" };
}
