import { spawn } from "node:child_process";
import { pino } from "pino";
import { loadScenarios, type Scenario } from "../evals/harness/scenario.js";
import { loadConfigFile } from "../src/appConfig.js";
import type { AppConfig } from "../src/appConfig.js";
import { ManualClock } from "../src/engine/clock.js";
import { PromptLibrary } from "../src/engine/promptLibrary.js";
import { MemoryLedger } from "../src/ledger/memoryLedger.js";
import { NumberHasher } from "../src/ledger/numberHash.js";
import { OpenAIChatModel } from "../src/llm/openaiChatModel.js";
import { toolSpec } from "../src/llm/toolSchema.js";
import { speakable } from "../src/tasks/sms/numbers.js";
import { initialCallState } from "../src/tasks/sms/state.js";
import { smsConfig } from "../src/tasks/sms/config.js";
import { MemoryRateLimiter } from "../src/store/rateLimiter.js";
import { PROMPTS_DIR, createService } from "../src/service.js";
import { receptionFlow } from "../tools/reception/agent.js";
import { smsTask } from "../tools/sms/task.js";
import { FakeOpenAIServer, type ChatBody } from "../test/support/fakeOpenAI.js";
import { openLimits } from "./deadline.js";
import { ensurePeerDeps } from "./peerDeps.js";
import { loadTokenizer, promptTokens, type Tokenizer } from "./tokens.js";
import { peerPolicy } from "./peerPolicy.js";
import type { PeerCall, PeerJob, PeerResult, PeerToolSpec } from "./peer/job.js";

/**
 * Row (b), side by side with a peer: the same calls played by this service and by OpenAI Agents
 * JS (bench/peer/agentCalls.ts, its own process and node_modules), both against one local model
 * server over HTTP (FakeOpenAIServer answering by peerPolicy.ts, `modelMs` per request), unpaced
 * (each event sent as soon as the last was answered). Counted per design: model requests per
 * caller turn, prompt tokens per caller turn (o200k_base over every request as it arrived) and
 * wall time per call. The peer runs twice: Agents JS's default (the model runs again after every
 * tool) and `toolUseBehavior: { stopAtToolNames }` (every tool but record_consent ends the turn,
 * its output is what the caller hears).
 */

/** Tools whose output is what the caller hears: with stopAtToolNames they end the peer's turn. record_consent is not one: a yes must still be sent. */
export const PEER_STOP_TOOLS = ["start_sms_flow", "collect_phone_number", "ask_for_other_number", "send_confirmation_sms", "cancel_sms", "opt_out_sms", "end_call", "transfer_call"];

export interface PeerCompareOptions {
  /** Time the model server takes per request. */
  modelMs: number;
  /** Each call is played this many times per design after one warm-up pass; time is the median pass. */
  runs: number;
  /** Only these scenario ids (default: the happy-path scenarios the caller plays by voice). */
  scenarioIds?: string[];
  log?: (s: string) => void;
}

export interface DesignFigures {
  requestsPerTurn: number;
  promptTokensPerTurn: number;
  wallMsPerCall: number;
}

export interface PeerCompareResult {
  modelMs: number;
  calls: string[];
  callerTurnsPerPass: number;
  passes: number;
  tokenizer: string;
  ours: DesignFigures;
  peerDefault: DesignFigures;
  peerStopAtTools: DesignFigures;
  /** Ours' wall time per call over the peer's with stopAtToolNames (target ≤ 0.5). */
  wallRatioStopAtTools: number;
  wallRatioDefault: number;
  /** Calls in which a design sent no SMS (every call chosen is one that should send one): should be none. */
  problems: string[];
}

/** The happy-path SMS calls a caller plays by voice alone: the scripted lines in order, then the fallback lines. */
function voiceCalls(ids?: string[]): Array<{ scenario: Scenario; turns: string[] }> {
  const all = loadScenarios("evals/scenarios").filter((s) => !s.persona && !s.expectFailure);
  const chosen = ids ? all.filter((s) => ids.includes(s.id)) : all.filter((s) => s.agent === "reception" && s.tags.includes("happy") && s.expect.sms?.sent === true && s.caller.direction === "inbound" && s.script.every((r) => r.say !== undefined && !r.bargeIn && r.times === 1));
  if (ids && chosen.length !== ids.length) throw new Error(`peer comparison: unknown scenario among ${ids.join(", ")}`);
  return chosen.map((s) => ({ scenario: s, turns: [...s.script.map((r) => r.say!), ...s.fallback] }));
}

