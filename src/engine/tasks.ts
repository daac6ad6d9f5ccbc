import type { TaskFrame } from "../core/callState.js";
import type { FlowTypes, Next, StepDef, TaskDef, TaskFinish, TaskResultOf, TaskNoticeOf, TaskStart, Transition } from "./define.js";
import type { ComposedFlow } from "./defineFlow.js";
import { FlowDefinitionError } from "./errors.js";
import type { Turn } from "./turnContext.js";

/** Who moved the flow, and where it declared it may go (the diagram is drawn from these). */
export interface Mover {
  label: string;
  declared: readonly Transition[];
}

/**
 * The engine runs tasks (issue 19, point 1). A step starts one with its parameters
 * (`next: startTask(SMS_TASK, { slots })`); the task's `start` says where it begins, and the call
 * state's task stack (`CallState.tasks`, innermost last) remembers who started it and where it
 * returns. A task ends with `next: finish(SMS_TASK, result)`: its frame is popped, the call is back
 * in the step it returns to, and the starting step's typed `onResult` gets the result (and may move
 * on, even finish its own task: tasks nest). A later event of a task that ended (an SMS it handed
 * over failed) reaches the step that started it last (`onNotice`).
 *
 * Nothing of this is a flow's state flag: a task knows its own slice, the engine knows who waits for it.
 */

/** What tools, steps and hooks may do with the call's tasks besides starting and finishing them (`TurnContext.tasks`). */
export interface TaskControl {
  /** The innermost running task's name (undefined: none runs). */
  current(): string | undefined;
  /**
   * Run `task` again after it ended, for its own later work (a retry after a failed send, words that
   * overtook its send): started by the step that started it last, back to `returnTo` (default: the
   * step the call is in). The caller moves the call into the task's step.
   */
  reopen(task: string, returnTo?: string): void;
  /** Leave the innermost task `task` without a result (its reopened work changed nothing); no step is entered. */
  abandon(task: string): void;
  /**
   * End `task` with `result` from code that moves no step itself (caller words nobody evaluated):
   * if it runs, the call is back where it returns to (no step entered, nothing said); either way the
   * step that started it gets the result.
   */
  end(task: string, result: unknown): Promise<void>;
  /** A later event of `task` for the step that started it last (its `onNotice`). */
  notify(task: string, notice: unknown): Promise<void>;
}

export class TaskStack<F extends FlowTypes> {
  private readonly byName = new Map<string, TaskDef<F>>();

  constructor(
    private readonly flow: ComposedFlow<F>,
    private readonly steps: ReadonlyMap<string, StepDef<F>>,
    /** Applies a step's onResult transition (Transitions.apply). */
    private readonly apply: (turn: Turn<F>, by: Mover, next: Next) => Promise<string | undefined>,
    /** Moves the call to a step (checked against `by` when `checked`), entered when the moving code is done. */
    private readonly move: (turn: Turn<F>, by: Mover, step: string, checked: boolean) => void,
    /** Runs code that may move the flow outside engine-run code (Transitions.collecting). */
    private readonly collecting: (turn: Turn<F>, work: () => Promise<void>) => Promise<void>,
  ) {
    for (const t of flow.tasks ?? []) this.byName.set(t.name, t);
  }

  /** Start a task; returns its note for the tool that started it. */
  async start(turn: Turn<F>, by: Mover, req: TaskStart): Promise<string> {
    const task = this.byName.get(req.task);
    if (!task) throw new FlowDefinitionError(`${by.label} starts task ${req.task}, which flow ${this.flow.name} does not include (add it to the flow's tasks)`);
    const { state } = turn;
    const startedBy = state.step;
    const returnTo = req.returnTo ?? startedBy;
    const entry = task.start(turn, req.params);
    (state.taskStarters ??= {})[task.name] = startedBy;
    if ("step" in entry) {
      this.move(turn, by, entry.step, true);
      frames(state).push({ task: task.name, startedBy, returnTo });
    } else {
      // Over before it began (an earlier "no", no SMS left): the starter hears the result all the same.
      if (returnTo !== state.step) this.move(turn, by, returnTo, true);
      await this.deliver(turn, startedBy, task.name, entry.result);
    }
    return entry.note;
  }

  async finish(turn: Turn<F>, by: Mover, req: TaskFinish): Promise<void> {
    if (!by.declared.includes("exit")) throw new FlowDefinitionError(`${by.label} finished task ${req.task}, which it does not declare ("exit" in its transitions)`);
    const stack = frames(turn.state);
    const frame = stack.at(-1);
    if (frame?.task !== req.task) throw new FlowDefinitionError(`${by.label} finished task ${req.task}, but ${frame ? `task ${frame.task}` : "no task"} is running`);
    stack.pop();
    this.move(turn, by, frame.returnTo, false);
    await this.deliver(turn, frame.startedBy, req.task, req.result);
  }

  control(turn: Turn<F>): TaskControl {
    const { state } = turn;
    return {
      current: () => state.tasks?.at(-1)?.task,
      reopen: (task, returnTo) => void frames(state).push({ task, startedBy: state.taskStarters?.[task] ?? state.step, returnTo: returnTo ?? state.step }),
      abandon: (task) => {
        if (state.tasks?.at(-1)?.task === task) state.tasks.pop();
      },
      end: async (task, result) => {
        const stack = frames(state);
        const i = stack.findLastIndex((f) => f.task === task);
        let startedBy = state.taskStarters?.[task];
        if (i >= 0) {
          const frame = stack[i]!;
          // Tasks it started go with it: nobody is left to hear their results.
          stack.splice(i);
          state.step = frame.returnTo;
          state.stepHistoryStart = state.history.length;
          startedBy = frame.startedBy;
        }
        if (startedBy !== undefined) await this.collecting(turn, () => this.deliver(turn, startedBy, task, result));
      },
      notify: async (task, notice) => {
        const startedBy = state.tasks?.findLast((f) => f.task === task)?.startedBy ?? state.taskStarters?.[task];
        const step = startedBy === undefined ? undefined : this.steps.get(startedBy);
        await step?.onNotice?.(turn, { task, notice } as TaskNoticeOf<F>);
      },
    };
  }

  /** The starting step's onResult, and where it moves the flow (only where it declared). */
  private async deliver(turn: Turn<F>, startedBy: string, task: string, result: unknown): Promise<void> {
    const step = this.steps.get(startedBy);
    if (!step?.onResult) return;
    // The engine's stack guarantees `result` is `task`'s: the pair is the typed TaskResultOf<F>.
    const next = await step.onResult(turn, { task, result } as TaskResultOf<F>);
    if (next !== undefined) await this.apply(turn, { label: `step ${startedBy}'s onResult`, declared: step.resultTransitions ?? [] }, next);
  }
}

function frames(state: { tasks?: TaskFrame[] }): TaskFrame[] {
  return (state.tasks ??= []);
}
