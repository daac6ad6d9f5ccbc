import type { ReviewEntry } from "./entries.js";
import type { OutcomeFigures } from "./figures.js";
import type { CallSummary } from "./summary.js";

/**
 * The call review's HTML, rendered on the server, no script. Everything that came from a call
 * (words, tool arguments, model names, reasons, ids) passes `esc`; numbers were masked before
 * they were stored.
 */

export function esc(value: unknown): string {
  return String(value ?? "").replace(/[&<>"'`]/g, (c) => `&#${c.charCodeAt(0)};`);
}

const STYLE = `body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse}td,th{border-bottom:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}
.tag{display:inline-block;border-radius:3px;padding:0 .4em;margin:0 .2em .2em 0;background:#eee}.tag.bad{background:#fdd}.tag.good{background:#dfd}
.figures{display:flex;flex-wrap:wrap;gap:.6em;margin:1em 0}.figure{border:1px solid #ccc;border-radius:4px;padding:.4em .7em}.figure b{display:block;font-size:1.3em}
.timeline td.t{color:#777;white-space:nowrap}.said{color:#1a4d8f}.heard{color:#23632d}.refused{color:#a11}.muted{color:#888}header{display:flex;justify-content:space-between;align-items:center}`;

function layout(title: string, body: string, logoutCsrf?: string): string {
  const logout = logoutCsrf
    ? `<form method="post" action="/calls/logout"><input type="hidden" name="csrf" value="${esc(logoutCsrf)}"><button type="submit">Log out</button></form>`
    : "";
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title><style>${STYLE}</style></head><body><header><h1>${esc(title)}</h1>${logout}</header>${body}</body></html>`;
}

export function loginPage(csrf: string, problem?: string): string {
  return layout(
    "Call review: log in",
    `${problem ? `<p class="refused" id="problem">${esc(problem)}</p>` : ""}<form method="post" action="/calls/login" id="login">
<input type="hidden" name="csrf" value="${esc(csrf)}"><label>Admin token <input type="password" name="token" id="token" autocomplete="current-password" required></label> <button type="submit" id="log-in">Log in</button></form>`,
  );
}

const OUTCOME_TEXT: Record<string, [string, "good" | "bad" | ""]> = {
  sms_handed_over: ["SMS handed over", "good"],
  sms_declined: ["SMS declined", ""],
  sms_failed: ["SMS failed", "bad"],
  sms_refused: ["SMS refused", "bad"],
  transferred: ["transferred", ""],
  agent_hung_up: ["agent hung up", ""],
  caller_hung_up: ["caller hung up", ""],
  apology: ["apology", "bad"],
};

function outcomeTags(s: CallSummary): string {
  return s.outcomes.map((o) => `<span class="tag ${OUTCOME_TEXT[o]?.[1] ?? ""}">${esc(OUTCOME_TEXT[o]?.[0] ?? o)}</span>`).join("") + (s.ended ? "" : `<span class="tag">in progress</span>`);
}

const time = (at: number) => new Date(at).toISOString().replace("T", " ").slice(0, 19);
const secs = (ms: number | undefined) => (ms === undefined ? "–" : `${(ms / 1000).toFixed(1)} s`);
const pct = (r: number | undefined) => (r === undefined ? "–" : `${Math.round(r * 100)} %`);
const reasons = (m: Record<string, number>) => Object.entries(m).map(([r, n]) => `${esc(r)}: ${n}`).join(", ") || "none";

function figuresBlock(f: OutcomeFigures): string {
  const box = (label: string, value: string, id: string) => `<div class="figure" id="fig-${id}">${esc(label)}<b>${value}</b></div>`;
  return `<div class="figures">${[
    box("calls", String(f.calls), "calls"),
    box("consent given", pct(f.consentGivenRate), "consent-given"),
    box("consent declined", pct(f.consentDeclinedRate), "consent-declined"),
    box("SMS failed", reasons(f.smsFailuresByReason), "sms-failed"),
    box("SMS refused", reasons(f.smsRefusalsByReason), "sms-refused"),
    box("transfers", String(f.transfers), "transfers"),
    box("ending in an apology", String(f.apologies), "apologies"),
    box("holding lines per call", f.holdingLinesPerCall === undefined ? "–" : f.holdingLinesPerCall.toFixed(2), "holding"),
    box("wait until holding line p50 / p95", `${secs(f.waitUntilHoldingMs.p50)} / ${secs(f.waitUntilHoldingMs.p95)}`, "wait-holding"),
    box("wait until answer p50 / p95", `${secs(f.waitUntilAnswerMs.p50)} / ${secs(f.waitUntilAnswerMs.p95)}`, "wait-answer"),
  ].join("")}</div>`;
}

export function listPage(calls: CallSummary[], figures: OutcomeFigures, logoutCsrf: string | undefined, retentionDays: number): string {
  const rows = calls
    .map(
      (s) => `<tr class="call-row" data-call="${esc(s.callId)}"><td><a href="/calls/${esc(encodeURIComponent(s.callId))}">${esc(time(s.startedAt))}</a></td><td>${secs(s.durationMs)}</td><td>${esc(s.agent ?? "")}</td><td>${esc(s.caller ?? "")}</td>
<td>${outcomeTags(s)}${s.smsReasons.length ? `<div class="muted">${esc(s.smsReasons.join(", "))}</div>` : ""}</td><td>${secs(s.modelMs)} <span class="muted">(${s.modelRequests})</span></td><td>${secs(s.maxWaitUntilHoldingMs)}</td><td>${secs(s.maxWaitUntilAnswerMs)}</td><td>${s.errors.map((e) => `<div class="refused">${esc(e)}</div>`).join("")}</td></tr>`,
    )
    .join("\n");
  return layout(
    "Recent calls",
    `${figuresBlock(figures)}<p class="muted">Newest first; kept ${esc(retentionDays)} days. Numbers are masked.</p>
<table id="calls"><thead><tr><th>time (UTC)</th><th>duration</th><th>agent</th><th>caller</th><th>outcome</th><th>model time</th><th>longest wait until holding line</th><th>longest wait until answer</th><th>errors</th></tr></thead><tbody>${rows || `<tr><td colspan="9">No calls yet.</td></tr>`}</tbody></table>`,
    logoutCsrf,
  );
}

function entryRow(e: ReviewEntry, start: number): string {
  const t = `<td class="t">+${((e.at - start) / 1000).toFixed(2)} s</td>`;
  switch (e.kind) {
    case "arrival": {
      const what =
        e.event === "user_speak"
          ? `<span class="said">caller: ${e.text !== undefined ? `“${esc(e.text)}”` : `<i>(words not kept: review.transcripts is off)</i>`}</span>`
          : e.event === "dtmf_received"
            ? `<span class="said">caller keyed ${esc(e.digit ?? "a key")}</span>`
            : e.event === "sms_failed"
              ? `<span class="refused">sipgate: SMS failed (${esc(e.reason ?? "unknown")})</span>`
              : `<span class="muted">event ${esc(e.event)}${e.caller ? ` from ${esc(e.caller)}` : ""}</span>`;
      return `<tr class="entry arrival">${t}<td>${esc(e.via)}</td><td>${what}</td></tr>`;
    }
    case "answer": {
      const label = e.answer === "holding" ? "holding line" : e.answer === "gave_up" ? "apology (gave up waiting)" : e.answer === "store_unavailable" ? "apology (store unavailable)" : "answer";
      const actions = e.actions
        .map((a) => (a.type === "speak" ? `<div class="heard">agent: ${a.text !== undefined ? `“${esc(a.text)}”` : "<i>(speech)</i>"}</div>` : `<div>✉ ${esc(a.type)}${a.to ? ` to ${esc(a.to)}` : ""}</div>`))
        .join("");
      return `<tr class="entry answer answer-${esc(e.answer)}">${t}<td>${esc(label)}</td><td>${actions}</td></tr>`;
    }
    case "turn": {
      const parts = [
        `<div class="muted">turn for ${esc(e.event)}: step ${esc(e.stepBefore || "–")} → ${esc(e.stepAfter || "–")}, ${e.totalMs} ms (model ${e.modelMs} ms)${e.duplicate ? ", redelivery" : ""}</div>`,
        ...e.model.map(
          (m) =>
            `<div class="model">model ${esc(m.model)} (step ${esc(m.step)}): ${m.ms} ms, ${m.promptTokens}+${m.completionTokens} tokens${m.error ? ` <span class="refused">error: ${esc(m.error)}</span>` : ""}${m.answer ? `<div class="muted">answered: ${esc(m.answer.text || "")} ${m.answer.toolCalls.map((c) => `${esc(c.name)}(${esc(c.arguments)})`).join(" ")}</div>` : ""}</div>`,
        ),
        ...e.tools.map((c) => `<div class="tool">tool ${esc(c.name)}${c.args !== undefined ? `(${esc(JSON.stringify(c.args))})` : ""}${c.ok ? "" : ` <span class="refused">failed</span>`}${c.result !== undefined ? ` <span class="muted">→ ${esc(c.result)}</span>` : ""}</div>`),
        ...e.refusals.map((r) => `<div class="refused guard">refused: ${esc(r.subject)}: ${esc(r.reason)}${r.detail ? ` (${esc(r.detail)})` : ""}</div>`),
      ];
      return `<tr class="entry turn">${t}<td>turn</td><td>${parts.join("")}</td></tr>`;
    }
    case "ledger":
      return `<tr class="entry ledger">${t}<td>ledger</td><td>${esc(e.record)}${e.to ? ` ${esc(e.to)}` : ""}${e.outcome ? `, ${esc(e.outcome)}` : ""}${e.reason ? `, ${esc(e.reason)}` : ""} <span class="muted">${esc(e.id)}</span></td></tr>`;
  }
}

export function callPage(summary: CallSummary, entries: ReviewEntry[], logoutCsrf: string | undefined): string {
  const start = entries[0]?.at ?? 0;
  return layout(
    `Call ${summary.callId}`,
    `<p><a href="/calls">← all calls</a> · <a href="/calls/${esc(encodeURIComponent(summary.callId))}.json">JSON</a></p>
<p>${esc(time(summary.startedAt))} UTC, ${secs(summary.durationMs)}, agent ${esc(summary.agent ?? "?")}, caller ${esc(summary.caller ?? "?")}: ${outcomeTags(summary)}</p>
<p>Model time ${secs(summary.modelMs)} in ${summary.modelRequests} requests; ${summary.holdingLines} holding line(s); longest wait until the holding line ${secs(summary.maxWaitUntilHoldingMs)}, until the answer ${secs(summary.maxWaitUntilAnswerMs)}.</p>
<table class="timeline" id="timeline"><tbody>${entries.map((e) => entryRow(e, start)).join("\n")}</tbody></table>`,
    logoutCsrf,
  );
}