/** The peer's one agent per language: persona and every step prompt as instructions, every tool of the flow. */
function peerAgent(config: AppConfig): { instructions: string; tools: PeerToolSpec[] } {
  const prompts = new PromptLibrary(PROMPTS_DIR, config.language);
  const services = { config: smsConfig(config.tasks.sms, config), ledger: new MemoryLedger(), limiter: new MemoryRateLimiter(), hasher: NumberHasher.full(), transfer: config.agents.reception!.transfer };
  const state = initialCallState({ sessionId: "peer", direction: "inbound", language: config.language, step: "main", callerNumber: "4915112345678" });
  const values = { ...receptionFlow.promptValues(state, services), ...(smsTask.hooks?.promptValues?.(state as never, services) ?? {}) };
  const fill = (t: string) => t.replace(/\{([a-z_]+)\}/g, (m, k: string) => values[k] ?? m);
  const steps = [...receptionFlow.steps, ...smsTask.steps];
  const instructions = [prompts.persona, ...steps.filter((s) => s.kind === "llm").map((s) => prompts.stepPrompt(s.prompt!))].map(fill).join("\n\n");
  const tools = [...steps.flatMap((s) => s.tools), ...(smsTask.tools ?? [])].filter((t, i, a) => a.findIndex((x) => x.name === t.name) === i);
  return { instructions, tools: tools.map((t) => toolSpec(t.name, prompts.toolDescription(t.name), t.parameters(services as never), true)) };
}

/** What each peer tool returns: the line or note the service gives for the same tool. */
function peerOutputs(config: AppConfig, callerNumber: string): Record<string, string> {
  const prompts = new PromptLibrary(PROMPTS_DIR, config.language);
  const number = speakable(callerNumber, config.homeCountry);
  const question = config.tasks.sms.consent.question.replaceAll("{number}", number).replaceAll("{business_name}", config.business.name);
  const v = { number, business_name: config.business.name };
  return {
    start_sms_flow: question,
    collect_phone_number: question,
    ask_for_other_number: prompts.line("ask_number", v),
    record_consent_yes: prompts.note("consent_given", v),
    record_consent_no: prompts.line("sms_declined", v),
    send_confirmation_sms: prompts.line("sms_sent", v),
    cancel_sms: prompts.line("sms_cancelled", v),
    opt_out_sms: prompts.line("sms_opted_out", v),
    end_call: prompts.line("goodbye", v),
    default: prompts.line("fallback", v),
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)] ?? 0;

/** Our side: the real service (webhook, engine, gate, ledger) with the real OpenAI client, one service per language. */
async function playOurs(baseURL: string, calls: ReturnType<typeof voiceCalls>, configs: Record<string, AppConfig>, passes: number, problems: string[]): Promise<number[]> {
  const tools = new Map<string, string[]>();
  const services = Object.fromEntries(
    Object.entries(configs).map(([lang, config]) => [
      lang,
      createService({
        clock: new ManualClock(),
        config,
        model: new OpenAIChatModel({ apiKey: "bench-not-sent", baseURL, timeoutMs: config.llm.timeoutMs, maxRetries: 0 }),
        ledger: new MemoryLedger(),
        logger: pino({ level: "silent" }),
        onTurn: (t) => tools.set(t.sessionId, [...(tools.get(t.sessionId) ?? []), ...t.toolCalls.map((c) => c.name)]),
        startPoster: false,
      }),
    ]),
  );
  const passMs: number[] = [];
  try {
    for (let p = 0; p < passes; p++) {
      let total = 0;
      for (const [i, { scenario, turns }] of calls.entries()) {
        const service = services[scenario.language]!;
        const session = { id: `peer-ours-${p}-${i}`, account_id: "bench", phone_number: "4921112345678", direction: "inbound", from_phone_number: scenario.caller.number, to_phone_number: "4921112345678" };
        let spoke = false;
        const post = async (event: Record<string, unknown>) => {
          const res = await service.app.inject({ method: "POST", url: "/webhook", headers: { "content-type": "application/json" }, payload: JSON.stringify({ ...event, session }) });
          if (res.statusCode >= 400) throw new Error(`webhook answered ${res.statusCode}: ${res.body}`);
          spoke = res.body.includes('"speak"');
        };
        const started = performance.now();
        await post({ type: "session_start" });
        for (const line of turns) {
          // Unpaced: the line the agent said is over at once (sipgate's assistant_speech_ended).
          if (spoke) await post({ type: "assistant_speech_ended" });
          await post({ type: "user_speak", text: line, barged_in: false });
        }
        if (spoke) await post({ type: "assistant_speech_ended" });
        await post({ type: "session_end" });
        total += performance.now() - started;
        const used = tools.get(session.id) ?? [];
        if (!used.includes("send_confirmation_sms")) problems.push(`ours, ${scenario.id}: tools ${used.join(", ")}`);
      }
      passMs.push(total / calls.length);
    }
  } finally {
    for (const s of Object.values(services)) await s.close();
  }
  return passMs;
}

