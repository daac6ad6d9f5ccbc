import type { AiFlowAction } from "../aiflow/actions.js";
import type { AiFlowEvent } from "../aiflow/events.js";
import type { Decision, EventHook, FlowDef, FlowHooks, FlowTypes, LineKey, NoteKey, Observer, StepDef, TaskDef, ToolDef, Transition } from "./define.js";
import { FlowDefinitionError } from "./errors.js";
import type { RecoveryHooks } from "./recovery.js";

/**
 * The flat flow the engine runs: a FlowDef with its tasks folded in by the one rule (see
 * FlowHooks): one chained hook per event, one gate, one text check, one of each recovery hook.
 * Flow authors write FlowDef; only the engine reads this.
 */
export interface ComposedFlow<F extends FlowTypes = FlowTypes>
  extends Omit<FlowDef<F>, "tasks" | "tools" | "hooks">,
    Required<Pick<FlowHooks<F>, "promptValues">>,
    Omit<FlowHooks<F>, "promptValues" | "on" | "observe" | "recovery">,
    Omit<RecoveryHooks<F>, "neverReplay"> {
  /** The tasks it includes, kept for the task stack and the diagram. */
  tasks: readonly TaskDef<F>[];
  /** The flow-wide tools (the flow's and its tasks'), already offered in every LLM step; kept for the diagram. */
  flowTools: readonly ToolDef<F>[];
  hooks: Partial<Record<AiFlowEvent["type"], EventHook<F>>>;
  /** Steps a hook may move the flow to, by event type (for the diagram; enforced per part). */
  hookTransitions: Partial<Record<AiFlowEvent["type"], Transition[]>>;
  observers: Partial<Record<AiFlowEvent["type"], Observer<F>>>;
  neverReplay: readonly AiFlowAction["type"][];
}

/**
 * Composes the flow's tasks into it and checks the shape at definition time: unique steps, a
 * known initial step, declared transitions that exist.
 */
export function defineFlow<F extends FlowTypes>(definition: FlowDef<F>): ComposedFlow<F> {
  const flow = compose(definition);
  const names = new Set<string>();
  for (const s of flow.steps) {
    if (names.has(s.name)) throw new FlowDefinitionError(`flow ${flow.name}: duplicate step name ${s.name}`);
    names.add(s.name);
  }
  if (!names.has(flow.initialStep)) throw new FlowDefinitionError(`flow ${flow.name}: initial step ${flow.initialStep} is not defined`);
  const targets = [...flow.steps.flatMap((s) => s.tools.flatMap((t) => t.transitions)), ...Object.values(flow.hookTransitions).flat()];
  for (const t of targets) if (t !== "exit" && !names.has(t!)) throw new FlowDefinitionError(`flow ${flow.name}: a transition names unknown step ${t}`);
  return flow;
}

/** One part of a composed flow: a task, or the flow itself (last). */
interface Part<F extends FlowTypes> {
  name: string;
  steps: StepDef<F>[];
  lines: readonly LineKey<F>[];
  notes: readonly NoteKey<F>[];
  tools?: readonly ToolDef<F>[];
  hooks?: FlowHooks<F>;
}

/**
 * A flow with its tasks folded in, by the one rule (FlowHooks): parts in order, tasks first, then
 * the flow; lists are joined; the first part that decides wins; hooks that decide nothing all run.
 */
