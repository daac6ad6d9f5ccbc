import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { parseConfig } from "../src/appConfig.js";
import { packageRoot } from "../src/config/paths.js";
import type { AppConfig } from "../src/appConfig.js";
import { PromptLibrary } from "../src/engine/promptLibrary.js";
import { PROMPTS_DIR } from "../src/service.js";
import type { Transport } from "../src/store/callStore.js";
import { check, type Invariant, type Violation } from "./oracle.js";
import type { Transcript } from "./transcript.js";
import { runScenario, scenarioOf } from "./world.js";

/** The reception agent's checked-in config, as a simulated world runs it (shared abuse windows open: every seed texts the same caller). */
export function simConfig(): AppConfig {
  const raw = parseYaml(readFileSync(join(packageRoot(), "config/agent.yaml"), "utf8")) as Record<string, unknown>;
  const open = { max: 1_000_000, windowSeconds: 60 };
  const sms = (raw.tasks as { sms: Record<string, unknown> }).sms;
  return parseConfig(
    {
      ...raw,
      logLevel: "silent",
      llm: { ...(raw.llm as object), maxRetries: 0 },
      tasks: { sms: { ...sms, recipients: { ...(sms.recipients as object), perRecipient: open }, abuse: { perCaller: open, perPrefix: { ...open, prefixDigits: 3 }, perCountry: open, global: open } } },
    },
    "simulation config",
  );
}

export interface SeedResult {
  seed: number;
  transport: Transport;
  violations: Violation[];
  transcript: Transcript;
}

let shared: { config: AppConfig; prompts: PromptLibrary } | undefined;

/** Run one seed on one transport and judge it. */
export async function runSeed(seed: number, transport: Transport): Promise<SeedResult> {
  shared ??= (() => {
    const config = simConfig();
    return { config, prompts: new PromptLibrary(PROMPTS_DIR, config.language) };
  })();
  const transcript = await runScenario(scenarioOf(seed, transport), shared.config, shared.prompts);
  const violations = check(transcript, { answerWithinMs: shared.config.server.answerWithinMs, maxPerCall: shared.config.tasks.sms.maxPerCall });
  return { seed, transport, violations, transcript };
}

/** The one command that replays a seed, with its trace. */
export function replayCommand(seed: number, transport: Transport): string {
  return `npm run simulate -- --seed ${seed} --transport ${transport} --trace`;
}

/** A failing seed as a reader needs it: the command, the scenario, what broke, and the call as it went. */
export function describeFailure(r: SeedResult): string {
  const s = r.transcript.scenario;
  return [
    `seed ${r.seed} (${r.transport}) broke ${r.violations.length} invariant(s); replay: ${replayCommand(r.seed, r.transport)}`,
    ...r.violations.map((v) => `  ✗ ${v.invariant}: ${v.detail}`),
    `  scenario: ${s.instances} instance(s), model ${JSON.stringify(s.model)}, caller ${JSON.stringify(s.caller)}, faults ${JSON.stringify(s.faults)}`,
    "  trace (virtual ms):",
    ...r.transcript.trace.map((l) => `    ${l}`),
    "  ledger:",
    ...r.transcript.ledger.map((x) => "    " + `${x.kind} ${x.number ?? ""} ${x.id ?? ""}${x.ref ? ` ref ${x.ref}` : ""}${x.reason ? ` (${x.reason})` : ""} ${x.reply ? `reply "${x.reply}"` : ""} ${x.detail ?? ""}`.replace(/ +/g, " ").trimEnd()),
    ...(r.transcript.crashes.length ? [`  crashes (virtual ms): ${r.transcript.crashes.join(", ")}`] : []),
  ].join("\n");
}

export interface Summary {
  runs: number;
  failing: SeedResult[];
  byInvariant: Partial<Record<Invariant, number>>;
  sends: number;
  declines: number;
  ms: number;
}

/** Seeds `from` … `from + count - 1` on each transport. */
export async function simulate(from: number, count: number, transports: Transport[], onFailure?: (r: SeedResult) => void): Promise<Summary> {
  const started = performance.now();
  const summary: Summary = { runs: 0, failing: [], byInvariant: {}, sends: 0, declines: 0, ms: 0 };
  for (const transport of transports) {
    for (let seed = from; seed < from + count; seed++) {
      const r = await runSeed(seed, transport);
      summary.runs++;
      summary.sends += r.transcript.heard.filter((h) => h.kind === "send_sms").length;
      summary.declines += r.transcript.ledger.filter((x) => x.kind === "consent_declined").length;
      if (r.violations.length) {
        summary.failing.push(r);
        for (const v of r.violations) summary.byInvariant[v.invariant] = (summary.byInvariant[v.invariant] ?? 0) + 1;
        onFailure?.(r);
      }
    }
  }
  summary.ms = performance.now() - started;
  return summary;
}
