import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { InvariantError } from "../core/errors.js";

let root: string | undefined;

/**
 * The folder holding package.json (and prompts/, config/). The same code runs from src/ (tsx,
 * tests) and from dist/src/ (npm start), so paths next to the package are found by walking up
 * from this file rather than by a fixed number of "../" that is right for only one of them.
 */
export function packageRoot(): string {
  if (root) return root;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, "package.json"))) return (root = dir);
    const up = dirname(dir);
    if (up === dir) throw new InvariantError(`no package.json above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}
