import { appendFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/**
 * The README guide's last paragraph ("To make it selectable with `agent: pharmacy` …"), done
 * to a copy of the project the way a reader would do it by hand: `"pharmacy"` in AGENTS, its
 * case in createService, its entry in the flow diagram, `agent: pharmacy` in its config. Each
 * edit finds the code it changes or throws naming the file, so a refactor that moves it makes
 * the guide's paragraph fail here rather than go stale.
 */
export function wireGuideAgent(root: string, guidePart: string): void {
  const edit = (file: string, anchor: RegExp | string, change: (found: string) => string) => {
    const path = join(root, file);
    const text = readFileSync(path, "utf8");
    const m = typeof anchor === "string" ? (text.includes(anchor) ? anchor : undefined) : anchor.exec(text)?.[0];
    if (m === undefined) throw new Error(`${guidePart}: ${file} has no ${String(anchor)} to wire the guide's agent into; update the README paragraph and this test`);
    writeFileSync(path, text.replace(m, change(m)));
  };
  edit("src/config/schema.ts", /export const AGENTS = \[[^\]]*\] as const;/, (s) => s.replace("] as const", ', "pharmacy"] as const'));
  edit("src/service.ts", 'import { callbackFlow } from "../tools/callback/agent.js";\n', (s) => `${s}import { pharmacyFlow } from "../tools/pharmacy/agent.js";\n`);
  // `prescriptions: <your lookup>`: the demo's, where only pickup code 4711 is ready.
  edit("src/service.ts", /\n {4}default:\n {6}throw new InvariantError\(`no agent/, (s) =>
    `\n    case "pharmacy":\n      pipeline = wire(pharmacyFlow, { config, ledger, limiter, hasher, prescriptions: { status: async (code) => (code === "4711" ? { ready: true } : undefined) } });\n      break;${s}`,
  );
  edit("src/cli/flowDiagram.ts", 'import { receptionFlow } from "../../tools/reception/agent.js";\n', (s) => `${s}import { pharmacyFlow } from "../../tools/pharmacy/agent.js";\n`);
  edit("src/cli/flowDiagram.ts", "  callback: mermaidDiagram(callbackFlow),\n", (s) => `${s}  pharmacy: mermaidDiagram(pharmacyFlow),\n`);
  appendFileSync(join(root, "config/pharmacy.yaml"), "agent: pharmacy\n");
}
