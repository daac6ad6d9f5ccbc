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
  | "usage"
  | "ledger_unavailable"
  | "invariant_broken"
  | "invalid_argument";

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

/**
 * The flow definition is wrong: a missing step, prompt, line or description, an undeclared
 * transition, a tool schema that does not convert. Fix the flow. (Here, below every layer, so the
 * model layer can name a tool's schema; src/engine/errors.ts exports it too.)
 */
export class FlowDefinitionError extends AgentError {
  readonly code = "flow_definition";
}

/** A config problem, worded so the operator knows which field or file to fix (src/config/load.ts exports it too). */
export class ConfigError extends AgentError {
  readonly code = "config_invalid";
}

/** A state the code rules out happened: a bug of the caller, never a fault of the outside world (not retried, not an outage). */
export class InvariantError extends AgentError {
  readonly code = "invariant_broken";
}

/** A function was called with a value outside its contract (a negative lease, an empty secret): the caller's bug, named in the message. */
export class InvalidArgumentError extends AgentError {
  readonly code = "invalid_argument";
}
