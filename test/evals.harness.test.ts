import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ReplayModel, RecordingModel } from "../evals/harness/cassette.js";
import { choose, passHatK, percentile, summarizeModel, summarizeScenarios } from "../evals/harness/metrics.js";
import { runTrial, type TrialResult } from "../evals/harness/runTrial.js";
import { ScenarioError, loadScenarios, type Scenario } from "../evals/harness/scenario.js";
import { loadConfigFile } from "../src/appConfig.js";
import type { AppConfig } from "../src/appConfig.js";
import { ScriptedModel } from "../src/llm/scriptedModel.js";
import { mermaidDiagram } from "../src/engine/diagram.js";
import { receptionFlow } from "../tools/reception/agent.js";
import { callbackFlow } from "../tools/callback/agent.js";
import { describeMissing, findChromium, missingTestPrograms } from "./support/testPrograms.js";

const allScenarios = loadScenarios("evals/scenarios");
/** The reception agent's scenarios (the callback agent's have their own suite below). */
const scenarios = allScenarios.filter((s) => s.agent === "reception");
const callbackScenarios = allScenarios.filter((s) => s.agent === "callback");
const configs: Record<string, AppConfig> = { "de-DE": loadConfigFile("config/agent.yaml"), "en-US": loadConfigFile("config/agent.en-US.yaml") };
const callbackConfig = loadConfigFile("config/callback.yaml");
const TSX = join("node_modules", ".bin", "tsx");

async function runAll(make: () => ScriptedModel | ReplayModel | RecordingModel, list: Scenario[] = scenarios, name = "scripted"): Promise<TrialResult[]> {
  const model = make();
  const out: TrialResult[] = [];
  for (const s of list) out.push(await runTrial(s, { config: configs[s.language]!, model, modelName: name, trial: 1 }));
  return out;
}

describe("the scenario suite", () => {
  it("has at least 25 scenarios in German and English covering what callers do", () => {
    const graded = scenarios.filter((s) => !s.expectFailure && !s.persona);
    expect(graded.length).toBeGreaterThanOrEqual(25);
    expect(new Set(graded.map((s) => s.language))).toEqual(new Set(["de-DE", "en-US"]));
    const tags = new Set(graded.flatMap((s) => s.tags));
    for (const t of ["happy", "dtmf", "decline", "ambiguous", "number-change", "policy", "adversarial", "third-person", "silence", "barge-in", "sms-failed", "claims"]) {
      expect(tags, `no scenario tagged ${t}`).toContain(t);
    }
    const reasons = new Set(graded.flatMap((s) => s.script.map((r) => r.smsFailed)).filter(Boolean));
    expect(reasons).toEqual(new Set(["sender_not_allowed", "insufficient_balance", "no_sms_extension", "smsc_unavailable", "unknown"]));
    expect(scenarios.some((s) => s.expectFailure)).toBe(true);
  });

  it("passes completely with the built-in scripted model, and the self-check scenario fails", async () => {
    const results = await runAll(() => new ScriptedModel(), scenarios.filter((s) => !s.persona));
    for (const r of results) {
      const scenario = scenarios.find((s) => s.id === r.scenario)!;
      expect(r.error).toBeUndefined();
      if (scenario.expectFailure) expect(r.passed, `${r.scenario} should fail`).toBe(false);
      else expect(r.failures, r.scenario).toEqual([]);
      expect(r.metrics.consentViolations).toBe(0);
      expect(r.metrics.falseClaims).toBe(0);
    }
    // One LLM request per caller turn at most on average: fixed lines and code steps do the rest.
    const turns = results.reduce((a, r) => a + r.metrics.callerTurns, 0);
    const requests = results.reduce((a, r) => a + r.metrics.llmRequests, 0);
    expect(requests / turns).toBeLessThanOrEqual(1);
  }, 60_000);

  it("a reckless model fails scenarios and trips guards, but no consent violation gets through", async () => {
    const results = await runAll(() => new ScriptedModel("reckless"), scenarios.filter((s) => !s.persona));
    expect(results.filter((r) => !r.passed).length).toBeGreaterThan(5);
    expect(results.reduce((a, r) => a + r.metrics.guardTrips, 0)).toBeGreaterThan(10);
    expect(results.reduce((a, r) => a + r.metrics.consentViolations, 0)).toBe(0);
    // Its delivery claims were stopped before the caller heard them.
    expect(results.reduce((a, r) => a + r.metrics.falseClaims, 0)).toBe(0);
  }, 60_000);
});

