import { readFileSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { pathToFileURL } from "node:url";
import { performance } from "node:perf_hooks";
import { pino } from "pino";
import type { AiFlowAction } from "../src/aiflow/actions.js";
import { loadConfigFile, parseConfig } from "../src/appConfig.js";
import type { AppConfig } from "../src/appConfig.js";
import { MemoryLedger } from "../src/ledger/memoryLedger.js";
import { OpenAIChatModel } from "../src/llm/openaiChatModel.js";
import { ScriptedModel } from "../src/llm/scriptedModel.js";
import { createService } from "../src/service.js";
import { loadScenarios } from "../evals/harness/scenario.js";
import { runTrial } from "../evals/harness/runTrial.js";
import { FakeOpenAIServer, type ChatBody, type ScriptedReply } from "../test/support/fakeOpenAI.js";
import { openLimits, percentile } from "./deadline.js";

/**
 * The consent-turn row: a clear "Ja, gerne." / "Nein danke." to the consent question, decided by the
 * listed answers (consent.answerByRule on) or by the model (off). Both on the real service over
 * HTTP, with a local model server that takes a set time per request; the same calls, one setting
 * after the other. Also the LLM requests per caller turn, on these calls and on the offline eval
 * suite (the scripted model), before (off) and after (on).
 */

const SMS_REQUEST = "Können Sie mir die Öffnungszeiten per SMS schicken?";
const ANSWERS = ["Ja, gerne.", "Nein danke."];

export interface ConsentTurnSide {
  /** The consent event's webhook answer time. */
  consentP50Ms: number;
  consentP99Ms: number;
  /** Model requests the consent turns made, in all. */
  consentModelRequests: number;
  requestsPerCallerTurn: number;
  /** Calls whose consent turn ended as the caller said (one SMS to the caller for a yes, none for a no). */
  correct: number;
  /** The offline eval suite, scripted model. */
  suiteRequestsPerCallerTurn: number;
  suiteRuleDecisions: number;
}

export interface ConsentTurnResult {
  modelMs: number;
  calls: number;
  before: ConsentTurnSide;
  after: ConsentTurnSide;
}

/** The model, scripted by the tools it is offered: the SMS flow, then the verdict the caller's words carry. */
function model(delayMs: number) {
  return (body: ChatBody): ScriptedReply => {
    const tools = (body.tools ?? []).map((t) => t.function.name);
    const last = body.messages.at(-1)?.content;
    if (tools.includes("record_consent")) return { kind: "message", toolCalls: [{ name: "record_consent", arguments: { consented: typeof last === "string" && last.startsWith("Ja") } }], delayMs };
    if (tools.includes("start_sms_flow")) return { kind: "message", toolCalls: [{ name: "start_sms_flow", arguments: { info: "opening_hours" } }], delayMs };
    return { kind: "message", text: "Wie kann ich helfen?", delayMs };
  };
}

async function side(config: AppConfig, modelMs: number, calls: number): Promise<Omit<ConsentTurnSide, "suiteRequestsPerCallerTurn" | "suiteRuleDecisions">> {
  const fake = new FakeOpenAIServer();
  await fake.start();
  fake.onRequest(model(modelMs));
  const service = createService({ config, model: new OpenAIChatModel({ apiKey: "k", baseURL: fake.baseURL, timeoutMs: config.llm.timeoutMs, maxRetries: 0 }), ledger: new MemoryLedger(), logger: pino({ level: "silent" }) });
  await service.app.listen({ port: 0, host: "127.0.0.1" });
  const url = `http://127.0.0.1:${(service.app.server.address() as AddressInfo).port}/webhook`;
  const consentMs: number[] = [];
  let consentRequests = 0;
  let correct = 0;
  let callerTurns = 0;
  try {
    for (let i = 0; i < calls; i++) {
      const caller = `49151${String(40_000_000 + i).padStart(8, "0")}`;
      const session = { id: `consent-turn-${config.tasks.sms.consent.answerByRule}-${i}`, account_id: "bench", phone_number: "4921112345678", direction: "inbound", from_phone_number: caller, to_phone_number: "4921112345678" };
      const post = async (event: Record<string, unknown>) => {
        const t0 = performance.now();
        const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ ...event, session }) });
        const text = await res.text();
        const actions = (text ? JSON.parse(text) : []) as AiFlowAction | AiFlowAction[];
        return { ms: performance.now() - t0, actions: Array.isArray(actions) ? actions : [actions] };
      };
      await post({ type: "session_start" });
      await post({ type: "user_speak", text: SMS_REQUEST });
      const answer = ANSWERS[i % ANSWERS.length]!;
      const before = fake.requests.length;
      const r = await post({ type: "user_speak", text: answer });
      callerTurns += 2;
      consentMs.push(r.ms);
      consentRequests += fake.requests.length - before;
      const sends = r.actions.filter((a) => a.type === "send_sms") as Array<AiFlowAction & { phone_number: string }>;
      if (answer.startsWith("Ja") ? sends.length === 1 && sends[0]!.phone_number === caller : sends.length === 0) correct++;
      await post({ type: "session_end" });
    }
  } finally {
    await service.close();
    await fake.close();
  }
  const round = (x: number) => Math.round(x * 10) / 10;
  return { consentP50Ms: round(percentile(consentMs, 0.5)), consentP99Ms: round(percentile(consentMs, 0.99)), consentModelRequests: consentRequests, requestsPerCallerTurn: fake.requests.length / callerTurns, correct };
}

