import type { FlowDef, FlowTypes, StepDef, Transition } from "./define.js";
import { FlowDefinitionError } from "./errors.js";
import type { Turn } from "./turnContext.js";

/** Upper bound on step transitions in one turn, so a mis-wired flow cannot spin forever. */
const MAX_TRANSITIONS_PER_TURN = 10;

/** Who moved the flow, and where it declared it may go (the diagram is drawn from these). */
export interface Mover {
  label: string;
  declared: readonly Transition[];
}

/**
 * Step transitions. A tool or hook returns where the flow goes; this checks that against what
 * it declared, changes the step, and enters the new step once the code that moved it is done
 * (a step's fixed line comes after the tool results of the batch that led there).
 */
export class Transitions<F extends FlowTypes> {
  constructor(
    private readonly flow: FlowDef<F>,
    private readonly steps: ReadonlyMap<string, StepDef<F>>,
  ) {}

  apply(turn: Turn<F>, by: Mover, next: Transition): void {
    if (!by.declared.includes(next)) throw new FlowDefinitionError(`${by.label} moved the flow to "${next}", which it does not declare in its transitions`);
    let target = next;
    if (next === "exit") {
      target = turn.state.returnStep ?? this.flow.initialStep;
      turn.state.returnStep = undefined;
    }
    if (!this.steps.has(target)) throw new FlowDefinitionError(`flow ${this.flow.name} has no step ${target}`);
    const scope = turn.enterScopes.at(-1);
    if (!scope) throw new FlowDefinitionError(`${by.label} moved the flow outside engine-run code`);
    turn.state.step = target;
    scope.push(target);
  }

  /** Run `work`, then enter the steps it moved to (each scope enters its own). */
  async collecting<T>(turn: Turn<F>, work: () => Promise<T>): Promise<T> {
    const scope: string[] = [];
    turn.enterScopes.push(scope);
    let result: T;
    try {
      result = await work();
    } finally {
      turn.enterScopes.pop();
    }
    for (const s of scope) await this.enter(turn, s);
    return result;
  }

  private async enter(turn: Turn<F>, stepName: string): Promise<void> {
    // A later transition in the same batch wins; only the step we are in gets entered.
    if (turn.state.step !== stepName) return;
    if (++turn.transitions > MAX_TRANSITIONS_PER_TURN) throw new FlowDefinitionError(`more than ${MAX_TRANSITIONS_PER_TURN} step transitions in one turn`);
    const step = this.steps.get(stepName)!;
    turn.record.stepsEntered.push(stepName);
    turn.state.stepHistoryStart = turn.state.history.length;
    // Keys pressed in an earlier step never prefix a number keyed in this one.
    turn.state.dtmf = "";
    await this.collecting(turn, async () => {
      await step.onEnter?.(turn);
      if (step.kind === "code") await step.run(turn);
    });
  }
}
