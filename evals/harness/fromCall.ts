import { stringify } from "yaml";
import type { Language } from "../../src/config/schema.js";
import type { AgentName } from "../../src/registry.js";
import { parseAiFlowNumber } from "../../src/phone/number.js";
import type { ReviewEntry } from "../../src/review/entries.js";
import { MASKED_NUMBER } from "../../src/review/masking.js";
import { scenarioSchema, type Expectation, type ReplayAnswer } from "./scenario.js";

/**
 * `npm run eval -- --from-call CALL_ID`: a reviewed call (its timeline in the call review, kept
 * with `review.transcripts: true`) as a scenario. The caller's events become the script (one rule
 * per caller turn, in order), the model's recorded answers the replay, and the expectations are
 * prefilled from what the call did, marked for the reviewer. Masked numbers (`+49…678`) become
 * test numbers, one per masked number, the same wherever it appears.
 */

export class FromCallError extends Error {
  override name = "FromCallError";
}

/** The comment above the prefilled expectations. */
export const PREFILLED_MARK = "# prefilled from the call — review";

/** Test numbers that keep the masked number's country, kind (landline or not) and last three digits; `n` tells numbers with the same last digits apart. */
function testNumber(cc: string | undefined, fixed: boolean, last3: string, n: number): string {
  const candidates = fixed
    ? cc === "43"
      ? [`4312${String(n).padStart(4, "0")}${last3}`]
      : cc === "41"
        ? [`4144${String(n).padStart(4, "0")}${last3}`]
        : [`4930120${String(n).padStart(2, "0")}${last3}`]
    : cc === "1"
      ? [`1212555${n % 10}${last3}`]
      : cc === "43"
        ? [`43664${String(n).padStart(4, "0")}${last3}`]
        : cc === "41"
          ? [`4179${String(n).padStart(4, "0")}${last3}`]
          : [`4915112${String(n).padStart(3, "0")}${last3}`, `4917012${String(n).padStart(2, "0")}${last3}`];
  return candidates.find((c) => parseAiFlowNumber(c)?.valid) ?? candidates[0]!;
}

export class TestNumbers {
  private readonly byMask = new Map<string, string>();

  /** The test number (AI Flow digits) for one masked number. */
  forMask(mask: string): string {
    let n = this.byMask.get(mask);
    if (!n) {
      const m = new RegExp(MASKED_NUMBER.source).exec(mask);
      if (!m) throw new FromCallError(`not a masked number: ${mask}`);
      this.byMask.set(mask, (n = testNumber(m[1]?.slice(1), m[2] !== undefined, m[3]!, this.byMask.size + 1)));
    }
    return n;
  }

  /** Text with every masked number replaced by its test number, as a caller would say it (national format at home). */
  text(s: string): string {
    return s.replace(MASKED_NUMBER, (mask) => parseAiFlowNumber(this.forMask(mask))?.national ?? this.forMask(mask));
  }

  value(v: unknown): unknown {
    if (typeof v === "string") return this.text(v);
    if (Array.isArray(v)) return v.map((x) => this.value(x));
    if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, this.value(x)]));
    return v;
  }
}

export interface FromCallOptions {
  language: Language;
  agent: AgentName;
}

