import type { z } from "zod";
import type { CallState } from "../../src/core/callState.js";
import { defineStep, hostTask, type Observer } from "../../src/engine/define.js";
import { defineFlow } from "../../src/engine/defineFlow.js";
import type { Logger } from "pino";
import { CALLBACK_STEP } from "../../src/agents/callback/stepNames.js";
import { callbackReport } from "../../src/agents/callback/report.js";
import { initialCallbackSlice, missingFields, type CallbackSlice } from "../../src/agents/callback/state.js";
import { CALLBACK_LINES, CALLBACK_NOTES, type CallbackFlowTypes, type CallbackServices } from "../../src/agents/callback/types.js";
import { smsTask } from "../sms/task.js";
import { initialSmsSlice, type SmsSlice } from "../../src/tasks/sms/state.js";
import { confirmCallbackDetail } from "./confirm_callback_detail.js";
import { noteCallbackDetail } from "./note_callback_detail.js";
import { offerSmsConfirmation } from "./offer_sms_confirmation.js";
import { endCall } from "../common/end_call.js";
import { defineAgent } from "../common/agentDef.js";
import { smsServices } from "../sms/task.js";
import type { SmsTaskConfig } from "../../src/tasks/sms/config.js";
import { CALLBACK_REPLACED_KEYS, callbackConfigProblems, callbackConfigSchema } from "../../src/agents/callback/config.js";
import { callbackEndpointFromEnv } from "../../src/agents/callback/env.js";
import { startReporting } from "../../src/agents/callback/reporting.js";

/**
 * The callback agent, built only from the public parts (steps, tools, the SMS task):
 *   collect_details ──note_callback_detail / confirm_callback_detail──▶ (each detail read back and confirmed)
 *   all three confirmed ──▶ offer_sms (code: "request taken", then the SMS task, its consent question is the offer) ──▶ wrap_up
 *   after the call: the request and its outcome are posted to the company's endpoint (CallReports)
 */

const step = defineStep<CallbackFlowTypes>();

const collectDetails = step({
  name: CALLBACK_STEP.collectDetails,
  kind: "llm",
  prompt: "callback/collect",
  tools: [noteCallbackDetail, confirmCallbackDetail, endCall],
});

/** No model request: code offers the SMS confirmation through the SMS task. */
const offerSms = step({
  name: CALLBACK_STEP.offerSms,
  kind: "code",
  tools: [offerSmsConfirmation],
  run: async (ctx) => {
    await ctx.invokeTool(offerSmsConfirmation);
  },
});

const wrapUp = step({
  name: CALLBACK_STEP.wrapUp,
  kind: "llm",
  prompt: "callback/wrap_up",
  // A caller may still correct a detail after the SMS offer. The caller heard that the request is
  // taken with the offer (offer_sms_confirmation), so the SMS outcome's "anything else?" is the
  // last thing they hear here, never followed by the thanks.
  tools: [noteCallbackDetail, confirmCallbackDetail, endCall],
});

/** Pauses before the final report's second and third save (the call is over: nobody waits for them). */
const FINAL_SAVE_RETRY_MS = [100, 500];

/**
 * Keep the latest report; posted when the call ends, or when its state expires without a
 * session_end. A snapshot is saved after each committed turn (so a stalled instance whose turn was
 * never stored cannot overwrite a newer one), the final report on session_end.
 */
async function saveReport(state: CallState<SmsSlice & CallbackSlice>, { config, reports, sessionTtlSeconds }: CallbackServices, log: Logger, now: number, final: boolean, revision?: number): Promise<void> {
  const report = callbackReport(state, config.business.name, final ? "session_end" : "state_expired", now);
  for (let attempt = 0; ; attempt++) {
    try {
      await reports.save(report, { final, expiresAt: now + sessionTtlSeconds * 1000, revision });
      return;
    } catch (e) {
      // A snapshot is never the caller's problem: the next turn saves again. The final report is the
      // call's last chance (its state goes with session_end), so it is tried a few times; after that
      // the last snapshot saved is posted at expiry instead, marked state_expired.
      const retry = final ? FINAL_SAVE_RETRY_MS[attempt] : undefined;
      log.error({ sessionId: state.sessionId, err: (e as Error).message, final, attempt: attempt + 1, retrying: retry !== undefined }, "callback report could not be saved");
      if (retry === undefined) return;
      await new Promise((r) => setTimeout(r, retry));
    }
  }
}

