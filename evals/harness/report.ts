import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ModelSummary, ScenarioSummary } from "./metrics.js";
import type { TrialResult } from "./runTrial.js";

/** Everything one eval run produced, the input of every report. */
export interface RunReport {
  startedAt: string;
  finishedAt: string;
  options: Record<string, unknown>;
  models: ModelSummary[];
  scenarios: ScenarioSummary[];
  trials: TrialResult[];
  ok: boolean;
  problems: string[];
}

const pct = (x: number) => `${(x * 100).toFixed(0)}%`;

/** The console table: scenario × model, then one summary row per model. */
export function consoleReport(r: RunReport): string {
  const models = r.models.map((m) => m.model);
  const ids = [...new Set(r.scenarios.map((s) => s.scenario))];
  const width = Math.max(10, ...ids.map((i) => i.length)) + 2;
  const col = Math.max(12, ...models.map((m) => m.length + 2));
  const lines: string[] = [];
  lines.push("scenario".padEnd(width) + models.map((m) => m.padStart(col)).join(""));
  for (const id of ids) {
    const cells = models.map((m) => {
      const s = r.scenarios.find((x) => x.scenario === id && x.model === m);
      if (!s) return "-".padStart(col);
      const mark = s.expectFailure ? (s.selfCheckOk ? "self-check ok" : "SELF-CHECK!") : `${s.passes}/${s.trials}${s.passes === s.trials ? " ✓" : " ✗"}`;
      return mark.padStart(col);
    });
    lines.push(id.padEnd(width) + cells.join(""));
  }
  lines.push("");
  const row = (label: string, f: (m: ModelSummary) => string) => lines.push(label.padEnd(width) + r.models.map((m) => f(m).padStart(col)).join(""));
  row("pass rate", (m) => pct(m.passRate));
  const maxK = Math.max(1, ...r.models.map((m) => Object.keys(m.passHatK).length));
  for (let k = 1; k <= maxK; k++) row(`pass^${k}`, (m) => (m.passHatK[k] === undefined ? "-" : m.passHatK[k]!.toFixed(2)));
  row("consent violations", (m) => String(m.consentViolations));
  row("guard trips", (m) => String(m.guardTrips));
  row("false claims", (m) => String(m.falseClaims));
  row("caller turns / call", (m) => m.avgCallerTurns.toFixed(1));
  row("LLM requests / turn", (m) => m.llmRequestsPerCallerTurn.toFixed(2));
  row("prompt tok / request", (m) => m.avgPromptTokensPerRequest.toFixed(0));
  row("tokens / call", (m) => m.avgTokensPerCall.toFixed(0));
  row("cost / call (USD)", (m) => m.avgCostPerCallUsd.toFixed(5));
  const steps = [...new Set(r.models.flatMap((m) => Object.keys(m.latencyByStep)))].sort();
  for (const s of steps) row(`p50/p95 ms ${s}`, (m) => (m.latencyByStep[s] ? `${m.latencyByStep[s]!.p50.toFixed(0)}/${m.latencyByStep[s]!.p95.toFixed(0)}` : "-"));
  lines.push("");
  for (const s of r.scenarios.filter((x) => !x.expectFailure && x.passes < x.trials)) lines.push(`✗ ${s.scenario} [${s.model}]: ${s.failures.join("; ")}`);
  for (const p of r.problems) lines.push(`! ${p}`);
  lines.push(r.ok ? "eval passed" : "eval FAILED");
  return lines.join("\n");
}