function compose<F extends FlowTypes>(flow: FlowDef<F>): ComposedFlow<F> {
  const tasks = flow.tasks ?? [];
  const parts: Part<F>[] = [...tasks, flow];
  const hooksOf = (p: Part<F>): FlowHooks<F> => p.hooks ?? {};
  const recoveryOf = (p: Part<F>): RecoveryHooks<F> => hooksOf(p).recovery ?? {};
  const all = <T>(pick: (p: Part<F>) => T | undefined): T[] => parts.map(pick).filter((x): x is T => x !== undefined);
  const eventTypes = (pick: (h: FlowHooks<F>) => object | undefined) => [...new Set(parts.flatMap((p) => Object.keys(pick(hooksOf(p)) ?? {}) as AiFlowEvent["type"][]))];

  const hooks: ComposedFlow<F>["hooks"] = {};
  const hookTransitions: ComposedFlow<F>["hookTransitions"] = {};
  for (const type of eventTypes((h) => h.on)) {
    const chain = all((p) => handlerOf(p, type));
    hooks[type] = firstThatHandles(type, chain);
    hookTransitions[type] = [...new Set(chain.flatMap((c) => c.declared))];
  }
  const observers: ComposedFlow<F>["observers"] = {};
  for (const type of eventTypes((h) => h.observe)) observers[type] = everyOne(all((p) => hooksOf(p).observe?.[type]));

  const gates = all((p) => hooksOf(p).gate);
  const textChecks = all((p) => hooksOf(p).checkModelText);
  const promptValues = all((p) => hooksOf(p).promptValues);
  // A tool two parts offer by the same name is the first part's.
  const flowTools = parts.flatMap((p) => p.tools ?? []).filter((t, i, all) => all.findIndex((o) => o.name === t.name) === i);
  const steps = [...flow.steps, ...tasks.flatMap((t) => t.steps)].map((s) => offerFlowTools(s, flowTools));
  return {
    name: flow.name,
    initialStep: flow.initialStep,
    initialState: flow.initialState,
    steps,
    lines: [...new Set(parts.flatMap((p) => p.lines))],
    notes: [...new Set(parts.flatMap((p) => p.notes))],
    tasks,
    flowTools,
    // The first part that sets a placeholder sets it: the later ones' values go in first, to be overwritten.
    promptValues: (state, services) => Object.assign({}, ...promptValues.map((v) => v(state, services)).reverse()),
    hooks,
    hookTransitions,
    observers,
    gate: gates.length === 0 ? undefined : {
      // Each gate reviews what the ones before let through: an action leaves only if every gate lets it.
      async review(actions, ctx) {
        let allowed = actions;
        const decisions: Decision<F>[] = [];
        for (const gate of gates) {
          const r = await gate.review(allowed, ctx);
          allowed = r.allowed;
          decisions.push(...r.decisions);
        }
        return { allowed, decisions };
      },
    },
    checkModelText: textChecks.length === 0 ? undefined : (text, ctx) => {
      for (const check of textChecks) {
        const verdict = check(text, ctx);
        if (!verdict.allowed) return verdict;
      }
      return { allowed: true };
    },
    afterTurn: everyOne(all((p) => hooksOf(p).afterTurn)),
    afterCommit: everyOne(all((p) => hooksOf(p).afterCommit)),
    neverReplay: [...new Set(parts.flatMap((p) => recoveryOf(p).neverReplay ?? []))],
    onOutcome: everyOne(all((p) => recoveryOf(p).onOutcome)),
    onUnevaluated: everyOne(all((p) => recoveryOf(p).onUnevaluated)),
    onRetry: everyOne(all((p) => recoveryOf(p).onRetry)),
    onStateLost: everyOne(all((p) => recoveryOf(p).onStateLost)),
  };
}

/** A hook that decides nothing: every part's runs, in order; absent when no part brings one. */
function everyOne<A extends unknown[]>(fns: Array<(...args: A) => Promise<void> | void>): ((...args: A) => Promise<void>) | undefined {
  if (fns.length === 0) return undefined;
  return async (...args) => {
    for (const f of fns) await f(...args);
  };
}

function handlerOf<F extends FlowTypes>(part: Part<F>, type: AiFlowEvent["type"]): { name: string; hook: EventHook<F>; declared: readonly Transition[] } | undefined {
  const h = part.hooks?.on?.[type];
  if (!h) return undefined;
  return typeof h === "function" ? { name: part.name, hook: h, declared: [] } : { name: part.name, hook: h.handle, declared: h.transitions };
}

/** The first part's hook that handles the event (or moves the flow) ends it; each may move the flow only where it declared. */
function firstThatHandles<F extends FlowTypes>(type: AiFlowEvent["type"], chain: Array<{ name: string; hook: EventHook<F>; declared: readonly Transition[] }>): EventHook<F> {
  return async (ctx, event) => {
    for (const part of chain) {
      const outcome = await part.hook(ctx, event);
      const { handled, next } = typeof outcome === "boolean" ? { handled: outcome, next: undefined } : outcome;
      // Checked per part: one part's hook may not borrow another's declared transitions.
      // (A task started or finished is checked where it is applied: its entry step is known only then.)
      if (typeof next === "string" && !part.declared.includes(next)) throw new FlowDefinitionError(`${part.name}'s ${type} hook moved the flow to "${next}", which it does not declare`);
      if (handled || next !== undefined) return { handled: true, next };
    }
    return false;
  };
}

/**
 * An LLM step offers the flow-wide tools after its own. Steps are copied, not changed: a task's
 * steps are shared by every flow that includes it.
 */
function offerFlowTools<F extends FlowTypes>(s: StepDef<F>, flowTools: readonly ToolDef<F>[]): StepDef<F> {
  if (s.kind !== "llm" || flowTools.length === 0) return s;
  return { ...s, tools: [...s.tools, ...flowTools.filter((t) => !s.tools.some((own) => own.name === t.name))] };
}
