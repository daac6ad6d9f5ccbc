import { z } from "zod";
import type { CallState } from "../../src/core/callState.js";
import { defineStep, hostTask, type EventHook, type Keys } from "../../src/engine/define.js";
import { defineFlow } from "../../src/engine/defineFlow.js";
import { initialSmsSlice, type SmsSlice } from "../../src/tasks/sms/state.js";
import { smsTask } from "../sms/task.js";
import type { SmsFlowTypes, SmsLineKey, SmsNoteKey, SmsServices } from "../../src/tasks/sms/types.js";
import { startSmsFlow } from "../sms/start_sms_flow.js";
import { endCall } from "../common/end_call.js";
import { transferCall, type TransferLineKey, type TransferNoteKey, type TransferServices, type TransferSlice } from "../common/transfer_call.js";
import { transferConfigSchema } from "../common/transferConfig.js";
import { defineAgent } from "../common/agentDef.js";
import { smsServices } from "../sms/task.js";
import type { SmsTaskConfig } from "../../src/tasks/sms/config.js";

/**
 * The reception agent: answers questions about the business, offers the information by SMS
 * (the SMS task), hands the caller to a person.
 *   main ──start_sms_flow──▶ the SMS task (src/tasks/sms/task.ts) ──▶ back to main with its result
 *   main ──transfer_call──▶ a person (announcement + AI Flow transfer); back with a new session_start when nobody answers
 */

/**
 * The reception agent's types: the SMS task's, plus what the transfer to a person adds (a
 * pending transfer in state, its lines and notes).
 */
export type ReceptionSlice = SmsSlice & TransferSlice;

/** The keys transfer_call and the agent's session_start hook use. */
const TRANSFER_LINES = ["transfer_announce", "transfer_announce_unnamed", "transfer_failed"] as const satisfies readonly TransferLineKey[];
const TRANSFER_NOTES = ["transfer_started", "transfer_unavailable"] as const satisfies readonly TransferNoteKey[];

/** The SMS task's services and the transfer tool's settings. */
export type ReceptionServices = SmsServices & TransferServices;

export interface ReceptionFlowTypes extends SmsFlowTypes {
  state: ReceptionSlice;
  services: ReceptionServices;
  lines: Keys<SmsLineKey | TransferLineKey>;
  notes: Keys<SmsNoteKey | TransferNoteKey>;
}

const step = defineStep<ReceptionFlowTypes>();

const main = step({ name: "main", kind: "llm", prompt: "reception/main", tools: [startSmsFlow, transferCall, endCall] });

/**
 * A session_start for a call that was handed to a person: nobody answered (sipgate gives the
 * call back with a new session_start). The caller hears that, not "welcome back"; the mark goes.
 */
const onSessionStart: EventHook<ReceptionFlowTypes> = (ctx, event) => {
  if (event.type !== "session_start" || !ctx.state.transfer) return false;
  ctx.log.info({ sessionId: ctx.sessionId, target: ctx.state.transfer.target }, "transfer not answered: the call is back");
  ctx.state.transfer = undefined;
  ctx.say("transfer_failed");
  return true;
};

function promptValues(_state: CallState<ReceptionSlice>, { config }: ReceptionServices): Record<string, string> {
  return {
    business_name: config.business.name,
    business_purpose: config.business.purpose,
    business_facts: config.business.facts,
  };
}

export const receptionFlow = defineFlow<ReceptionFlowTypes>({
  name: "reception",
  initialStep: main.name,
  steps: [main],
  tasks: [hostTask(smsTask)],
  initialState: () => ({ ...initialSmsSlice(), transfer: undefined }),
  lines: TRANSFER_LINES,
  notes: TRANSFER_NOTES,
  hooks: { promptValues, on: { session_start: onSessionStart } },
});

/** The reception agent's settings, `agents.reception` in the config file: whom transfer_call may hand a caller to. */
export const receptionConfigSchema = z.object({ transfer: transferConfigSchema }).strict().default({});

/** The agent as the registry (src/registry.ts) knows it. */
export const receptionAgent = defineAgent<ReceptionFlowTypes, z.infer<typeof receptionConfigSchema>, { sms: SmsTaskConfig }>({
  flow: receptionFlow,
  config: receptionConfigSchema,
  replaces: { transfer: "agents.reception.transfer" },
  start: (host, own) => ({ services: { ...smsServices(host), transfer: own.transfer } }),
});
