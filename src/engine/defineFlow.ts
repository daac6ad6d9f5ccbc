import type { AiFlowAction } from "../aiflow/actions.js";
import type { AiFlowEvent } from "../aiflow/events.js";
import type { GuardDecision } from "../core/turnRecord.js";
import type { ActionGate, EventHook, FlowDef, FlowTypes, Observer, TaskDef, Transition } from "./define.js";
import { FlowDefinitionError } from "./errors.js";

/**
 * Composes the flow's tasks into it and checks the shape at definition time: unique steps, a
 * known initial step, declared transitions that exist.
 */
export function defineFlow<F extends FlowTypes>(definition: FlowDef<F>): FlowDef<F> {
  const flow = offerFlowTools(composeTasks(definition));
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

/**
 * A flow with its tasks folded in, so the engine runs one flat flow:
 * - steps, lines, notes and never-replayed actions: the union;
 * - hooks: the tasks' first, then the flow's; the first that handles the event wins, and each
 *   may only move the flow where it declared;
 * - observers, after-turn work, unevaluated-event handling and action outcomes: all of them, tasks first;
 * - gates: chained, an action leaves only if every gate lets it through;
 * - the check on model text: refused if any part refuses;
 * - prompt values: the tasks', overridden by the flow's own.
 */
function composeTasks<F extends FlowTypes>(flow: FlowDef<F>): FlowDef<F> {
  const tasks = flow.tasks ?? [];
  if (tasks.length === 0) return flow;
  const parts: Array<TaskDef<F> | FlowDef<F>> = [...tasks, flow];
  const eventTypes = new Set<AiFlowEvent["type"]>(parts.flatMap((p) => Object.keys(p.hooks ?? {}) as AiFlowEvent["type"][]));
  const hooks: FlowDef<F>["hooks"] = {};
  const hookTransitions: FlowDef<F>["hookTransitions"] = {};
  for (const type of eventTypes) {
    hooks[type] = chainHooks(type, parts);
    hookTransitions[type] = [...new Set(parts.flatMap((p) => p.hookTransitions?.[type] ?? []))];
  }
  const observerTypes = new Set<AiFlowEvent["type"]>(parts.flatMap((p) => Object.keys(p.observers ?? {}) as AiFlowEvent["type"][]));
  const observers: NonNullable<FlowDef<F>["observers"]> = {};
  for (const type of observerTypes) {
    const all = parts.map((p) => p.observers?.[type]).filter((o): o is Observer<F> => !!o);
    observers[type] = async (ctx, event) => {
      for (const o of all) await o(ctx, event);
    };
  }
  const gates = parts.map((p) => p.gate).filter((g): g is ActionGate<F> => !!g);
  const textChecks = parts.map((p) => p.checkModelText).filter((c): c is NonNullable<FlowDef<F>["checkModelText"]> => !!c);
  const outcomes = parts.map((p) => p.onOutcome).filter((u): u is NonNullable<FlowDef<F>["onOutcome"]> => !!u);
  const afterTurn = parts.map((p) => p.afterTurn).filter((a): a is NonNullable<FlowDef<F>["afterTurn"]> => !!a);
  const unevaluated = parts.map((p) => p.onUnevaluated).filter((a): a is NonNullable<FlowDef<F>["onUnevaluated"]> => !!a);
  const retried = parts.map((p) => p.onRetry).filter((a): a is NonNullable<FlowDef<F>["onRetry"]> => !!a);
  const stateLost = parts.map((p) => p.onStateLost).filter((a): a is NonNullable<FlowDef<F>["onStateLost"]> => !!a);
  return {
    ...flow,
    steps: [...flow.steps, ...tasks.flatMap((t) => t.steps)],
    lines: [...new Set([...flow.lines, ...tasks.flatMap((t) => t.lines)])],
    notes: [...new Set([...flow.notes, ...tasks.flatMap((t) => t.notes)])],
    neverReplay: [...new Set<AiFlowAction["type"]>([...flow.neverReplay, ...tasks.flatMap((t) => t.neverReplay ?? [])])],
    promptValues: (state, services) => Object.assign({}, ...tasks.map((t) => t.promptValues?.(state, services) ?? {}), flow.promptValues(state, services)),
    hooks,
    hookTransitions,
    observers,
    gate: gates.length <= 1 ? gates[0] : chainGates(gates),
    checkModelText: textChecks.length === 0 ? undefined : (text, ctx) => {
      for (const check of textChecks) {
        const verdict = check(text, ctx);
        if (!verdict.allowed) return verdict;
      }
      return { allowed: true };
    },
    onOutcome: outcomes.length === 0 ? undefined : async (outcome, services, state, now) => {
      for (const o of outcomes) await o(outcome, services, state, now);
    },
    afterTurn: afterTurn.length === 0 ? undefined : async (ctx) => {
      for (const a of afterTurn) await a(ctx);
    },
    onStateLost: stateLost.length === 0 ? undefined : async (ctx) => {
      for (const l of stateLost) await l(ctx);
    },
    onRetry: retried.length === 0 ? undefined : async (ctx) => {
      for (const r of retried) await r(ctx);
    },
    onUnevaluated: unevaluated.length === 0 ? undefined : async (ctx) => {
      for (const u of unevaluated) await u(ctx);
    },
    // Composed once: the tasks are now part of the flow (kept for diagrams).
    tasks,
  };
}

/**
 * Every LLM step offers the flow-wide tools (the flow's and its tasks') after its own. Steps are
 * copied, not changed: a task's steps are shared by every flow that includes it.
 */
function offerFlowTools<F extends FlowTypes>(flow: FlowDef<F>): FlowDef<F> {
  const flowTools = [...new Map([...(flow.flowTools ?? []), ...(flow.tasks ?? []).flatMap((t) => t.flowTools ?? [])].map((t) => [t.name, t])).values()];
  if (flowTools.length === 0) return flow;
  const steps = flow.steps.map((s) => (s.kind === "llm" ? { ...s, tools: [...s.tools, ...flowTools.filter((t) => !s.tools.some((own) => own.name === t.name))] } : s));
  return { ...flow, steps, flowTools };
}

function chainHooks<F extends FlowTypes>(type: AiFlowEvent["type"], parts: Array<TaskDef<F> | FlowDef<F>>): EventHook<F> {
  const chain = parts
    .map((p) => ({ name: p.name, hook: p.hooks?.[type], declared: p.hookTransitions?.[type] ?? ([] as Transition[]) }))
    .filter((p): p is { name: string; hook: EventHook<F>; declared: Transition[] } => !!p.hook);
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

function chainGates<F extends FlowTypes>(gates: ActionGate<F>[]): ActionGate<F> {
  return {
    async review(actions, ctx) {
      let allowed = actions;
      const decisions: GuardDecision[] = [];
      for (const gate of gates) {
        const r = await gate.review(allowed, ctx);
        allowed = r.allowed;
        decisions.push(...r.decisions);
      }
      return { allowed, decisions };
    },
  };
}