function xml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** JUnit XML: a suite per model, a case per scenario and trial. */
export function junitReport(r: RunReport): string {
  const suites = r.models.map((m) => {
    const trials = r.trials.filter((t) => t.model === m.model);
    const cases = trials.map((t) => {
      const selfCheck = r.scenarios.find((s) => s.scenario === t.scenario && s.model === t.model)?.expectFailure ?? false;
      const ok = selfCheck ? !t.passed && !t.error : t.passed;
      const name = `${t.scenario} #${t.trial}${selfCheck ? " (self-check: must fail)" : ""}`;
      const body = ok ? "" : `<failure message="${xml((selfCheck ? ["a scenario built to fail passed"] : t.failures).join("; "))}"/>`;
      const time = (t.transcript.reduce((a, e) => a + e.engineMs + e.llmRequests.reduce((b, q) => b + q.ms, 0), 0) / 1000).toFixed(3);
      return `    <testcase classname="eval.${xml(m.model)}" name="${xml(name)}" time="${time}">${body}</testcase>`;
    });
    const failures = cases.filter((c) => c.includes("<failure")).length;
    return `  <testsuite name="${xml(m.model)}" tests="${cases.length}" failures="${failures}">\n${cases.join("\n")}\n  </testsuite>`;
  });
  return `<?xml version="1.0" encoding="UTF-8"?>\n<testsuites name="aiflow-sms-agent evals">\n${suites.join("\n")}\n</testsuites>\n`;
}

/** A bar chart of pass rate per model, as inline SVG (no scripts, no network). */
function passRateChart(models: ModelSummary[]): string {
  const barH = 26;
  const h = models.length * (barH + 10) + 10;
  const bars = models
    .map((m, i) => {
      const y = 10 + i * (barH + 10);
      const w = Math.round(m.passRate * 400);
      const color = m.consentViolations > 0 ? "#c0392b" : m.passRate === 1 ? "#2e8b57" : "#d68910";
      return `<text x="0" y="${y + 18}" class="label">${xml(m.model)}</text><rect x="180" y="${y}" width="${w}" height="${barH}" fill="${color}"/><text x="${190 + w}" y="${y + 18}" class="value">${pct(m.passRate)} (${m.passes}/${m.trials})</text>`;
    })
    .join("");
  return `<svg class="chart" width="680" height="${h}" role="img" aria-label="pass rate per model">${bars}</svg>`;
}

function transcriptHtml(t: TrialResult): string {
  const rows = t.transcript
    .map((e) => {
      const actions = e.actions
        .map((a) => {
          if (a.type === "speak") return `<div class="speak">🔊 ${xml(a.text ?? "")}</div>`;
          if (a.type === "send_sms") return `<div class="sms">✉ send_sms → ${xml(a.phone_number)}: ${xml(a.message)}</div>`;
          return `<div class="action">${xml(a.type)}</div>`;
        })
        .join("");
      const tools = e.toolCalls.map((c) => `<div class="tool ${c.ok ? "" : "bad"}">🛠 ${xml(c.name)}(${xml(JSON.stringify(c.arguments))}) → ${xml(c.result)}</div>`).join("");
      const refusals = e.guardDecisions.filter((d) => !d.allowed).map((d) => `<div class="guard">⛔ ${xml(d.subject)}: ${xml(d.reason)}${d.detail ? ` (${xml(d.detail)})` : ""}</div>`).join("");
      return `<tr class="turn"><td class="caller">${xml(e.caller)}</td><td>${tools}${refusals}${actions}</td><td class="step">${xml(e.step)}</td></tr>`;
    })
    .join("");
  return `<table class="transcript"><tr><th>caller</th><th>agent (tool calls, guard refusals, actions)</th><th>step</th></tr>${rows}</table>`;
}

