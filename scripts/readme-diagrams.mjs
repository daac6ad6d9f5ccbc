// Refresh the two agents' Mermaid diagrams in docs/architecture.md from `npm run flow:diagram` (a
// test checks they match exactly). Usage: node scripts/readme-diagrams.mjs
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";

const DOC = "docs/architecture.md";
const out = execFileSync("node_modules/.bin/tsx", ["src/cli/flowDiagram.ts"], { encoding: "utf8" }).trim();
const diagrams = Object.fromEntries(out.split(/\n\n(?=%% agent: )/).map((d) => [d.match(/^%% agent: (\w+)/)[1], d.replace(/^%% agent: \w+\n/, "")]));
let readme = readFileSync(DOC, "utf8");
for (const [agent, marker] of [["reception", "**Reception**"], ["callback", "**Callback requests**"]]) {
  const at = readme.indexOf(marker);
  if (at < 0) throw new Error(`${DOC} has no "${marker}" paragraph`);
  const start = readme.indexOf("```mermaid\n", at);
  const end = readme.indexOf("\n```", start + 11);
  readme = readme.slice(0, start) + "```mermaid\n" + diagrams[agent] + readme.slice(end);
}
writeFileSync(DOC, readme);
console.log(`${DOC} diagrams refreshed`);
