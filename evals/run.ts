import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { npmTookOffline } from "../src/cli/npmOffline.js";
import { parseArgs } from "node:util";
import { ConfigError, applyEnv, configPathFrom, loadConfigFile } from "../src/appConfig.js";
import type { Language } from "../src/config/schema.js";
import type { AppConfig } from "../src/appConfig.js";
import type { ChatModel } from "../src/llm/chatModel.js";
import { createModel } from "../src/llm/createModel.js";
import { NoCassetteError, ReplayModel, RecordingModel, personaCallerCassette } from "./harness/cassette.js";
import { EndpointWatch } from "./harness/endpointWatch.js";
import { CallReplayModel } from "./harness/callReplay.js";
import { readCallTimeline } from "./harness/callSource.js";
import { FromCallError, PREFILLED_MARK, scenarioFromCall } from "./harness/fromCall.js";
import { summarizeModel, summarizeScenarios } from "./harness/metrics.js";
import { ScriptedPersonaModel } from "./harness/personaCaller.js";
import { consoleReport, writeReports, type RunReport } from "./harness/report.js";
import { runTrial, type TrialResult } from "./harness/runTrial.js";
import { ScenarioError, loadScenarios, type Scenario } from "./harness/scenario.js";
import { ScriptedModel } from "../src/llm/scriptedModel.js";
import { numberHasher } from "../src/service.js";

/**
 * `npm run eval`: every scenario × model × prompt variant × trial through the real service.
 * Exit code 1 when a hard expectation fails, a consent violation happens, a self-check
 * scenario passes, or the harness itself errs (cassette miss); 2 for bad usage, and when a
 * model's endpoint never answered at all (EXIT_UNREACHABLE): that is a setup problem to fix
 * before any score means something, not a 0% pass rate.
 */

const USAGE = `usage: npm run eval -- [options]
  --offline            built-in scripted model (no network); models: scripted, scripted-reckless
  --models a,b         model names (online: llm.model on OPENAI_BASE_URL / OPENAI_API_KEY)
  --matrix             the models listed under evalModels in the config (own baseURL, apiKeyEnv, strictTools each)
  --prompts d1,d2      prompt folders to compare (default: prompts/)
  --trials n           runs per scenario (default 1); reports pass^k for k <= n
  --record dir         store every model exchange in cassettes in dir
  --replay dir         answer only from cassettes in dir (no network); a miss fails the run
  --filter text        only scenarios whose id or tags contain text
  --scenarios dir      scenario folder (default evals/scenarios)
  --out dir            where report.json, junit.xml and report.html go (default .eval-out)
  --config path        base config (default CONFIG or config/agent.yaml); its agent picks the scenarios
                       (config/callback.yaml: the callback agent's)
  --from-call id       write a scenario from a reviewed call (review.transcripts: true) and stop; the call is read
                       from --service URL (with ADMIN_TOKEN) or from REDIS_URL
  --service url        the running service whose call review --from-call reads (e.g. https://agent.example.com)
  --scenario-out file  where --from-call writes (default <scenarios>/from-call-<id>.yaml)`;

interface ModelEntry {
  name: string;
  model: string;
  /** Where an online model is reached, for the "unreachable" message; offline models have none. */
  endpoint?: string;
  /** Overrides llm.strictTools for this model (local servers that reject `strict`). */
  strictTools?: boolean;
  /** A fresh client; with a watch, its failures and answers are counted. */
  make: (watch?: EndpointWatch) => ChatModel;
}

/** The openai client's own default, shown when neither the entry nor OPENAI_BASE_URL names one. */
const OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1";

/** Same code as bad usage: the run could not measure the model at all. */
const EXIT_UNREACHABLE = 2;

function fail(message: string): never {
  console.error(`eval: ${message}\n\n${USAGE}`);
  process.exit(2);
}