/** A self-contained HTML page: chart, matrix, and every trial's transcript. */
export function htmlReport(r: RunReport): string {
  const models = r.models.map((m) => m.model);
  const ids = [...new Set(r.scenarios.map((s) => s.scenario))];
  const matrix = ids
    .map((id) => {
      const cells = models
        .map((m) => {
          const s = r.scenarios.find((x) => x.scenario === id && x.model === m);
          if (!s) return "<td>-</td>";
          const ok = s.expectFailure ? s.selfCheckOk : s.passes === s.trials;
          return `<td class="${ok ? "pass" : "fail"}">${s.expectFailure ? (s.selfCheckOk ? "self-check ok" : "SELF-CHECK FAILED") : `${s.passes}/${s.trials}`}</td>`;
        })
        .join("");
      return `<tr class="scenario-row" data-scenario="${xml(id)}"><td><a href="#${xml(id)}">${xml(id)}</a></td>${cells}</tr>`;
    })
    .join("");
  const summaryRows = (label: string, f: (m: ModelSummary) => string) => `<tr><th>${label}</th>${r.models.map((m) => `<td>${xml(f(m))}</td>`).join("")}</tr>`;
  const details = ids
    .map((id) => {
      const trials = r.trials.filter((t) => t.scenario === id);
      const body = trials
        .map((t) => `<details${t.passed ? "" : " open"}><summary>${xml(t.model)} · trial ${t.trial} · ${t.passed ? "passed" : "failed"}${t.failures.length ? `: ${xml(t.failures.join("; "))}` : ""}</summary>${transcriptHtml(t)}</details>`)
        .join("");
      return `<section id="${xml(id)}"><h3>${xml(id)}</h3>${body}</section>`;
    })
    .join("");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Eval report ${xml(r.startedAt)}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}
h1{font-size:20px}.status{font-weight:bold}.ok{color:#2e8b57}.notok{color:#c0392b}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
td.pass{background:#e8f6ee}td.fail{background:#fdecea}
.chart .label{font-size:13px}.chart .value{font-size:12px}
.transcript td{font-size:13px}.caller{width:25%}.step{color:#666;width:10%}
.speak{margin:2px 0}.sms{color:#1a5276;font-weight:bold}.tool{color:#555;font-family:monospace;font-size:12px}.tool.bad{color:#b9770e}
.guard{color:#c0392b;font-family:monospace;font-size:12px}details{margin:4px 0}summary{cursor:pointer}
</style></head><body>
<h1>Eval report</h1>
<p class="status ${r.ok ? "ok" : "notok"}">${r.ok ? "PASSED" : "FAILED"} · ${xml(r.startedAt)} → ${xml(r.finishedAt)} · ${r.trials.length} trials · options ${xml(JSON.stringify(r.options))}</p>
${r.problems.map((p) => `<p class="notok">${xml(p)}</p>`).join("")}
<h2>Pass rate per model</h2>${passRateChart(r.models)}
<h2>Summary</h2><table id="summary"><tr><th></th>${models.map((m) => `<th>${xml(m)}</th>`).join("")}</tr>
${summaryRows("pass rate", (m) => pct(m.passRate))}
${Object.keys(r.models[0]?.passHatK ?? {}).map((k) => summaryRows(`pass^${k}`, (m) => (m.passHatK[Number(k)] ?? 0).toFixed(2))).join("")}
${summaryRows("consent violations", (m) => String(m.consentViolations))}
${summaryRows("guard trips", (m) => String(m.guardTrips))}
${summaryRows("false claims", (m) => String(m.falseClaims))}
${summaryRows("LLM requests / caller turn", (m) => m.llmRequestsPerCallerTurn.toFixed(2))}
${summaryRows("prompt tokens / request", (m) => m.avgPromptTokensPerRequest.toFixed(0))}
${summaryRows("cost / call (USD)", (m) => m.avgCostPerCallUsd.toFixed(5))}
</table>
<h2>Scenarios</h2><table id="matrix"><tr><th>scenario</th>${models.map((m) => `<th>${xml(m)}</th>`).join("")}</tr>${matrix}</table>
<h2>Transcripts</h2>${details}
</body></html>
`;
}

export function writeReports(r: RunReport, outDir: string): { json: string; junit: string; html: string } {
  mkdirSync(outDir, { recursive: true });
  const files = { json: join(outDir, "report.json"), junit: join(outDir, "junit.xml"), html: join(outDir, "report.html") };
  writeFileSync(files.json, JSON.stringify(r, null, 1));
  writeFileSync(files.junit, junitReport(r));
  writeFileSync(files.html, htmlReport(r));
  return files;
}