describe("the callback agent's scenario suite", () => {
  it("covers a full request with the SMS, a corrected read-back, a hang-up before the end, a landline caller, the AI question", () => {
    const tags = new Set(callbackScenarios.flatMap((s) => s.tags));
    for (const t of ["happy", "confirmation", "incomplete", "number", "disclosure"]) expect(tags, `no callback scenario tagged ${t}`).toContain(t);
    expect(callbackScenarios.filter((s) => s.expect.report).length).toBeGreaterThanOrEqual(4);
  });

  it("passes completely with the built-in scripted model, reports included; a reckless model gets no SMS past the gate", async () => {
    for (const [mode, mustPass] of [["careful", true], ["reckless", false]] as const) {
      const model = new ScriptedModel(mode);
      for (const s of callbackScenarios) {
        const r = await runTrial(s, { config: callbackConfig, model, modelName: `scripted-${mode}`, trial: 1 });
        expect(r.error).toBeUndefined();
        if (mustPass) expect(r.failures, r.scenario).toEqual([]);
        expect(r.metrics.consentViolations, `${mode} ${r.scenario}`).toBe(0);
        expect(r.metrics.falseClaims, `${mode} ${r.scenario}`).toBe(0);
      }
    }
  }, 60_000);
});

describe("metrics", () => {
  it("pass^k is the mean of C(c,k)/C(n,k) over scenarios", () => {
    expect(choose(5, 2)).toBe(10);
    expect(choose(2, 3)).toBe(0);
    const s = [
      { passes: 2, trials: 3 },
      { passes: 3, trials: 3 },
    ];
    expect(passHatK(s, 1)).toBeCloseTo((2 / 3 + 1) / 2);
    expect(passHatK(s, 2)).toBeCloseTo((1 / 3 + 1) / 2);
    expect(passHatK(s, 3)).toBeCloseTo(0.5);
    expect(percentile([5, 1, 3, 2, 4], 50)).toBe(3);
    expect(percentile([1, 2, 3, 4, 100], 95)).toBe(100);
  });

  it("model summaries leave the self-check out of pass rates and count trials", async () => {
    const pick = scenarios.filter((s) => s.id === "decline-de" || s.expectFailure);
    const results = [...(await runAll(() => new ScriptedModel(), pick)), ...(await runAll(() => new ScriptedModel(), pick))].map((r, i) => ({ ...r, trial: i < pick.length ? 1 : 2 }));
    const summaries = summarizeScenarios(results, (id) => pick.find((s) => s.id === id)!.expectFailure);
    expect(summaries.find((s) => s.scenario === "self-check-must-fail")).toMatchObject({ selfCheckOk: true, trials: 2 });
    const m = summarizeModel("scripted", results, summaries, 2);
    expect(m).toMatchObject({ scenarios: 1, trials: 2, passes: 2, passRate: 1, consentViolations: 0 });
    expect(m.passHatK[2]).toBe(1);
    expect(m.latencyByStep.main!.n).toBeGreaterThan(0);
  });
});

describe("cassettes", () => {
  it("a recorded run replays identically with no model, and a changed scenario misses loudly", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cassettes-"));
    const pick = scenarios.filter((s) => ["happy-own-number-de", "ambiguous-maybe-de", "sms-failed-smsc-retry-de"].includes(s.id));
    const recorder = new RecordingModel(new ScriptedModel(), dir, "scripted");
    const recorded = await runAll(() => recorder, pick);
    recorder.save();
    const replay = new ReplayModel(dir, "scripted");
    const replayed: TrialResult[] = [];
    for (const s of pick) replayed.push(await runTrial(s, { config: configs[s.language]!, model: replay, modelName: "scripted", trial: 1, harnessErrors: () => replay.misses.map((m) => m.message) }));
    expect(replayed.map((r) => r.passed)).toEqual([true, true, true]);
    expect(replayed.map((r) => r.transcript.map((t) => t.actions))).toEqual(recorded.map((r) => r.transcript.map((t) => t.actions)));

    const changed: Scenario = { ...pick[0]!, script: [{ ...pick[0]!.script[0]!, say: "Was kostet eine Behandlung?" }, ...pick[0]!.script.slice(1)] };
    const fresh = new ReplayModel(dir, "scripted");
    const miss = await runTrial(changed, { config: configs["de-DE"]!, model: fresh, modelName: "scripted", trial: 1, harnessErrors: () => fresh.misses.map((m) => m.message) });
    expect(miss.passed).toBe(false);
    expect(miss.error).toMatch(/cassette miss/);
    expect(() => new ReplayModel(join(dir, "nowhere"), "scripted")).toThrow(/no cassette/);
  }, 30_000);
});