async function main(): Promise<number> {
  const tookOffline = npmTookOffline(process.env, process.argv.slice(2), "run eval");
  if (tookOffline) {
    console.error(`eval: ${tookOffline}`);
    return 2;
  }
  let args;
  try {
    args = parseArgs({
      options: {
        offline: { type: "boolean", default: false },
        models: { type: "string" },
        matrix: { type: "boolean", default: false },
        prompts: { type: "string" },
        trials: { type: "string", default: "1" },
        record: { type: "string" },
        replay: { type: "string" },
        filter: { type: "string" },
        scenarios: { type: "string", default: "evals/scenarios" },
        out: { type: "string", default: ".eval-out" },
        config: { type: "string" },
        "from-call": { type: "string" },
        service: { type: "string" },
        "scenario-out": { type: "string" },
        help: { type: "boolean", default: false },
      },
      strict: true,
    }).values;
  } catch (e) {
    fail((e as Error).message);
  }
  if (args.help) {
    console.log(USAGE);
    return 0;
  }
  const trials = Number(args.trials);
  if (!Number.isInteger(trials) || trials < 1 || trials > 100) fail(`--trials must be a whole number from 1 to 100, got "${args.trials}"`);
  if (args.record && args.replay) fail("--record and --replay exclude each other");

  const basePath = args.config ?? configPathFrom([], process.env);
  const base = applyEnv(loadConfigFile(basePath), process.env);
  if (args["from-call"]) return writeFromCall(args["from-call"], args, base);
  // ledger.numbers: hashed without LEDGER_HASH_KEY: one line now, not an error in every trial.
  numberHasher(base, process.env);
  const configs = new Map<Language, AppConfig>([[base.language, base]]);
  const configFor = (lang: Language): AppConfig => {
    let c = configs.get(lang);
    if (!c) {
      const sibling = basePath.replace(/agent(\.[a-zA-Z-]+)?\.yaml$/, `agent.${lang}.yaml`);
      if (!existsSync(sibling)) throw new ConfigError(`no config for ${lang}: expected ${sibling}`);
      c = applyEnv(loadConfigFile(sibling), process.env);
      configs.set(lang, c);
    }
    return c;
  };

  // Each agent has its own scenarios (`agent:` in each scenario; reception when absent).
  let scenarios: Scenario[] = loadScenarios(args.scenarios!).filter((s) => s.agent === base.agent);
  if (scenarios.length === 0) fail(`no scenarios for agent ${base.agent} in ${args.scenarios}`);
  if (args.filter) scenarios = scenarios.filter((s) => s.id.includes(args.filter!) || s.tags.some((t) => t.includes(args.filter!)));
  if (scenarios.length === 0) fail(`no scenarios match "${args.filter ?? ""}" in ${args.scenarios}`);

  const models = modelEntries(args, base);
  const promptDirs = args.prompts ? args.prompts.split(",").map((p) => p.trim()).filter(Boolean) : [undefined];
  for (const d of promptDirs) if (d && !existsSync(d)) fail(`prompt folder ${d} does not exist`);

  const startedAt = new Date().toISOString();
  const results: TrialResult[] = [];
  const total = models.length * promptDirs.length * scenarios.length * trials;
  const progress = new Progress(total);
  const recorders: RecordingModel[] = [];
  const personas = scenarios.some((s) => s.persona);
  for (const entry of models) {
    for (const promptsDir of promptDirs) {
      const column = promptsDir ? `${entry.name}@${promptsDir.replace(/\/$/, "").split("/").pop()}` : entry.name;
      const watch = entry.endpoint ? new EndpointWatch() : undefined;
      let model = entry.make(watch);
      // The model that plays a persona scenario's caller is recorded and replayed like the agent's:
      // a replay with another caller (the offline persona) would ask the agent other things and miss.
      let callerModel: ChatModel | undefined;
      const replays: ReplayModel[] = [];
      if (args.record) {
        const rec = new RecordingModel(model, args.record, column);
        recorders.push(rec);
        model = rec;
        if (personas) {
          const callerRec = new RecordingModel(args.offline ? new ScriptedPersonaModel() : entry.make(), args.record, personaCallerCassette(column));
          recorders.push(callerRec);
          callerModel = callerRec;
        }
      } else if (args.replay) {
        const replay = new ReplayModel(args.replay, column);
        replays.push(replay);
        model = replay;
        if (personas) {
          const callerReplay = new ReplayModel(args.replay, personaCallerCassette(column));
          replays.push(callerReplay);
          callerModel = callerReplay;
        }
      } else if (personas) callerModel = args.offline ? new ScriptedPersonaModel() : entry.make();
      // Each trial reports only the misses that happened during it.
      const seen = new Map<ReplayModel, number>();
      const harnessErrors = replays.length
        ? () =>
            replays.flatMap((r) => {
              const from = seen.get(r) ?? 0;
              seen.set(r, r.misses.length);
              return r.misses.slice(from).map((m) => m.message);
            })
        : undefined;
      for (const scenario of scenarios) {
        const langConfig = configFor(scenario.language);
        const config = { ...langConfig, llm: { ...langConfig.llm, model: entry.model, strictTools: entry.strictTools ?? langConfig.llm.strictTools } };
        for (let trial = 1; trial <= trials; trial++) {
          // A reviewed call's scenario answers offline from its own recorded model answers.
          const callReplay = scenario.replay && (args.offline || args.replay) ? new CallReplayModel(scenario.id, scenario.replay) : undefined;
          const trialErrors = callReplay ? () => [...(harnessErrors?.() ?? []), ...callReplay.misses] : harnessErrors;
          const r = await runTrial(scenario, { config, model: callReplay ?? model, modelName: column, trial, promptsDir, harnessErrors: trialErrors, callerModel });
          results.push(r);
          progress.tick(r, scenario.expectFailure);
        }
      }
      const unreachable = watch?.unreachable();
      if (unreachable) {
        progress.done();
        console.error(`eval: model ${entry.model} at ${entry.endpoint} is unreachable (${unreachable})`);
        return EXIT_UNREACHABLE;
      }
    }
  }
  progress.done();
  for (const rec of recorders) console.error(`cassette written: ${rec.save()}`);

  const expectFailure = new Set(scenarios.filter((s) => s.expectFailure).map((s) => s.id));
  const scenarioSummaries = summarizeScenarios(results, (id) => expectFailure.has(id));
  const columns = [...new Set(results.map((r) => r.model))];
  const modelSummaries = columns.map((m) => summarizeModel(m, results, scenarioSummaries, trials));
  const problems: string[] = [];
  for (const s of scenarioSummaries) if (s.expectFailure && !s.selfCheckOk) problems.push(`self-check ${s.scenario} [${s.model}] did not fail: the harness is not judging`);
  for (const m of modelSummaries) {
    if (m.consentViolations > 0) problems.push(`${m.model}: ${m.consentViolations} consent violation(s) (gate: 0)`);
    if (m.harnessErrors > 0) problems.push(`${m.model}: ${m.harnessErrors} trial(s) hit a harness error (see report)`);
  }
  for (const r of results) if (r.error) problems.push(`${r.scenario} [${r.model}] #${r.trial}: ${r.error}`);
  const failedGraded = scenarioSummaries.filter((s) => !s.expectFailure && s.passes < s.trials);
  const report: RunReport = {
    startedAt,
    finishedAt: new Date().toISOString(),
    options: { offline: args.offline, models: columns, trials, prompts: args.prompts ?? "prompts", record: args.record, replay: args.replay, filter: args.filter },
    models: modelSummaries,
    scenarios: scenarioSummaries,
    trials: results,
    ok: problems.length === 0 && failedGraded.length === 0,
    problems,
  };
  const files = writeReports(report, args.out!);
  console.log(consoleReport(report));
  console.log(`reports: ${files.json}, ${files.junit}, ${files.html}`);
  return report.ok ? 0 : 1;
}

