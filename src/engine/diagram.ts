import type { FlowDef, FlowTypes } from "./define.js";

/**
 * A Mermaid flowchart drawn from the flow definition itself: steps, the tools each offers,
 * and the transitions tools and event hooks declare (the engine enforces those).
 */
export function mermaidDiagram<F extends FlowTypes>(flow: FlowDef<F>): string {
  const lines = ["flowchart LR"];
  for (const s of flow.steps) {
    const tools = s.tools.map((t) => t.name).join(" · ");
    lines.push(`  ${s.name}["${s.name} (${s.kind === "llm" ? "LLM" : "code"})${tools ? `<br/>${tools}` : ""}"]`);
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
    for (const t of s.tools) {
      for (const target of t.transitions) {
        // exit_flow returns to the step that entered the sub-flow: the initial step in this flow.
        if (target === "exit") edge(s.name, flow.initialStep, `${t.name}: back`);
        else edge(s.name, target, t.name);
      }
    }
  }
  for (const [event, targets] of Object.entries(flow.hookTransitions)) {
    for (const target of targets ?? []) edge(flow.initialStep, target, `event ${event}`);
  }
  return lines.join("\n");
}