/** The offline eval suite with the scripted model: requests per caller turn, and how many consent answers a rule decided. */
async function suite(answerByRule: boolean) {
  const scenarios = loadScenarios("evals/scenarios").filter((s) => !s.expectFailure && !s.persona);
  const configs: Record<string, AppConfig> = {};
  for (const [lang, file] of [["de-DE", "config/agent.yaml"], ["en-US", "config/agent.en-US.yaml"]] as const) {
    const base = loadConfigFile(file);
    configs[lang] = parseConfig({ ...base, tasks: { ...base.tasks, sms: { ...base.tasks.sms, consent: { ...base.tasks.sms.consent, answerByRule } } } });
  }
  let turns = 0;
  let requests = 0;
  let rules = 0;
  for (const s of scenarios) {
    const r = await runTrial(s, { config: configs[s.language]!, model: new ScriptedModel(), modelName: "scripted", trial: 1 });
    for (const t of r.transcript) {
      if (!t.events.some((e) => e === "user_speak" || e === "dtmf_received")) continue;
      turns++;
      requests += t.llmRequests.length;
      rules += t.toolCalls.filter((c) => c.origin === "rule").length;
    }
  }
  return { suiteRequestsPerCallerTurn: requests / turns, suiteRuleDecisions: rules };
}

export async function consentTurnScenario(opts: { modelMs: number; calls: number }): Promise<ConsentTurnResult> {
  const base = openLimits(loadConfigFile("config/agent.yaml"));
  const withRule = (on: boolean) => parseConfig({ ...base, tasks: { ...base.tasks, sms: { ...base.tasks.sms, consent: { ...base.tasks.sms.consent, answerByRule: on } } } });
  const before = { ...(await side(withRule(false), opts.modelMs, opts.calls)), ...(await suite(false)) };
  const after = { ...(await side(withRule(true), opts.modelMs, opts.calls)), ...(await suite(true)) };
  return { modelMs: opts.modelMs, calls: opts.calls, before, after };
}

/** The rule's consent turn must take no model request and answer (median) in at most a tenth of the model's time; no call may end otherwise than the caller said. */
export function consentTurnMet(r: ConsentTurnResult): boolean {
  return r.after.consentModelRequests === 0 && r.after.consentP50Ms <= 0.1 * r.before.consentP50Ms && r.before.correct === r.calls && r.after.correct === r.calls && r.after.requestsPerCallerTurn < r.before.requestsPerCallerTurn;
}

