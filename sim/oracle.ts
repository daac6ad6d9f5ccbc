import { APOLOGY, HOLDING, QUESTION, STORE_APOLOGY } from "./caller.js";
import { spokenToAiFlow } from "./numbers.js";
import type { HeardLine, Said, Transcript } from "./transcript.js";

/** One broken invariant, named, with what shows it. */
export interface Violation {
  invariant: Invariant;
  detail: string;
}

export type Invariant =
  | "send_without_heard_yes"
  | "send_after_no"
  | "send_before_verdict"
  | "sends_over_limit"
  | "answer_late"
  | "caller_left_waiting"
  | "ledger_disagrees"
  | "run_error";

/**
 * The invariants of "every SMS was wanted", judged from what the simulated caller said and heard
 * and what the model answered, never from the service's state. The ledger is only checked
 * against what left.
 */
export function check(t: Transcript, limits: { answerWithinMs: number; maxPerCall: number }): Violation[] {
  const v: Violation[] = [];
  const lines = t.heard.filter((h): h is HeardLine => h.kind === "speak");
  const sends = t.heard.filter((h): h is { kind: "send_sms"; number: string; deliveredAt: number } => h.kind === "send_sms");
  const speech = t.said.filter((s): s is Said & { text: string } => s.type === "user_speak" && typeof s.text === "string");
  const saidAt = new Map(speech.map((s) => [s.text, s]));
  const conversational = (l: HeardLine) => !HOLDING.test(l.text) && !APOLOGY.test(l.text) && !STORE_APOLOGY.test(l.text);

  // The caller's yes to a question they heard in full, as the last thing said to them before they spoke.
  const heardYes = (u: Said): string | undefined => {
    const before = lines.filter((l) => conversational(l) && l.deliveredAt <= u.at && l.start < u.at);
    const last = before.at(-1);
    if (!last) return undefined;
    const q = QUESTION.exec(last.text);
    if (!q || last.cutAt !== undefined || last.end > u.at) return undefined;
    return spokenToAiFlow(q[1]!);
  };

  // Model verdicts on the caller's words: a yes recorded, a no (decline or cancel) answered.
  const yeses: Array<{ u: Said; number?: string; used: boolean }> = [];
  const noes: Said[] = [];
  for (const a of t.model) {
    const u = saidAt.get(a.lastUser);
    if (!u) continue;
    for (const c of a.calls) {
      if (!a.offered.includes(c.name)) continue;
      if (c.name === "record_consent" && c.args?.consented === true) yeses.push({ u, number: heardYes(u), used: false });
      if ((c.name === "record_consent" && c.args?.consented === false) || c.name === "cancel_sms") noes.push(u);
    }
  }

  for (const s of sends) {
    // The latest yes before it: an earlier one the service refused (asked again) backs nothing.
    const backing = yeses.filter((y) => !y.used && y.number === s.number && y.u.at < s.deliveredAt).at(-1);
    if (!backing) v.push({ invariant: "send_without_heard_yes", detail: `send_sms to ${s.number} at ${s.deliveredAt} follows no yes to a question naming it that the caller heard in full` });
    else {
      backing.used = true;
      // Every caller utterance between the yes and the send's delivery was judged before it left.
      for (const e of speech) {
        if (e.at <= backing.u.at || e.at >= s.deliveredAt) continue;
        if (!t.model.some((a) => a.lastUser === e.text && a.at <= s.deliveredAt) && !t.heard.some((h) => h.kind === "hangup" && h.deliveredAt <= e.at)) {
          v.push({ invariant: "send_before_verdict", detail: `send_sms at ${s.deliveredAt} left before "${e.text}" (said at ${e.at}) was evaluated` });
        }
      }
    }
    const no = noes.find((n) => n.at < s.deliveredAt);
    if (no) v.push({ invariant: "send_after_no", detail: `send_sms at ${s.deliveredAt} after the model took "${no.text}" (said at ${no.at}) as a no` });
  }
  if (sends.length > limits.maxPerCall) v.push({ invariant: "sends_over_limit", detail: `${sends.length} sends, limit ${limits.maxPerCall}` });

  for (const a of t.answers) {
    if (a.answeredAt - a.sentAt > limits.answerWithinMs) v.push({ invariant: "answer_late", detail: `${a.event} sent at ${a.sentAt} answered at ${a.answeredAt}` });
  }
  if (t.waiting > 0) v.push({ invariant: "caller_left_waiting", detail: `${t.waiting} event(s) never answered` });

  v.push(...checkLedger(t, sends));
  for (const e of t.errors) v.push({ invariant: "run_error", detail: e });
  return v;
}

/**
 * The ledger against what left, judged from what the simulated sipgate received (never from the
 * service's state): every send_sms delivered has its sms_approved and no sms_not_sent; an
 * sms_handed_over only for a send that was delivered; every approved send not delivered has its
 * sms_not_sent, or no outcome at all only where an instance died after its approval (the outcome
 * nobody can know: verify's `outcome_unknown`). Each outcome names an approval, and no approval has
 * both.
 */
function checkLedger(t: Transcript, sends: Array<{ number: string }>): Violation[] {
  const v: Violation[] = [];
  const bad = (detail: string) => v.push({ invariant: "ledger_disagrees", detail });
  const approvals = t.ledger.filter((r) => r.kind === "sms_approved");
  const ids = new Set<string>();
  for (const a of approvals) {
    if (!a.id) bad(`sms_approved #${a.seq} has no id`);
    else if (ids.has(a.id)) bad(`sms_approved ${a.id} written twice`);
    else ids.add(a.id);
  }
  const outcomes = t.ledger.filter((r) => r.kind === "sms_handed_over" || r.kind === "sms_not_sent");
  for (const o of outcomes) if (!o.ref || !ids.has(o.ref)) bad(`${o.kind} #${o.seq} names no approval (ref ${o.ref ?? "none"})`);
  const handed = new Set(outcomes.filter((o) => o.kind === "sms_handed_over").map((o) => o.ref));
  const notSent = new Set(outcomes.filter((o) => o.kind === "sms_not_sent").map((o) => o.ref));
  for (const id of ids) if (handed.has(id) && notSent.has(id)) bad(`${id} is recorded as handed over and as not sent`);
  for (const legacy of t.ledger.filter((r) => r.kind === "sms_sent" || r.kind === "sms_withdrawn")) bad(`legacy ${legacy.kind} #${legacy.seq} written`);

  // An instance died at or after this virtual time: an approval then may have no outcome.
  const diedAfter = (at: string) => t.crashes.some((c) => c >= Date.parse(at) - t.epoch);
  for (const n of new Set([...sends.map((s) => s.number), ...approvals.map((a) => a.number!)])) {
    const delivered = sends.filter((s) => s.number === n).length;
    const mine = approvals.filter((a) => a.number === n);
    const h = mine.filter((a) => handed.has(a.id)).length;
    const unknown = mine.filter((a) => !handed.has(a.id) && !notSent.has(a.id));
    if (delivered > h + unknown.length) bad(`${delivered} send_sms to ${n} left, but only ${h + unknown.length} of its ${mine.length} sms_approved are not recorded as sms_not_sent`);
    if (h > delivered) bad(`${h} sms_handed_over for ${n}, but only ${delivered} send_sms to it left`);
    const unexplained = unknown.filter((a) => !diedAfter(a.at)).length;
    if (unexplained > delivered - h) bad(`${unexplained} sms_approved for ${n} without an outcome although no instance died after them (${delivered} left, ${h} recorded as handed over)`);
  }
  return v;
}
