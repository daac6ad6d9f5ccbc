import type { Language } from "../config/schema.js";
import type { CallState } from "../engine/state.js";
import type { GuardDecision } from "../engine/turnRecord.js";

/**
 * The agent may say an SMS was sent only when one was; it may never say one was delivered
 * (AI Flow's send is fire-and-forget). These patterns catch such claims in model text.
 * Sentences with a negation ("I can't see whether it arrived") are truthful and pass.
 */
const PATTERNS: Record<Language, { sent: RegExp[]; delivered: RegExp[]; negation: RegExp }> = {
  "de-DE": {
    sent: [
      /\b(habe|hab|haben)\b[^.?!]*\b(geschickt|gesendet|verschickt|versendet|abgeschickt|rausgeschickt)\b/i,
      /\b(ist|wurde|wird gerade)\b[^.?!]*\b(geschickt|gesendet|verschickt|versendet|abgeschickt|unterwegs)\b/i,
    ],
    delivered: [/\b(zugestellt|angekommen|eingetroffen|erhalten)\b/i],
    negation: /\b(nicht|kein|keine|keinen|leider|ob)\b/i,
  },
  "en-US": {
    sent: [/\b(i|we)('ve| have)?\s+(just\s+)?(sent|texted)\b/i, /\b(sms|text|message)\b[^.?!]*\b(has been|was|is)\s+(sent|on its way)\b/i],
    delivered: [/\b(delivered|arrived|received)\b/i],
    negation: /\b(not|n't|cannot|whether|if)\b/i,
  },
};

function sentences(text: string): string[] {
  return text.split(/(?<=[.?!])\s+/).filter(Boolean);
}

export function checkModelUtterance(text: string, state: CallState, language: Language): GuardDecision {
  const p = PATTERNS[language];
  const anySent = state.sms.sent.some((s) => !s.failed);
  for (const sentence of sentences(text)) {
    if (sentence.trim().endsWith("?") || p.negation.test(sentence)) continue;
    if (p.delivered.some((r) => r.test(sentence))) {
      return { subject: "utterance", allowed: false, reason: "false_claim_delivered", detail: sentence };
    }
    if (!anySent && p.sent.some((r) => r.test(sentence))) {
      return { subject: "utterance", allowed: false, reason: "false_claim_sent", detail: sentence };
    }
  }
  return { subject: "utterance", allowed: true, reason: "ok" };
}
