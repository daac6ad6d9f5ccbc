import type { FlowTypes, ToolDef } from "./define.js";
import type { TurnContext } from "./turnContext.js";

/** A step's rule lists: `prompts/<lang>/<file>.md`, one `## verdict` section each, a markdown list of entries. */
export type RuleLists = Readonly<Record<string, readonly string[]>>;

/**
 * What a rule decided: the tool call the model would have made. It runs through the same path as a
 * model's call (offered in the step, arguments checked by the schema, the tool's own guards, its
 * transition), so a rule can skip the model request but no guard.
 */
export interface RuleCall<F extends FlowTypes = FlowTypes> {
  tool: ToolDef<F>;
  args: Record<string, unknown>;
  /** Which rule decided, for the records (`yes:ja gerne`); the tool reads it as `ctx.decidedBy`. */
  rule: string;
}

/**
 * Rules that answer a caller turn without the model when the answer is clear. The lists are loaded
 * and checked at start-up (`check` throws naming the bad entry); `decide` returns undefined for
 * anything it is not sure of, and the model is asked as before. When the rule's call leaves nothing
 * to say, the model is asked too (with the call in the history).
 */
export interface StepRules<F extends FlowTypes = FlowTypes> {
  file: string;
  check?: (lists: RuleLists) => void;
  decide: (ctx: TurnContext<F>, lists: RuleLists) => RuleCall<F> | undefined;
}
