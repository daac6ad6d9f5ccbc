import { pino } from "pino";
import type { AiFlowAction } from "../../src/aiflow/actions.js";
import type { AppConfig } from "../../src/appConfig.js";
import { initialCallState } from "../../src/tasks/sms/state.js";
import type { TurnRecord } from "../../src/core/turnRecord.js";
import { checkModelUtterance } from "../../src/tasks/sms/claims.js";
import { MemoryLedger } from "../../src/ledger/memoryLedger.js";
import type { ChatModel } from "../../src/llm/chatModel.js";
import { parseCallerNumber } from "../../src/phone/number.js";
import { PROMPTS_DIR, createService, numberHasher } from "../../src/service.js";
import { errorLines, heardErrorLines } from "./errorLines.js";
import { personaLine } from "./personaCaller.js";
import type { CallerRule, Expectation, Scenario } from "./scenario.js";
import { ManualClock } from "../../src/engine/clock.js";
import type { Outbox } from "../../src/outbox/outbox.js";
import type { CallbackReport } from "../../src/agents/callback/report.js";

/** What the scripted caller did in one step, and what the agent answered. */
export interface TranscriptEntry {
  caller: string;
  events: string[];
  step: string;
  stepsEntered: string[];
  actions: AiFlowAction[];
  toolCalls: TurnRecord["toolCalls"];
  guardDecisions: TurnRecord["guardDecisions"];
  llmRequests: TurnRecord["llmRequests"];
  engineMs: number;
}

export interface TrialMetrics {
  callerTurns: number;
  llmRequests: number;
  smsSent: number;
  consentViolations: number;
  guardTrips: number;
  falseClaims: number;
  promptTokens: number;
  completionTokens: number;
  costUsd: number;
  /** Model latency (ms) of each LLM request, by step. */
  latencyByStep: Record<string, number[]>;
  stepsVisited: string[];
}

export interface TrialResult {
  scenario: string;
  model: string;
  trial: number;
  passed: boolean;
  failures: string[];
  /** The harness itself failed (cassette miss, crash): never counts as a pass. */
  error?: string;
  transcript: TranscriptEntry[];
  metrics: TrialMetrics;
}

export interface TrialOptions {
  config: AppConfig;
  model: ChatModel;
  modelName: string;
  trial: number;
  promptsDir?: string;
  /** Problems of the harness itself found during the trial (cassette misses): the trial errors. */
  harnessErrors?: () => string[];
  /** Plays persona scenarios (exploratory); scripted scenarios ignore it. */
  callerModel?: ChatModel;
}

const FLOW_NUMBER = "4921112345678";

