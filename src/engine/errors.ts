import { AgentError } from "../core/errors.js";

export { FlowDefinitionError } from "../core/errors.js";

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
