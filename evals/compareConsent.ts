import { readFileSync } from "node:fs";

/**
 * Did two eval runs decide consent the same way? Reads two report.json files (e.g. the offline suite
 * with `consent.answerByRule` off and on) and compares, per scenario and trial, every consent
 * decision (record_consent's verdict and turn, by model or rule) and the SMS sent. Prints the
 * requests per caller turn of both; exits 1 naming each scenario whose decisions differ.
 *
 *   npx tsx evals/compareConsent.ts before/report.json after/report.json
 */

interface Trial {
  scenario: string;
  model: string;
  trial: number;
  transcript: Array<{ toolCalls: Array<{ name: string; arguments: unknown; ok: boolean; origin?: string }>; actions: Array<{ type: string; phone_number?: string }> }>;
  metrics: { callerTurns: number; llmRequests: number; smsSent: number };
}

function decisions(t: Trial): string[] {
  const out: string[] = [];
  t.transcript.forEach((entry, turn) => {
    for (const c of entry.toolCalls) {
      if (c.name !== "record_consent" || !c.ok) continue;
      const args = typeof c.arguments === "string" ? (JSON.parse(c.arguments) as { consented?: boolean }) : (c.arguments as { consented?: boolean });
      out.push(`turn ${turn}: consented=${String(args.consented)}`);
    }
    for (const a of entry.actions) if (a.type === "send_sms") out.push(`turn ${turn}: send_sms ${a.phone_number ?? ""}`);
  });
  return out;
}

function load(path: string): Map<string, Trial> {
  const report = JSON.parse(readFileSync(path, "utf8")) as { trials: Trial[] };
  return new Map(report.trials.map((t) => [`${t.scenario} [${t.model}] #${t.trial}`, t]));
}

function perTurn(trials: Iterable<Trial>): string {
  let turns = 0;
  let requests = 0;
  let rules = 0;
  for (const t of trials) {
    turns += t.metrics.callerTurns;
    requests += t.metrics.llmRequests;
    rules += t.transcript.reduce((n, e) => n + e.toolCalls.filter((c) => c.origin === "rule").length, 0);
  }
  return `${(turns ? requests / turns : 0).toFixed(2)} LLM requests per caller turn (${requests} / ${turns}), ${rules} decided by rule`;
}

const [beforePath, afterPath] = process.argv.slice(2);
if (!beforePath || !afterPath) {
  console.error("usage: tsx evals/compareConsent.ts BEFORE/report.json AFTER/report.json");
  process.exit(2);
}
const before = load(beforePath);
const after = load(afterPath);
const changed: string[] = [];
for (const [key, b] of before) {
  const a = after.get(key);
  if (!a) {
    changed.push(`${key}: missing in ${afterPath}`);
    continue;
  }
  const db = decisions(b).join("; ");
  const da = decisions(a).join("; ");
  if (db !== da) changed.push(`${key}:\n    before: ${db || "(none)"}\n    after:  ${da || "(none)"}`);
}
for (const key of after.keys()) if (!before.has(key)) changed.push(`${key}: missing in ${beforePath}`);
console.log(`before: ${perTurn(before.values())}`);
console.log(`after:  ${perTurn(after.values())}`);
console.log(`${before.size} trials compared; ${changed.length} with a changed consent decision`);
for (const c of changed) console.log(`  ${c}`);
process.exit(changed.length ? 1 : 0);
