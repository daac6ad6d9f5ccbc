import { AgentError } from "../core/errors.js";

/** The flow definition is wrong: a missing step, prompt, line or description, an undeclared transition. Fix the flow. */
export class FlowDefinitionError extends AgentError {
  readonly code = "flow_definition";
}

/** A tool threw while it ran. The model is told the tool failed and may try another way. */
export class ToolFailure extends AgentError {
  readonly code = "tool_failed";
  constructor(
    readonly tool: string,
    cause: unknown,
  ) {
    super(`tool ${tool} failed: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}