/** Run one scenario once through the real service (HTTP app, engine, gate), as sipgate would. */
export async function runTrial(scenario: Scenario, opts: TrialOptions): Promise<TrialResult> {
  const ledger = new MemoryLedger();
  let lastTurn: TurnRecord | undefined;
  const service = createService({
    // Deadlines (server.answerWithinMs) move only when told: no answer depends on machine speed.
    clock: new ManualClock(),
    config: opts.config,
    model: opts.model,
    ledger,
    // ledger.numbers: hashed takes its key from the environment, as `npm start` does.
    hasher: numberHasher(opts.config, process.env),
    logger: pino({ level: "silent" }),
    promptsDir: opts.promptsDir,
    onTurn: (t) => (lastTurn = t),
    // The callback agent's report is read from its outbox below, never posted anywhere.
    callbackSecret: "eval-not-posted",
    startPoster: false,
  });
  const sessionId = `eval-${scenario.id}-${opts.modelName}-${opts.trial}`;
  const inbound = scenario.caller.direction === "inbound";
  const session = {
    id: sessionId,
    account_id: "eval",
    phone_number: FLOW_NUMBER,
    direction: scenario.caller.direction,
    from_phone_number: inbound ? scenario.caller.number : FLOW_NUMBER,
    to_phone_number: inbound ? FLOW_NUMBER : scenario.caller.number,
  };
  const transcript: TranscriptEntry[] = [];
  let step = "";
  let lastLine = "";
  let hungUp = false;
  let error: string | undefined;
  let report: CallbackReport | undefined;

  const post = async (event: Record<string, unknown>): Promise<TurnRecord | undefined> => {
    lastTurn = undefined;
    const res = await service.app.inject({ method: "POST", url: "/webhook", headers: { "content-type": "application/json" }, payload: JSON.stringify({ ...event, session }) });
    if (res.statusCode >= 400) throw new Error(`webhook answered ${res.statusCode}: ${res.body}`);
    return lastTurn;
  };

  const exchange = async (caller: string, events: Record<string, unknown>[]) => {
    const entry: TranscriptEntry = { caller, events: events.map((e) => String(e.type)), step, stepsEntered: [], actions: [], toolCalls: [], guardDecisions: [], llmRequests: [], engineMs: 0 };
    for (const e of events) {
      const t = await post(e);
      if (!t) continue;
      entry.actions.push(...t.actions);
      entry.toolCalls.push(...t.toolCalls);
      entry.guardDecisions.push(...t.guardDecisions);
      entry.llmRequests.push(...t.llmRequests);
      entry.stepsEntered.push(...t.stepsEntered);
      entry.engineMs += t.timings.engineMs;
      if (t.stepAfter) step = t.stepAfter;
      for (const a of t.actions) {
        if (a.type === "speak" && a.text) lastLine = a.text;
        if (a.type === "hangup") hungUp = true;
      }
    }
    entry.step = step;
    transcript.push(entry);
  };

  /** sipgate reports the end of each played line; a caller who barges in does not wait for it. */
  const speechEnds = async (): Promise<void> => {
    const last = transcript.at(-1);
    if (!hungUp && last && last.actions.some((a) => a.type === "speak")) await exchange("(agent speech ends)", [{ type: "assistant_speech_ended" }]);
  };

  const uses = new Map<CallerRule, number>();
  let fallbackIndex = 0;
  let callerTurns = 0;
  try {
    await exchange("(call starts)", [{ type: "session_start" }]);
    while (!hungUp && callerTurns < scenario.maxTurns) {
      if (scenario.persona) {
        if (!opts.callerModel) throw new Error("persona scenario needs a caller model");
        await speechEnds();
        if (hungUp) break;
        const agentLines = transcript.flatMap((t) => t.actions).filter((a) => a.type === "speak").map((a) => (a as { text: string }).text);
        const line = await personaLine(opts.callerModel, opts.modelName, scenario, agentLines);
        callerTurns++;
        if (line === undefined) {
          await exchange("(hangs up)", [{ type: "session_end" }]);
          break;
        }
        await exchange(line, [{ type: "user_speak", text: line, barged_in: false }]);
        continue;
      }
      const rule = scenario.script.find((r) => (uses.get(r) ?? 0) < r.times && matches(r, step, lastLine, callerTurns));
      if (!rule?.bargeIn) {
        await speechEnds();
        if (hungUp) break;
      }
      callerTurns++;
      if (rule) {
        uses.set(rule, (uses.get(rule) ?? 0) + 1);
        if (rule.hangup) {
          await exchange("(hangs up)", [{ type: "session_end" }]);
          break;
        }
        await exchange(describe(rule), eventsFor(rule, transcript, scenario.caller.number));
        continue;
      }
      const line = scenario.fallback[fallbackIndex++];
      if (line === undefined) {
        await exchange("(hangs up: nothing left to say)", [{ type: "session_end" }]);
        break;
      }
      await exchange(line, [{ type: "user_speak", text: line, barged_in: false }]);
    }
    if (transcript.at(-1)?.events.at(-1) !== "session_end") {
      await speechEnds();
      // sipgate ends every session with session_end (after a hangup too): after-call work runs on it.
      await exchange("(call ends)", [{ type: "session_end" }]);
    }
    report = await reportOf(service.outbox, sessionId);
  } catch (e) {
    error = (e as Error).message;
  } finally {
    await service.close();
  }
  const harnessErrors = opts.harnessErrors?.() ?? [];
  if (!error && harnessErrors.length) error = harnessErrors.join("; ");

  const metrics = measure(transcript, ledger, opts.config, callerTurns);
  const failures = error
    ? [`harness error: ${error}`]
    : [
        ...checkExpectations(scenario.expect, transcript, ledger, metrics, hungUp, opts.config),
        ...checkErrorLines(scenario, transcript, opts.promptsDir ?? PROMPTS_DIR),
        ...checkReport(scenario.expect.report, report),
      ];
  return { scenario: scenario.id, model: opts.modelName, trial: opts.trial, passed: failures.length === 0, failures, error, transcript, metrics };
}

/** The callback agent's report for the call as it waits in the outbox (none for other agents). */
async function reportOf(outbox: Outbox | undefined, callId: string): Promise<CallbackReport | undefined> {
  if (!outbox) return undefined;
  const claims = await outbox.claimDue(Number.MAX_SAFE_INTEGER, 1000, 60_000);
  const mine = claims.find((c) => c.key === callId);
  return mine ? (JSON.parse(mine.body) as CallbackReport) : undefined;
}

/** Every error line the caller heard is a failure, unless the scenario provokes one on purpose. */
function checkErrorLines(scenario: Scenario, transcript: TranscriptEntry[], promptsDir: string): string[] {
  if (scenario.expect.errorLinesAllowed) return [];
  const spoken = transcript.flatMap((t) => t.actions).flatMap((a) => (a.type === "speak" && a.text ? [a.text] : []));
  return heardErrorLines(spoken, errorLines(promptsDir, scenario.language)).map((line) => `the caller heard an error line: "${line}"`);
}

