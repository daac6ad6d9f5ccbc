/**
 * What went wrong, as a stable code: logs, metrics and callers branch on it, never on a message.
 * One per error class of the service (`AgentError.code`).
 */
export type AgentErrorCode =
  | "flow_definition"
  | "tool_failed"
  | "model_unavailable"
  | "config_invalid"
  | "template_value_missing"
  | "store_unavailable"
  | "store_reply_corrupt"
  | "outbox_unavailable"
  | "ledger_permission"
  | "ledger_file"
  | "ledger_record"
  | "hash_key"
  | "opt_out_list"
  | "sms_slot_invalid"
  | "usage";

/**
 * The root of the service's own error classes, so callers can tell the kinds apart by `code`:
 * a flow that is defined wrongly (a start-up or programming error), a tool that failed while it
 * ran (the model gets a result it can recover from), a model that could not answer (the caller
 * hears an apology or is transferred), a store, outbox or ledger that failed, a config that is
 * wrong. Each message says what to do. (The wire protocol's own errors in src/aiflow sit below
 * this layer: InvalidEventError and InvalidActionError.)
 */
export abstract class AgentError extends Error {
  abstract readonly code: AgentErrorCode;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}