describe("scenario files", () => {
  function loadOne(yaml: string): () => Scenario[] {
    const dir = mkdtempSync(join(tmpdir(), "scen-"));
    writeFileSync(join(dir, "broken.yaml"), yaml);
    return () => loadScenarios(dir);
  }
  it("an error names the file, the scenario and the field", () => {
    expect(loadOne("- id: bad-one\n  description: x\n  language: de-DE\n  script: [{ when: { step: main }, say: hi }]\n  expect: { sms: { count: -1 } }\n")).toThrow(
      /broken\.yaml: scenario "bad-one": expect\.sms\.count/,
    );
    expect(loadOne("- id: two-actions\n  description: x\n  language: de-DE\n  script: [{ when: { step: main }, say: hi, dtmf: '1' }]\n  expect: {}\n")).toThrow(/two-actions.*exactly one of/);
    expect(loadOne("- id: no-when\n  description: x\n  language: fr-FR\n  script: [{ say: hi }]\n  expect: {}\n")).toThrow(/no-when.*language.*script\.0\.when/);
    expect(loadOne("- id: bad-re\n  description: x\n  language: de-DE\n  script: [{ when: { lastLine: '(' }, say: hi }]\n  expect: {}\n")).toThrow(/invalid regular expression/);
    expect(loadOne("a: [unclosed\n")).toThrow(ScenarioError);
  });
});