/** `--from-call`: the reviewed call as a scenario file; the suite runs it from then on. */
async function writeFromCall(callId: string, args: { service?: string; "scenario-out"?: string; scenarios?: string }, base: AppConfig): Promise<number> {
  const entries = await readCallTimeline(callId, { service: args.service, env: process.env });
  const { id, yaml } = scenarioFromCall(callId, entries, { language: base.language, agent: base.agent });
  const file = args["scenario-out"] ?? join(args.scenarios!, `${id}.yaml`);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, yaml);
  console.log(`scenario ${id} written to ${file}: review the expectations marked "${PREFILLED_MARK.slice(2)}", then npm run eval -- --offline --filter ${id}`);
  return 0;
}

function modelEntries(args: { offline?: boolean; models?: string; matrix?: boolean; replay?: string }, base: AppConfig): ModelEntry[] {
  const names = args.models ? args.models.split(",").map((m) => m.trim()).filter(Boolean) : [];
  if (args.offline) {
    const offline = names.length ? names : ["scripted"];
    return offline.map((name) => {
      if (name !== "scripted" && name !== "scripted-reckless") fail(`offline models are scripted and scripted-reckless, not "${name}"`);
      return { name, model: name, make: () => new ScriptedModel(name === "scripted" ? "careful" : "reckless") };
    });
  }
  const env = process.env;
  // The production model client (timeouts, retries, circuit breaker), but without fallbacks:
  // a failing model must show in its own column, not be hidden by another one.
  const online = (name: string, model: string, baseURL: string | undefined, apiKey: string | undefined, strictTools?: boolean): ModelEntry => ({
    name,
    model,
    strictTools,
    endpoint: baseURL || OPENAI_DEFAULT_BASE_URL,
    make: (watch) => {
      const client = createModel({ ...base, llm: { ...base.llm, fallbacks: [] } }, { OPENAI_BASE_URL: baseURL, OPENAI_API_KEY: apiKey }, watch ? { onError: watch.onError } : {});
      return watch ? watch.wrap(client) : client;
    },
  });
  if (args.matrix) {
    if (base.evalModels.length === 0) fail("--matrix needs evalModels in the config");
    return base.evalModels.map((m) => online(m.name, m.model, m.baseURL ?? env.OPENAI_BASE_URL, m.apiKeyEnv ? env[m.apiKeyEnv] : env.OPENAI_API_KEY, m.strictTools));
  }
  if (!args.replay && !env.OPENAI_API_KEY && !env.OPENAI_BASE_URL) fail("set OPENAI_API_KEY or OPENAI_BASE_URL, or use --offline / --replay");
  const list = names.length ? names : [base.llm.model];
  return list.map((name) => online(name, name, env.OPENAI_BASE_URL, env.OPENAI_API_KEY));
}