/** The scenario as YAML text (one scenario in a list, as evals/scenarios/*.yaml hold them). */
export function scenarioFromCall(callId: string, entries: ReviewEntry[], opts: FromCallOptions): { id: string; yaml: string } {
  const arrivals = entries.filter((e): e is Extract<ReviewEntry, { kind: "arrival" }> => e.kind === "arrival");
  const spoke = arrivals.filter((e) => e.event === "user_speak");
  if (!arrivals.length) throw new FromCallError(`call ${callId} has no events in the review`);
  if (spoke.length && spoke.every((e) => e.text === undefined)) {
    throw new FromCallError(`call ${callId} was recorded without transcripts: set review.transcripts: true in the config, and review a call made after that`);
  }
  const numbers = new TestNumbers();
  const start = arrivals.find((e) => e.event === "session_start");
  const callerNumber = start?.caller && new RegExp(MASKED_NUMBER.source).test(start.caller) ? numbers.forMask(start.caller) : undefined;

  // The caller's turns, in order; a session_end after the agent hung up is sipgate's, not the caller's.
  let agentHungUp = false;
  const script: Array<Record<string, unknown>> = [];
  for (const e of entries) {
    if (e.kind === "answer" && e.actions.some((a) => a.type === "hangup")) agentHungUp = true;
    if (e.kind !== "arrival") continue;
    const when = { afterTurn: script.length };
    if (e.event === "user_speak" && e.text !== undefined && e.text.trim()) script.push({ when, say: numbers.text(e.text) });
    else if (e.event === "dtmf_received" && e.digit && /^[0-9*#]$/.test(e.digit)) script.push({ when, dtmf: e.digit });
    else if (e.event === "user_input_timeout") script.push({ when, silence: true });
    else if (e.event === "sms_failed" && e.reason) script.push({ when, smsFailed: e.reason });
    else if (e.event === "session_end" && !agentHungUp) script.push({ when, hangup: true });
  }
  if (!script.length) throw new FromCallError(`call ${callId}: the caller never said or keyed anything the script could repeat`);

  const replay: ReplayAnswer[] = entries.flatMap((e) =>
    e.kind === "turn"
      ? e.model.map((m): ReplayAnswer => {
          if (m.error !== undefined) return { step: m.step, text: "", toolCalls: [], error: m.error };
          if (!m.answer) throw new FromCallError(`call ${callId}: a model answer of step ${m.step} was not kept (review.transcripts was off for part of the call)`);
          return {
            step: m.step,
            text: numbers.text(m.answer.text),
            toolCalls: m.answer.toolCalls.map((c) => ({ name: c.name, arguments: numbers.value(parsedArguments(c.arguments)) as Record<string, unknown> | string })),
          };
        })
      : [],
  );

  const id = `from-call-${callId.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 40) || "call"}`;
  const scenario = {
    id,
    description: `Call ${callId} from the call review (${new Date(entries[0]!.at).toISOString()}): the caller's lines, the model's recorded answers.`,
    agent: opts.agent,
    language: opts.language,
    tags: ["from-call"],
    ...(callerNumber ? { caller: { number: callerNumber } } : {}),
    fromCall: callId,
    script,
    maxTurns: Math.min(50, script.length + 2),
    replay,
    expect: prefilledExpectations(entries, numbers),
  };
  // What is written must load: the same schema the suite reads it with.
  const checked = scenarioSchema.safeParse(scenario);
  if (!checked.success) throw new FromCallError(`call ${callId}: the scenario would not load: ${checked.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
  const body = stringify([scenario], { lineWidth: 0 });
  const yaml = [
    `# Written by \`npm run eval -- --from-call ${callId}\`: the caller's lines are the script, the model's recorded`,
    "# answers the replay (offline runs answer from it; a real model plays the agent otherwise). Numbers are test numbers.",
    body.replace(/^ {2}expect:$/m, `  ${PREFILLED_MARK}\n  expect:`),
  ].join("\n");
  return { id, yaml };
}

/** Tool arguments as the model sent them: the object when they were JSON, the text otherwise. */
function parsedArguments(raw: string): Record<string, unknown> | string {
  try {
    const v = JSON.parse(raw) as unknown;
    return v && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : raw;
  } catch {
    return raw;
  }
}

/** What the call did, as expectations: the reviewer keeps what must stay true and corrects what went wrong. */
function prefilledExpectations(entries: ReviewEntry[], numbers: TestNumbers): Partial<Expectation> {
  const actions = entries.flatMap((e) => (e.kind === "answer" ? e.actions : []));
  const sms = actions.filter((a) => a.type === "send_sms");
  const ledger = entries.flatMap((e) => (e.kind === "ledger" ? [e.record] : []));
  const turns = entries.filter((e): e is Extract<ReviewEntry, { kind: "turn" }> => e.kind === "turn");
  const tools = [...new Set(turns.flatMap((t) => t.tools.filter((c) => c.origin === "model" && c.ok).map((c) => c.name)))];
  const steps = [...new Set(turns.flatMap((t) => [t.stepBefore, t.stepAfter]).filter(Boolean))];
  const apology = entries.some((e) => (e.kind === "answer" && (e.answer === "gave_up" || e.answer === "store_unavailable")) || (e.kind === "turn" && e.model.length > 0 && e.model.every((m) => m.error)));
  return {
    sms: { sent: sms.length > 0, count: sms.length, ...(sms[0]?.to ? { recipient: numbers.forMask(sms[0].to) } : {}) },
    consent: ledger.includes("consent_given") ? "given" : ledger.includes("consent_declined") ? "declined" : "none",
    ...(steps.length ? { stepsVisited: steps } : {}),
    ...(tools.length ? { toolsCalled: tools.map((name) => ({ name })) } : {}),
    hangup: actions.some((a) => a.type === "hangup"),
    ...(apology ? { errorLinesAllowed: true } : {}),
  };
}
