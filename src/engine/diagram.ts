import type { FlowTypes, StepDef } from "./define.js";
import type { ComposedFlow } from "./defineFlow.js";

/**
 * A Mermaid flowchart drawn from the flow definition itself: steps, the tools each offers, the
 * transitions tools and event hooks declare (the engine enforces those), and each task the flow
 * includes as a subgraph that is left "back" to the step that started it. Flow-wide tools (offered
 * in every LLM step) are drawn once, from "every LLM step", not in each step.
 */
export function mermaidDiagram<F extends FlowTypes>(flow: ComposedFlow<F>): string {
  const lines = ["flowchart LR"];
  const tasks = flow.tasks ?? [];
  const taskOf = new Map<string, string>();
  for (const t of tasks) for (const s of t.steps) taskOf.set(s.name, t.name);
  const flowTools = flow.flowTools ?? [];
  const isFlowTool = (name: string) => flowTools.some((t) => t.name === name);
  const node = (s: StepDef<F>, indent: string) => {
    const tools = s.tools.filter((t) => !isFlowTool(t.name)).map((t) => t.name).join(" · ");
    lines.push(`${indent}${s.name}["${s.name} (${s.kind === "llm" ? "LLM" : "code"})${tools ? `<br/>${tools}` : ""}"]`);
  };
  for (const s of flow.steps) if (!taskOf.has(s.name)) node(s, "  ");
  for (const t of tasks) {
    lines.push(`  subgraph ${t.name}["task: ${t.name}"]`);
    for (const s of t.steps) node(s, "    ");
    lines.push(`    ${t.name}_back(("back: to the step that started the task, or the one its start named"))`);
    lines.push("  end");
  }
  lines.push(`  start(("call")) --> ${flow.initialStep}`);
  const seen = new Set<string>();
  const edge = (from: string, to: string, label: string) => {
    const key = `${from}|${to}|${label}`;
    if (seen.has(key)) return;
    seen.add(key);
    lines.push(`  ${from} -- "${label}" --> ${to}`);
  };
  for (const s of flow.steps) {
    const task = taskOf.get(s.name);
    for (const t of s.tools) {
      if (isFlowTool(t.name)) continue;
      for (const target of t.transitions) {
        // "exit" returns to the step that entered: a task's caller, or in a plain flow its initial step.
        if (target === "exit") edge(s.name, task ? `${task}_back` : flow.initialStep, `${t.name}: back`);
        else edge(s.name, target, t.name);
      }
    }
  }
  // A flow-wide tool's "exit" leaves the task the call is in (elsewhere the call stays where it is).
  if (flowTools.length) lines.push(`  every_llm_step(("every LLM step<br/>${flowTools.map((t) => t.name).join(" · ")}"))`);
  for (const t of flowTools) {
    for (const target of t.transitions) {
      if (target !== "exit") edge("every_llm_step", target, t.name);
      else for (const task of tasks) edge("every_llm_step", `${task.name}_back`, `${t.name}: back, from inside the task`);
    }
  }
  // An event hook may move the flow from wherever the call is.
  const hooked = Object.entries(flow.hookTransitions).filter(([, targets]) => (targets ?? []).length > 0);
  if (hooked.length) lines.push(`  any_step(("any step"))`);
  for (const [event, targets] of hooked) for (const target of targets ?? []) edge("any_step", target, `event ${event}`);
  return lines.join("\n");
}