/** The peer process: `node --import tsx bench/peer/agentCalls.ts`, the job on stdin, its result on stdout. */
async function playPeer(job: PeerJob): Promise<PeerResult> {
  const child = spawn(process.execPath, ["--import", "tsx", "bench/peer/agentCalls.ts"], { stdio: ["pipe", "pipe", "inherit"] });
  let out = "";
  child.stdout.on("data", (c) => (out += String(c)));
  child.stdin.end(JSON.stringify(job));
  const code = await new Promise<number | null>((r) => child.on("exit", r));
  if (code !== 0) throw new Error(`peer process exited ${code}`);
  return JSON.parse(out) as PeerResult;
}

function figures(tok: Tokenizer, requests: ChatBody[], turns: number, passMs: number[]): DesignFigures {
  const tokens = requests.reduce((a, r) => a + promptTokens(tok, r.messages, r.tools), 0);
  // The first pass warms up (JIT, connections): time is the median of the others.
  return { requestsPerTurn: requests.length / turns, promptTokensPerTurn: tokens / turns, wallMsPerCall: median(passMs.slice(1)) };
}

export async function peerCompare(opts: PeerCompareOptions): Promise<PeerCompareResult> {
  const log = opts.log ?? (() => {});
  await ensurePeerDeps(log);
  const tok = await loadTokenizer();
  const calls = voiceCalls(opts.scenarioIds);
  const configs: Record<string, AppConfig> = { "de-DE": openLimits(loadConfigFile("config/agent.yaml")), "en-US": openLimits(loadConfigFile("config/agent.en-US.yaml")) };
  const passes = opts.runs + 1;
  const turnsPerPass = calls.reduce((a, c) => a + c.turns.length, 0);
  const problems: string[] = [];
  const fake = new FakeOpenAIServer();
  const baseURL = await fake.start();
  fake.onRequest(peerPolicy(opts.modelMs));
  try {
    log(`(b) peer comparison: ours, ${calls.length} calls × ${passes} passes, model ${opts.modelMs} ms per request`);
    const oursMs = await playOurs(baseURL, calls, configs, passes, problems);
    const ours = figures(tok, fake.requests.splice(0), turnsPerPass * passes, oursMs);

    const de = configs["de-DE"]!;
    const job: PeerJob = {
      baseURL,
      model: de.llm.model,
      temperature: de.llm.temperature,
      maxTokens: de.llm.maxTokens,
      agents: Object.fromEntries(Object.entries(configs).map(([lang, c]) => [lang, peerAgent(c)])),
      calls: calls.map(({ scenario, turns }): PeerCall => ({ id: scenario.id, lang: scenario.language, turns, outputs: peerOutputs(configs[scenario.language]!, scenario.caller.number) })),
      repeat: passes,
    };
    const peer = async (stopAtToolNames?: string[]): Promise<DesignFigures> => {
      log(`(b) peer comparison: OpenAI Agents JS, ${stopAtToolNames ? "stopAtToolNames" : "default tool use"}`);
      const res = await playPeer({ ...job, ...(stopAtToolNames ? { stopAtToolNames } : {}) });
      for (const c of res.calls.slice(0, calls.length)) {
        const call = job.calls.find((x) => x.id === c.id)!;
        if (!c.answers.includes(call.outputs.send_confirmation_sms!)) problems.push(`peer (${stopAtToolNames ? "stopAtToolNames" : "default"}), ${c.id}: answers ${c.answers.join(" | ")}`);
      }
      const passMs = Array.from({ length: passes }, (_, p) => res.calls.slice(p * calls.length, (p + 1) * calls.length).reduce((a, c) => a + c.ms, 0) / calls.length);
      return figures(tok, fake.requests.splice(0), turnsPerPass * passes, passMs);
    };
    const peerDefault = await peer();
    const peerStopAtTools = await peer(PEER_STOP_TOOLS);
    return {
      modelMs: opts.modelMs,
      calls: calls.map((c) => c.scenario.id),
      callerTurnsPerPass: turnsPerPass,
      passes,
      tokenizer: tok.encoding,
      ours,
      peerDefault,
      peerStopAtTools,
      wallRatioStopAtTools: ours.wallMsPerCall / peerStopAtTools.wallMsPerCall,
      wallRatioDefault: ours.wallMsPerCall / peerDefault.wallMsPerCall,
      problems,
    };
  } finally {
    await fake.close();
  }
}