const onSessionEnd: Observer<CallbackFlowTypes> = async (ctx, event) => {
  if (event.type === "session_end") await saveReport(ctx.state, ctx.services, ctx.log, Date.parse(ctx.nowIso()), true);
};

function promptValues(state: CallState<SmsSlice & CallbackSlice>, { config }: CallbackServices): Record<string, string> {
  const { details } = state.callback;
  const shown = (f: "name" | "reason" | "time_window") => {
    const d = details[f];
    return d ? `${d.value} (${d.confirmed ? "confirmed" : "read back, not yet confirmed"})` : "not given yet";
  };
  return {
    business_name: config.business.name,
    business_purpose: config.business.purpose,
    business_facts: config.business.facts,
    callback_name: shown("name"),
    callback_reason: shown("reason"),
    callback_time_window: shown("time_window"),
    callback_missing: missingFields(state.callback).join(", ") || "nothing: all confirmed",
  };
}

export const callbackFlow = defineFlow<CallbackFlowTypes>({
  name: "callback",
  initialStep: collectDetails.name,
  steps: [collectDetails, offerSms, wrapUp],
  // The SMS task's typed result is read from its state by the report (src/agents/callback/report.ts);
  // a later sms_failed needs nothing of the agent: the task's own line tells the caller.
  tasks: [hostTask(smsTask)],
  initialState: () => ({ ...initialSmsSlice(), ...initialCallbackSlice() }),
  lines: CALLBACK_LINES,
  notes: CALLBACK_NOTES,
  // A barge-in into a read-back needs no hook: the engine notes it, and answerTo (src/engine/heard.ts) reads it.
  hooks: {
    promptValues,
    observe: { session_end: onSessionEnd },
    // Every committed turn keeps the latest snapshot, so a call whose session_end never comes is still reported.
    afterCommit: (state, services, { now, log, seq }) => saveReport(state, services, log, now, false, seq),
  },
});

/**
 * The agent as the registry (src/registry.ts) knows it: its flow, its settings (`agents.callback`,
 * required with `agent: callback`), their environment overrides (CALLBACK_URL, …) and how the
 * service starts it (its reports and their poster).
 */
export const callbackAgent = defineAgent<CallbackFlowTypes, z.infer<typeof callbackConfigSchema>, { sms: SmsTaskConfig }>({
  flow: callbackFlow,
  config: callbackConfigSchema,
  required: "agent: callback needs an agents.callback section (at least agents.callback.endpoint.url)",
  replaces: CALLBACK_REPLACED_KEYS,
  // The confirmation SMS names an option of every slot (checked whenever the section is there, complete when the agent runs).
  check: (own, tasks, picked) => callbackConfigProblems(own, tasks.sms).filter((p) => picked || p.path.length > 1),
  env: (own, env) => {
    const r = callbackEndpointFromEnv(own.endpoint, env);
    return "problems" in r ? r : { config: { ...own, endpoint: r.endpoint } };
  },
  start: (host, own) => {
    const { run } = host;
    const { reports, poster, outbox } = startReporting({ endpoint: own.endpoint, mode: run.callbackReports, secret: run.callbackSecret, outbox: run.outbox, startPoster: run.startPoster, logger: host.logger, metrics: host.metrics, now: host.now });
    return { services: { ...smsServices(host), callback: own, reports, sessionTtlSeconds: host.app.limits.sessionTtlSeconds }, poster, outbox };
  },
});
