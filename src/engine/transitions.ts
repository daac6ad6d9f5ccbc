import type { FlowTypes, Next, StepDef } from "./define.js";
import type { ComposedFlow } from "./defineFlow.js";
import { FlowDefinitionError } from "./errors.js";
import { TaskStack, type Mover, type TaskControl } from "./tasks.js";
import type { Turn } from "./turnContext.js";

/** Upper bound on step transitions in one turn, so a mis-wired flow cannot spin forever. */
const MAX_TRANSITIONS_PER_TURN = 10;

export type { Mover } from "./tasks.js";

/**
 * Step transitions. A tool or hook returns where the flow goes (a step, a task started, the
 * running task finished); this checks that against what it declared, changes the step, and enters
 * the new step once the code that moved it is done (a step's fixed line comes after the tool
 * results of the batch that led there). Tasks: see tasks.ts.
 */
export class Transitions<F extends FlowTypes> {
  private readonly tasks: TaskStack<F>;

  constructor(
    private readonly flow: ComposedFlow<F>,
    private readonly steps: ReadonlyMap<string, StepDef<F>>,
  ) {
    this.tasks = new TaskStack(
      flow,
      steps,
      (turn, by, next) => this.apply(turn, by, next),
      (turn, by, step, checked) => this.move(turn, by, step, checked),
      (turn, work) => this.collecting(turn, work),
    );
  }

  /** Apply `next`; returns the note of a task it started (for the tool's result). */
  async apply(turn: Turn<F>, by: Mover, next: Next): Promise<string | undefined> {
    if (typeof next !== "string") {
      if (next.kind === "start_task") return this.tasks.start(turn, by, next);
      await this.tasks.finish(turn, by, next);
      return undefined;
    }
    if (next === "exit") throw new FlowDefinitionError(`${by.label} returned "exit": finish the running task with finish(task, result)`);
    this.move(turn, by, next, true);
    return undefined;
  }

  taskControl(turn: Turn<F>): TaskControl {
    return this.tasks.control(turn);
  }

  private move(turn: Turn<F>, by: Mover, target: string, checked: boolean): void {
    if (checked && !by.declared.includes(target)) throw new FlowDefinitionError(`${by.label} moved the flow to "${target}", which it does not declare in its transitions`);
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