export function consentTurnRows(r: ConsentTurnResult, ok: (met: boolean) => string): string {
  const f = (x: number, d = 2) => x.toFixed(d);
  return [
    `| (m) consent turn answer p50 / p99, clear "Ja, gerne." / "Nein danke." decided by the listed answers | ${f(r.after.consentP50Ms, 1)} / ${f(r.after.consentP99Ms, 1)} ms, ${r.after.consentModelRequests} model requests (${r.calls} calls, ${r.after.correct} as the caller said) | by the model (${r.modelMs} ms a request): ${f(r.before.consentP50Ms, 1)} / ${f(r.before.consentP99Ms, 1)} ms, ${r.before.consentModelRequests} requests | p50: ${f(r.after.consentP50Ms / r.before.consentP50Ms, 3)}× | no model request, p50 ≤ 0.1× the model's, every call as the caller said | ${ok(consentTurnMet(r))} |`,
    `| (m) LLM requests per caller turn, these calls / eval suite (scripted model) | ${f(r.after.requestsPerCallerTurn)} / ${f(r.after.suiteRequestsPerCallerTurn)} (${r.after.suiteRuleDecisions} consent answers by rule) | rule off: ${f(r.before.requestsPerCallerTurn)} / ${f(r.before.suiteRequestsPerCallerTurn)} | ${f(r.after.requestsPerCallerTurn / r.before.requestsPerCallerTurn)}× / ${f(r.after.suiteRequestsPerCallerTurn / r.before.suiteRequestsPerCallerTurn)}× | fewer than with the rule off | ${ok(r.after.requestsPerCallerTurn < r.before.requestsPerCallerTurn && r.after.suiteRequestsPerCallerTurn < r.before.suiteRequestsPerCallerTurn)} |`,
  ].join("\n");
}

/** How the row is measured (for results.md); `alone`: when run by itself (`--update`), the Node version and date. */
export function consentTurnNote(r: ConsentTurnResult, alone?: string): string {
  return `- (m) bench/consentTurn.ts${alone ? `, run alone (\`npx tsx bench/consentTurn.ts --update\`, ${alone})` : ""}: the real service (createService, memory store and ledger) on a port, a local model server over HTTP taking ${r.modelMs} ms per request, scripted by the tools offered and the caller's words. ${r.calls} calls one after another, each: session_start, an SMS request (model: start_sms_flow), then "Ja, gerne." or "Nein danke." in turn to the consent question; the consent event's webhook answer time, and the model requests it made, with \`consent.answerByRule\` off (before) and on (after), the same calls. Requests per caller turn: these calls, and the offline eval suite through the real engine with the scripted model (as (b)), off and on.`;
}

export const CONSENT_TURN_TARGET = "a clear consent answer: no model request, p50 ≤ 0.1× the model's, fewer requests per caller turn";

/** Row (m) into the checked-in results, the other rows as they were measured. */
function updateCheckedIn(r: ConsentTurnResult): void {
  const ok = (m: boolean) => (m ? "met" : "**missed**");
  const json = JSON.parse(readFileSync("bench/results.json", "utf8")) as Record<string, unknown> & { targets: Record<string, unknown> };
  json.consentTurn = { ...r, measuredAlone: new Date().toISOString() };
  json.targets.consentTurn = { value: r.after.consentP50Ms / r.before.consentP50Ms, target: CONSENT_TURN_TARGET, met: consentTurnMet(r) };
  writeFileSync("bench/results.json", JSON.stringify(json, null, 2));
  const lines = readFileSync("bench/results.md", "utf8").split("\n").filter((l) => !l.startsWith("| (m) ") && !l.startsWith("- (m) "));
  lines.splice(lines.findLastIndex((l) => /^\| \([a-z]\) /.test(l)) + 1, 0, consentTurnRows(r, ok));
  lines.splice(lines.findLastIndex((l) => /^- \([a-z]\) /.test(l)) + 1, 0, consentTurnNote(r, `${process.version}, ${new Date().toISOString()}`));
  writeFileSync("bench/results.md", lines.join("\n"));
}

/** `npx tsx bench/consentTurn.ts [--update]`: this row alone. */
if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const r = await consentTurnScenario({ modelMs: Number(process.env.BENCH_CONSENT_MODEL_MS ?? 300), calls: Number(process.env.BENCH_CONSENT_CALLS ?? 20) });
  console.log(JSON.stringify(r, null, 2));
  console.log(consentTurnRows(r, (m) => (m ? "met" : "**missed**")));
  if (process.argv.includes("--update")) updateCheckedIn(r);
  process.exit(0);
}