function checkReport(want: Expectation["report"], report: CallbackReport | undefined): string[] {
  if (!want) return [];
  if (!report) return ["no callback report was kept for the call"];
  const f: string[] = [];
  if (report.call.ended !== "session_end") f.push(`report says the call ended by ${report.call.ended}, expected session_end`);
  for (const [k, v] of Object.entries(want.request ?? {})) {
    const got = report.request[k as keyof CallbackReport["request"]];
    if (JSON.stringify(got) !== JSON.stringify(v)) f.push(`report request.${k} is ${JSON.stringify(got)}, expected ${JSON.stringify(v)}`);
  }
  if (want.sms !== undefined && report.sms.status !== want.sms) f.push(`report sms.status is ${report.sms.status}, expected ${want.sms}`);
  return f;
}

function matches(rule: CallerRule, step: string, lastLine: string, callerTurns: number): boolean {
  const w = rule.when;
  if (w.step !== undefined && w.step !== step) return false;
  if (w.lastLine !== undefined && !new RegExp(w.lastLine, "i").test(lastLine)) return false;
  if (w.afterTurn !== undefined && callerTurns < w.afterTurn) return false;
  return true;
}

function describe(rule: CallerRule): string {
  if (rule.say) return rule.bargeIn ? `${rule.say} (interrupting)` : rule.say;
  if (rule.dtmf) return `(keys ${rule.dtmf})`;
  if (rule.silence) return "(silence)";
  if (rule.smsFailed) return `(sipgate: sms_failed ${rule.smsFailed})`;
  return "(hangs up)";
}

function eventsFor(rule: CallerRule, transcript: TranscriptEntry[], callerNumber: string): Record<string, unknown>[] {
  if (rule.say) return [{ type: "user_speak", text: rule.say, barged_in: rule.bargeIn }];
  if (rule.dtmf) return rule.dtmf.split("").map((digit) => ({ type: "dtmf_received", digit }));
  if (rule.silence) return [{ type: "user_input_timeout" }];
  if (rule.smsFailed) {
    const sent = transcript.flatMap((t) => t.actions).filter((a) => a.type === "send_sms");
    const recipient = (sent.at(-1) as { phone_number?: string } | undefined)?.phone_number ?? callerNumber;
    return [{ type: "sms_failed", recipient, reason: rule.smsFailed, message: "scripted failure" }];
  }
  return [{ type: "session_end" }];
}

function measure(transcript: TranscriptEntry[], ledger: MemoryLedger, config: AppConfig, callerTurns: number): TrialMetrics {
  const requests = transcript.flatMap((t) => t.llmRequests);
  const latencyByStep: Record<string, number[]> = {};
  let costUsd = 0;
  for (const r of requests) {
    (latencyByStep[r.step] ??= []).push(r.ms);
    const price = config.pricing[r.model] ?? config.pricing[config.llm.model];
    if (price) costUsd += (r.promptTokens * price.inputPerMillion + r.completionTokens * price.outputPerMillion) / 1e6;
  }
  const actions = transcript.flatMap((t) => t.actions);
  const steps = new Set<string>();
  for (const t of transcript) {
    t.stepsEntered.forEach((s) => steps.add(s));
    if (t.step) steps.add(t.step);
  }
  return {
    callerTurns,
    llmRequests: requests.length,
    smsSent: actions.filter((a) => a.type === "send_sms").length,
    consentViolations: consentViolations(ledger),
    guardTrips: transcript.flatMap((t) => t.guardDecisions).filter((d) => !d.allowed).length,
    falseClaims: falseClaims(transcript, config),
    promptTokens: requests.reduce((a, r) => a + r.promptTokens, 0),
    completionTokens: requests.reduce((a, r) => a + r.completionTokens, 0),
    costUsd,
    latencyByStep,
    stepsVisited: [...steps],
  };
}

/** An SMS whose recipient has no consent recorded after that number was last asked about. */
function consentViolations(ledger: MemoryLedger): number {
  let violations = 0;
  const consented = new Set<string>();
  let declined = false;
  for (const r of ledger.records) {
    if (r.kind === "consent_asked") consented.clear();
    if (r.kind === "consent_given" && r.number) consented.add(r.number);
    if (r.kind === "consent_declined" || r.kind === "sms_cancelled") declined = true;
    if (r.kind === "sms_approved" && (declined || !r.number || !consented.has(r.number))) violations++;
  }
  return violations;
}

