import { callbackFlow } from "../../tools/callback/agent.js";
import { receptionFlow } from "../../tools/reception/agent.js";
import { mermaidDiagram } from "../engine/diagram.js";
import { AGENTS, type AgentName } from "../config/schema.js";

/**
 * `npm run flow:diagram`: every shipped agent as a Mermaid diagram, generated from its
 * definition (`-- --agent callback`: one agent only). docs/architecture.md embeds exactly this output.
 */
const diagrams: Record<AgentName, string> = {
  reception: mermaidDiagram(receptionFlow),
  callback: mermaidDiagram(callbackFlow),
};

const i = process.argv.indexOf("--agent");
const only = i >= 0 ? process.argv[i + 1] : undefined;
if (only !== undefined && !(AGENTS as readonly string[]).includes(only)) {
  console.error(`flow:diagram: unknown agent "${only}" (one of: ${AGENTS.join(", ")})`);
  process.exit(2);
}
const picked = only ? [only as AgentName] : [...AGENTS];
console.log(picked.map((name) => `%% agent: ${name}\n${diagrams[name]}`).join("\n\n"));