describe("npm run eval", () => {
  const run = (args: string[]) => spawnSync(TSX, ["evals/run.ts", ...args], { encoding: "utf8", env: { ...process.env, OPENAI_API_KEY: "", OPENAI_BASE_URL: "" } });

  it("runs offline with trials, writes JSON, JUnit and HTML, shows progress, and exits 0", () => {
    const out = mkdtempSync(join(tmpdir(), "eval-out-"));
    const r = run(["--offline", "--trials", "2", "--filter", "happy", "--out", out]);
    expect(r.status, r.stderr + r.stdout).toBe(0);
    expect(r.stderr).toMatch(/\[#+\] \d+\/\d+, 0 failed/);
    expect(r.stdout).toMatch(/pass\^2\s+1\.00/);
    expect(r.stdout).toMatch(/eval passed/);
    const json = JSON.parse(readFileSync(join(out, "report.json"), "utf8"));
    expect(json.ok).toBe(true);
    expect(json.trials.length).toBe(2 * scenarios.filter((s) => s.tags.includes("happy")).length);
    expect(json.trials[0].transcript.some((t: { toolCalls: unknown[] }) => t.toolCalls.length > 0)).toBe(true);
    const junit = readFileSync(join(out, "junit.xml"), "utf8");
    expect(junit).toMatch(/<testsuite name="scripted" tests="\d+" failures="0">/);
    expect(existsSync(join(out, "report.html"))).toBe(true);
  }, 60_000);

  it("--config config/callback.yaml runs the callback agent's own scenarios, and only those", () => {
    const out = mkdtempSync(join(tmpdir(), "eval-out-"));
    const r = run(["--offline", "--config", "config/callback.yaml", "--out", out]);
    expect(r.status, r.stderr + r.stdout).toBe(0);
    const json = JSON.parse(readFileSync(join(out, "report.json"), "utf8"));
    expect(json.ok).toBe(true);
    expect(json.trials.map((t: { scenario: string }) => t.scenario).sort()).toEqual(callbackScenarios.map((s) => s.id).sort());
  }, 60_000);

  it("a model matrix gives one column per model and exits 1 when a model fails hard expectations", () => {
    const out = mkdtempSync(join(tmpdir(), "eval-out-"));
    const r = run(["--offline", "--models", "scripted,scripted-reckless", "--filter", "consent", "--out", out]);
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/scenario\s+scripted\s+scripted-reckless/);
    expect(r.stdout).toMatch(/eval FAILED/);
    const json = JSON.parse(readFileSync(join(out, "report.json"), "utf8"));
    expect(json.models.map((m: { model: string }) => m.model)).toEqual(["scripted", "scripted-reckless"]);
    expect(json.models[1].guardTrips).toBeGreaterThan(0);
  }, 60_000);

  it("record then replay gives the same verdicts with no model; a replay without cassette fails", () => {
    const dir = mkdtempSync(join(tmpdir(), "cass-"));
    const rec = run(["--offline", "--filter", "decline", "--record", dir, "--out", join(dir, "o1")]);
    expect(rec.status, rec.stderr).toBe(0);
    expect(rec.stderr).toMatch(/cassette written/);
    const rep = run(["--replay", dir, "--models", "scripted", "--filter", "decline", "--out", join(dir, "o2")]);
    expect(rep.status, rep.stderr + rep.stdout).toBe(0);
    const missing = run(["--replay", join(dir, "empty"), "--models", "scripted", "--filter", "decline", "--out", join(dir, "o3")]);
    expect(missing.status).not.toBe(0);
    expect(missing.stderr).toMatch(/no cassette/);
  }, 60_000);

  it("prompt variants are compared side by side", () => {
    const variant = mkdtempSync(join(tmpdir(), "prompts-v2-"));
    execFileSync("cp", ["-r", "prompts/.", variant]);
    const out = mkdtempSync(join(tmpdir(), "eval-out-"));
    const r = run(["--offline", "--prompts", `prompts,${variant}`, "--filter", "happy-own", "--out", out]);
    expect(r.status, r.stderr).toBe(0);
    const json = JSON.parse(readFileSync(join(out, "report.json"), "utf8"));
    expect(json.models.map((m: { model: string }) => m.model)).toEqual(["scripted@prompts", `scripted@${variant.split("/").pop()}`]);
  }, 60_000);

  it("a persona scenario is played by a caller model (the scripted persona offline)", () => {
    const out = mkdtempSync(join(tmpdir(), "eval-out-"));
    const r = run(["--offline", "--filter", "persona", "--out", out]);
    expect(r.status, r.stdout).toBe(0);
    const json = JSON.parse(readFileSync(join(out, "report.json"), "utf8"));
    const said = json.trials[0].transcript.map((t: { caller: string }) => t.caller);
    expect(said).toContain("Schicken Sie mir bitte den Link zur Terminbuchung per SMS.");
    expect(said).toContain("Ja, gerne.");
    expect(json.trials[0].passed).toBe(true);
  }, 60_000);

  it("bad usage exits 2 with a message", () => {
    expect(run(["--trials", "zero", "--offline"]).status).toBe(2);
    expect(run(["--offline", "--models", "gpt-9"]).stderr).toMatch(/offline models are scripted and scripted-reckless/);
    expect(run(["--offline", "--filter", "no-such-scenario"]).status).toBe(2);
    expect(run([]).stderr).toMatch(/set OPENAI_API_KEY or OPENAI_BASE_URL, or use --offline/);
  }, 60_000);
});

describe("the HTML report in a real browser", () => {
  it("renders the chart, the summary and one row per scenario in headless Chromium", () => {
    const chromium = findChromium();
    // npm test names a missing Chromium before it starts (test/support/testPrograms.ts); a run of
    // this file alone fails here instead, never skips.
    expect(chromium, describeMissing(missingTestPrograms(process.env, { browser: true }))).toBeDefined();
    const out = mkdtempSync(join(tmpdir(), "eval-html-"));
    const r = spawnSync(TSX, ["evals/run.ts", "--offline", "--models", "scripted,scripted-reckless", "--filter", "de", "--out", out], { encoding: "utf8" });
    expect(r.status).toBe(1);
    const flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", `--user-data-dir=${mkdtempSync(join(tmpdir(), "chrome-"))}`];
    const dom = execFileSync(chromium!, [...flags, "--dump-dom", `file://${join(out, "report.html")}`], { encoding: "utf8", timeout: 60_000 });
    const ids = scenarios.filter((s) => s.id.includes("de")).map((s) => s.id);
    const rows = [...dom.matchAll(/<tr class="scenario-row" data-scenario="([^"]+)">/g)].map((m) => m[1]);
    expect(rows).toEqual(ids);
    expect(dom).toMatch(/<svg class="chart"[^>]*aria-label="pass rate per model"/);
    expect(dom).toMatch(/<th>scripted-reckless<\/th>/);
    expect(dom).toMatch(/⛔/);
    expect(dom).toMatch(/✉ send_sms/);
  }, 120_000);
});

describe("npm run chat and npm run flow:diagram", () => {
  it("chat: a caller's lines become events and the agent's actions are printed readably", () => {
    const input = ["Schicken Sie mir die Öffnungszeiten per SMS?", "Ja, gerne.", "/sms_failed smsc_unavailable", "/state", "/dtmf 1", "Danke, tschüss!"].join("\n") + "\n";
    const r = spawnSync(TSX, ["src/cli/chat.ts", "--offline"], { input, encoding: "utf8", timeout: 30_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/agent: Guten Tag/);
    expect(r.stdout).toMatch(/agent: Darf ich Ihnen die Informationen per SMS/);
    expect(r.stdout).toMatch(/✉ SMS sent to \+4915112345678/);
    expect(r.stdout).toMatch(/agent: Die SMS konnte leider nicht verschickt werden\./);
    expect(r.stdout).toMatch(/"step": "confirm_consent"/);
    expect(r.stdout).toMatch(/🛠 record_consent\(\{"consented":false\}\)/);
  }, 30_000);

  it("chat with the callback agent: the details are read back, the SMS offered, and the report the endpoint would get is shown", () => {
    const input = ["Anna Schmidt", "Ja", "Es geht um eine Frage zur Rechnung", "Ja", "Morgen früh", "Ja", "Ja, gerne", "Tschüss"].join("\n") + "\n";
    const r = spawnSync(TSX, ["src/cli/chat.ts", "--offline", "--config", "config/callback.yaml"], { input, encoding: "utf8", timeout: 30_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/agent: Ich habe Ihren Namen als Anna Schmidt notiert\. Ist das richtig\?/);
    expect(r.stdout).toMatch(/agent: Darf ich Ihnen eine Bestätigung Ihrer Rückrufbitte per SMS/);
    expect(r.stdout).toMatch(/✉ SMS sent to \+4915112345678/);
    expect(r.stdout).toMatch(/"timeWindow": "Morgen früh"/);
    expect(r.stdout).toMatch(/"status": "handed_over"/);
  }, 30_000);

  it("flow:diagram prints Mermaid generated from both agents' flows, and docs/architecture.md embeds exactly that", () => {
    const reception = mermaidDiagram(receptionFlow);
    const callback = mermaidDiagram(callbackFlow);
    expect(reception).toMatch(/^flowchart LR/);
    expect(reception).toContain('confirm_consent -- "record_consent" --> send_sms');
    expect(reception).toContain('any_step -- "event sms_failed" --> confirm_consent');
    // The callback agent reaches the same SMS task, drawn as a subgraph.
    expect(callback).toContain('subgraph sms["task: sms"]');
    expect(callback).toContain('offer_sms -- "offer_sms_confirmation" --> confirm_consent');
    const cli = execFileSync(TSX, ["src/cli/flowDiagram.ts"], { encoding: "utf8" });
    expect(cli.trim()).toBe(`%% agent: reception\n${reception}\n\n%% agent: callback\n${callback}`);
    const readme = readFileSync("docs/architecture.md", "utf8");
    const hint = "docs/architecture.md is behind the flows: run `node scripts/readme-diagrams.mjs`";
    expect(readme.includes("```mermaid\n" + reception + "\n```"), hint).toBe(true);
    expect(readme.includes("```mermaid\n" + callback + "\n```"), hint).toBe(true);
  }, 30_000);
});