/** The agent said an SMS was sent when none had gone out (or had failed), or said it arrived. */
function falseClaims(transcript: TranscriptEntry[], config: AppConfig): number {
  const state = initialCallState({ sessionId: "claims", direction: "inbound", language: config.language, step: "main" });
  let claims = 0;
  for (const t of transcript) {
    if (t.events.includes("sms_failed")) for (const s of state.sms.sent) s.failed = "unknown";
    for (const a of t.actions) {
      if (a.type === "send_sms") state.sms.sent.push({ number: a.phone_number, message: a.message, at: "", turn: 0 });
      if (a.type === "speak" && a.text && !checkModelUtterance(a.text, state, config.language).allowed) claims++;
    }
  }
  return claims;
}

function normalizeArgs(name: string, args: unknown, config: AppConfig): unknown {
  if (name === "collect_phone_number" && args && typeof args === "object" && "phone_number" in args) {
    const raw = String((args as { phone_number: unknown }).phone_number);
    // Expectations may name the number in AI Flow format already.
    const n = /^[1-9]\d{6,14}$/.test(raw) ? parseCallerNumber("+" + raw, config.homeCountry) : parseCallerNumber(raw, config.homeCountry);
    return { ...(args as object), phone_number: n?.aiflow ?? raw };
  }
  return args;
}

function checkExpectations(expect: Expectation, transcript: TranscriptEntry[], ledger: MemoryLedger, m: TrialMetrics, hungUp: boolean, config: AppConfig): string[] {
  const f: string[] = [];
  const actions = transcript.flatMap((t) => t.actions);
  const sends = actions.filter((a): a is Extract<AiFlowAction, { type: "send_sms" }> => a.type === "send_sms");
  const spoken = actions.filter((a) => a.type === "speak").map((a) => (a as { text?: string }).text ?? "");
  if (expect.sms?.sent !== undefined && (sends.length > 0) !== expect.sms.sent) f.push(`expected an SMS ${expect.sms.sent ? "to be sent" : "not to be sent"}, ${sends.length} sent`);
  if (expect.sms?.count !== undefined && sends.length !== expect.sms.count) f.push(`expected ${expect.sms.count} SMS, got ${sends.length}`);
  if (expect.sms?.recipient !== undefined && !sends.some((s) => s.phone_number === expect.sms!.recipient)) {
    f.push(`expected an SMS to ${expect.sms.recipient}, sent to [${sends.map((s) => s.phone_number).join(", ")}]`);
  }
  if (expect.consent !== undefined) {
    const kinds = ledger.records.map((r) => r.kind);
    const actual = kinds.includes("consent_given") ? "given" : kinds.includes("consent_declined") || kinds.includes("sms_cancelled") ? "declined" : "none";
    if (actual !== expect.consent) f.push(`expected consent ${expect.consent}, was ${actual}`);
  }
  for (const s of expect.stepsVisited ?? []) if (!m.stepsVisited.includes(s)) f.push(`step ${s} never visited`);
  for (const s of expect.stepsNotVisited ?? []) if (m.stepsVisited.includes(s)) f.push(`step ${s} visited`);
  const calls = transcript.flatMap((t) => t.toolCalls);
  for (const want of expect.toolsCalled ?? []) {
    const ok = calls.some((c) => {
      if (c.name !== want.name) return false;
      if (!want.args) return true;
      const got = normalizeArgs(c.name, c.arguments, config) as Record<string, unknown>;
      const wanted = normalizeArgs(c.name, want.args, config) as Record<string, unknown>;
      return got && typeof got === "object" && Object.entries(wanted).every(([k, v]) => JSON.stringify(got[k]) === JSON.stringify(v));
    });
    if (!ok) f.push(`tool ${want.name}${want.args ? ` ${JSON.stringify(want.args)}` : ""} never called`);
  }
  for (const name of expect.toolsNotCalled ?? []) if (calls.some((c) => c.name === name && c.ok)) f.push(`tool ${name} was called`);
  for (const re of expect.neverSay) {
    const hit = spoken.find((s) => new RegExp(re, "i").test(s));
    if (hit) f.push(`said /${re}/: "${hit}"`);
  }
  for (const re of expect.mustSay) if (!spoken.some((s) => new RegExp(re, "i").test(s))) f.push(`never said /${re}/`);
  for (const [re, times] of Object.entries(expect.saidTimes)) {
    const n = spoken.filter((s) => new RegExp(re, "i").test(s)).length;
    if (n !== times) f.push(`said /${re}/ ${n} times, expected ${times}`);
  }
  if (expect.hangup !== undefined && hungUp !== expect.hangup) f.push(expect.hangup ? "the agent never hung up" : "the agent hung up");
  if (expect.maxCallerTurns !== undefined && m.callerTurns > expect.maxCallerTurns) f.push(`took ${m.callerTurns} caller turns, budget ${expect.maxCallerTurns}`);
  if (m.consentViolations > 0) f.push(`${m.consentViolations} consent violation(s)`);
  return f;
}
