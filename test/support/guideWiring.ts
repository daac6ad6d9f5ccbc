import { appendFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/**
 * The README guide's paragraph "To make it selectable with `agent: pharmacy` …", done to a copy
 * of the project the way a reader would do it by hand: the agent's line in the one registry
 * (src/registry.ts), `agent: pharmacy` in its config. Each edit finds the code it changes or
 * throws naming the file, so a refactor that moves it makes the guide's paragraph fail here
 * rather than go stale.
 */
export function wireGuideAgent(root: string, guidePart: string): void {
  const edit = (file: string, anchor: RegExp | string, change: (found: string) => string) => {
    const path = join(root, file);
    const text = readFileSync(path, "utf8");
    const m = typeof anchor === "string" ? (text.includes(anchor) ? anchor : undefined) : anchor.exec(text)?.[0];
    if (m === undefined) throw new Error(`${guidePart}: ${file} has no ${String(anchor)} to wire the guide's agent into; update the README paragraph and this test`);
    writeFileSync(path, text.replace(m, change(m)));
  };
  edit("src/registry.ts", 'import { callbackAgent } from "../tools/callback/agent.js";\n', (s) => `${s}import { pharmacyAgent } from "../tools/pharmacy/agent.js";\n`);
  edit("src/registry.ts", "  callback: callbackAgent,\n", (s) => `${s}  pharmacy: pharmacyAgent,\n`);
  appendFileSync(join(root, "config/pharmacy.yaml"), "agent: pharmacy\n");
}
