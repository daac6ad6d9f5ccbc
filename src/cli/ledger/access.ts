import type { AppConfig } from "../../appConfig.js";
import type { LedgerRecord } from "../../ledger/ledger.js";
import type { NumberHasher } from "../../ledger/numberHash.js";
import { readLedgerFile } from "../../ledger/readLedger.js";
import { verifyRecords } from "../../ledger/verify.js";
import { parseAiFlowNumber, spokenDigitGroups } from "../../phone/number.js";
import { hasherOf, postgres, warn } from "./common.js";

/**
 * The right of access (GDPR Art. 15) and an auditor's view of one call:
 * - `export --number N`: every record about one number, each question as it was spoken;
 * - `show CALL_ID`: one call's evidence as a page.
 */

/** Every record in chain order, from PostgreSQL or the file; malformed file lines reported on stderr. */
export async function allRecords(config: AppConfig, env: NodeJS.ProcessEnv): Promise<{ records: LedgerRecord[]; malformed: number }> {
  const db = postgres(config, env);
  if (db) {
    const records: LedgerRecord[] = [];
    try {
      await db.scan((r) => records.push(r));
    } finally {
      await db.close();
    }
    return { records, malformed: 0 };
  }
  const contents = await readLedgerFile(config.ledger.path);
  if (contents.problems.length) warn(config.ledger.path, contents.problems);
  return { records: contents.records, malformed: contents.problems.length };
}

/**
 * The records about `number`: those storing it (any key, legacy SHA-256, in full), and the records
 * of the same calls that store no number (a decline, a cancellation). Records about another number
 * in the same call are another person's, and are left out.
 */
export function recordsAbout(records: readonly LedgerRecord[], number: string, hasher: NumberHasher): LedgerRecord[] {
  const mine = (r: LedgerRecord) => r.number !== undefined && hasher.matches(r.number, number, r.keyId);
  const calls = new Set(records.filter(mine).map((r) => r.callId));
  return records.filter((r) => mine(r) || (r.number === undefined && !r.erased && calls.has(r.callId) && r.callId !== ""));
}

/** The stored text with `{number}` put back as the agent reads the number out. */
function spokenAs(text: string, number: string, config: AppConfig): string {
  if (!text.includes("{number}")) return text;
  const parsed = parseAiFlowNumber(number);
  return text.split("{number}").join(parsed ? spokenDigitGroups(parsed, config.homeCountry) : number);
}

/** The records as a person reads them: questions with the number put back. */
export function forThePerson(records: readonly LedgerRecord[], number: string, config: AppConfig): LedgerRecord[] {
  return records.map((r) => {
    const out = { ...r };
    for (const f of ["question", "reply", "message", "detail"] as const) if (out[f]) out[f] = spokenAs(out[f]!, number, config);
    return out;
  });
}

const time = (iso: string | undefined) => (iso ? iso.replace("T", " ").replace(/\.\d{3}Z$/, "Z") : "");
const quote = (s: string | undefined) => (s === undefined ? "" : `"${s}"`);

/** Who judged the answer: a listed rule (no model asked) or the model; nothing for older records. */
function decider(r: LedgerRecord): string {
  if (r.decidedBy === "rule") return ` (rule ${r.rule ?? "?"})`;
  if (r.decidedBy === "model") return r.model ? ` (model ${r.model})` : " (model)";
  return "";
}

/** One line per record: what happened, in words an auditor or the person reads. */
export function describeRecord(r: LedgerRecord): string {
  switch (r.kind) {
    case "consent_asked":
      return `asked        ${quote(r.question)}`;
    case "consent_given":
      return `consent      given: ${quote(r.reply)}${decider(r)}`;
    case "consent_declined":
      return `consent      declined${r.reply ? `: ${quote(r.reply)}` : ""}${decider(r)}${r.detail ? ` (${r.detail})` : ""}`;
    case "sms_approved":
    case "sms_sent":
      return `approved     SMS ${quote(r.message)}${r.model ? ` (model ${r.model})` : ""}${r.kind === "sms_sent" ? " [legacy record: approved and, unless withdrawn, sent]" : ""}`;
    case "sms_handed_over":
      return "handed over  to sipgate (written into the answer to AI Flow)";
    case "sms_not_sent":
      return `not sent     ${r.reason ?? r.detail ?? ""}`;
    case "sms_withdrawn":
      return `not sent     ${r.detail ?? ""} [legacy record]`;
    case "sms_failed":
      return `failed       ${r.outcome ?? ""}${r.detail ? `: ${r.detail}` : ""}`;
    case "sms_cancelled":
      return `cancelled    by the caller${r.reply ? `: ${quote(r.reply)}` : ""}`;
    case "opt_out_added":
      return `do-not-text  added${r.detail ? ` (${r.detail})` : ""}`;
    case "opt_out_removed":
      return `do-not-text  removed${r.detail ? ` (${r.detail})` : ""}`;
    default:
      return r.kind;
  }
}

function byCall(records: readonly LedgerRecord[]): Map<string, LedgerRecord[]> {
  const calls = new Map<string, LedgerRecord[]>();
  for (const r of records) calls.set(r.callId, [...(calls.get(r.callId) ?? []), r]);
  return calls;
}

/** The readable answer to an access request. */
export function accessText(records: readonly LedgerRecord[], number: string): string {
  const calls = byCall(records);
  const lines = [`Records about ${number} (${records.length} record(s) in ${calls.size} call(s)):`];
  for (const [callId, recs] of calls) {
    lines.push("", `Call ${callId}`);
    for (const r of recs) lines.push(`  ${time(r.at)}  ${r.erased ? "(erased)" : describeRecord(r)}`);
  }
  return lines.join("\n") + "\n";
}

/** One call's evidence as a page: what was asked, answered, approved, handed over, and whether that holds together. */
export function callPage(callId: string, records: readonly LedgerRecord[], hasher: NumberHasher, now: Date): string {
  if (!records.length) return `No record of call ${callId} in the ledger.\n`;
  const lines = [`Call ${callId}: ${records.length} record(s), chain positions ${records[0]!.seq}–${records.at(-1)!.seq}`, ""];
  for (const r of records) {
    const who = r.number ? `  [number ${r.number}${r.keyId ? `, key ${r.keyId}` : ""}]` : "";
    lines.push(`  ${time(r.at)}  ${r.erased ? `(erased on request: ${r.erased.by})` : describeRecord(r)}${r.erased ? "" : who}`);
  }
  const report = verifyRecords(records, { now, links: false });
  lines.push("");
  if (report.problems.length) for (const p of report.problems) lines.push(`Problem: record ${p.seq}: ${p.problem}`);
  else lines.push("Consent: every approval in this call follows a consent_given answering a consent_asked for that number.");
  for (const p of report.outcomeUnknown) lines.push(`Outcome unknown: record ${p.seq} was approved, and no record says whether it was handed over.`);
  for (const p of report.pending) lines.push(`Pending: record ${p.seq} has no outcome yet (the call may still run).`);
  if (!report.outcomeUnknown.length && !report.pending.length && [...records].some((r) => r.kind === "sms_approved")) lines.push("Outcome: every approval has its handover record or its reason for not being sent.");
  lines.push(`Numbers are shown as stored${hasher.mode === "hashed" ? " (keyed hashes)" : ""}. That no record was changed or removed is checked over the whole ledger: npm run ledger -- verify`);
  return lines.join("\n") + "\n";
}

export { hasherOf };
