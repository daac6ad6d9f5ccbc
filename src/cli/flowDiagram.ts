import { mermaidDiagram } from "../engine/diagram.js";
import type { FlowTypes } from "../engine/define.js";
import type { ComposedFlow } from "../engine/defineFlow.js";
import { AGENT_NAMES, AGENTS, type AgentName } from "../registry.js";

/**
 * `npm run flow:diagram`: every agent of the registry (src/registry.ts) as a Mermaid diagram,
 * generated from its definition (`-- --agent callback`: one agent only). docs/architecture.md
 * embeds exactly this output.
 */
const i = process.argv.indexOf("--agent");
const only = i >= 0 ? process.argv[i + 1] : undefined;
if (only !== undefined && !(AGENT_NAMES as readonly string[]).includes(only)) {
  console.error(`flow:diagram: unknown agent "${only}" (one of: ${AGENT_NAMES.join(", ")})`);
  process.exit(2);
}
const picked: AgentName[] = only ? [only as AgentName] : [...AGENT_NAMES];
console.log(picked.map((name) => `%% agent: ${name}\n${mermaidDiagram(AGENTS[name].flow as unknown as ComposedFlow<FlowTypes>)}`).join("\n\n"));