/** Model time per request in the bench's comparison (as row (e)'s quick model). */
export const PEER_MODEL_MS = Number(process.env.BENCH_PEER_MODEL_MS ?? 300);

export function peerRows(p: PeerCompareResult, verdict: string): string {
  const f = (x: number, d = 2) => x.toFixed(d);
  const both = (get: (d: DesignFigures) => number, d = 2, unit = "") => `OpenAI Agents JS: ${f(get(p.peerDefault), d)}${unit} default, ${f(get(p.peerStopAtTools), d)}${unit} stopAtToolNames`;
  const ratio = (get: (d: DesignFigures) => number) => `${f(get(p.ours) / get(p.peerStopAtTools))}× (default: ${f(get(p.ours) / get(p.peerDefault))}×)`;
  const problems = p.problems.length ? ` **${p.problems.length} calls without their SMS**: ${p.problems.slice(0, 2).join("; ")}` : "";
  return [
    `| (b) side by side: LLM requests per caller turn, ${p.calls.length} happy-path calls | ${f(p.ours.requestsPerTurn)} | ${both((d) => d.requestsPerTurn)} | ${ratio((d) => d.requestsPerTurn)} | | |`,
    `| (b) side by side: prompt tokens per caller turn (${p.tokenizer}) | ${f(p.ours.promptTokensPerTurn, 0)} | ${both((d) => d.promptTokensPerTurn, 0)} | ${ratio((d) => d.promptTokensPerTurn)} | | |`,
    `| (b) side by side: wall time per call, unpaced, model ${p.modelMs} ms per request | ${f(p.ours.wallMsPerCall, 0)} ms${problems} | ${both((d) => d.wallMsPerCall, 0, " ms")} | ${ratio((d) => d.wallMsPerCall)} | ≤ 0.5× stopAtToolNames | ${verdict} |`,
  ].join("\n");
}

export function peerNote(p: PeerCompareResult): string {
  return `- (b) side by side: the ${p.calls.length} happy-path SMS calls of the eval suite a caller plays by voice (${p.calls.join(", ")}; ${p.callerTurnsPerPass} caller turns: the scripted lines in order, then the fallback lines), played by this service (createService with the real OpenAI client, events posted as sipgate does, each at once after the last was answered) and by OpenAI Agents JS 0.14.3 in its own process (bench/peer, installed on demand from its lock file): one agent with the persona and every step prompt as instructions and every tool of the flow with the same JSON schemas and descriptions, its tools returning the line or note the service says for them, one \`run()\` per caller line with the call's history. Both ask one local model server over HTTP that takes ${p.modelMs} ms per request and answers by one policy keyed only on the last message and the tools offered (bench/peerPolicy.ts: goodbye → end_call, a number → collect_phone_number, an SMS request → start_sms_flow, yes/no → record_consent, after a yes's record_consent → send_confirmation_sms when offered, after any other tool result → its text). Agents JS runs with its default tool use (the model runs again after every tool) and with \`toolUseBehavior: { stopAtToolNames }\` (${PEER_STOP_TOOLS.join(", ")}: their output is the answer). Requests and prompt tokens (${p.tokenizer}, gpt-tokenizer, over each request's messages and tools as JSON) are counted at the model server; wall time per call from session start to its end (Agents JS: from its first to its last run), the median of ${p.passes - 1} passes after one warm-up.`;
}