/** A live progress line on a terminal; one line per trial otherwise (CI logs). */
class Progress {
  private n = 0;
  private failures = 0;
  private readonly tty = process.stderr.isTTY;
  constructor(private readonly total: number) {}

  tick(r: TrialResult, expectFailure: boolean): void {
    this.n++;
    const ok = expectFailure ? !r.passed && !r.error : r.passed;
    if (!ok) this.failures++;
    const width = 24;
    const filled = Math.round((this.n / this.total) * width);
    const bar = `[${"#".repeat(filled)}${".".repeat(width - filled)}] ${this.n}/${this.total}, ${this.failures} failed`;
    if (this.tty) process.stderr.write(`\r${bar} ${ok ? "✓" : "✗"} ${r.scenario} (${r.model})`.padEnd(110));
    else process.stderr.write(`${bar} ${ok ? "ok  " : "FAIL"} ${r.scenario} (${r.model}) #${r.trial}\n`);
  }
  done(): void {
    if (this.tty) process.stderr.write("\n");
  }
}

main().then(
  (code) => process.exit(code),
  (e) => {
    if (e instanceof ScenarioError || e instanceof ConfigError || e instanceof FromCallError) {
      console.error(`eval: ${e.message}`);
      process.exit(2);
    }
    // A replay without its cassette: one line naming the file, as a miss would be (exit 1).
    if (e instanceof NoCassetteError) {
      console.error(`eval: ${e.message}`);
      process.exit(1);
    }
    console.error(e);
    process.exit(1);
  },
);
