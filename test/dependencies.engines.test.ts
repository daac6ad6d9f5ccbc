import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import Fastify from "fastify";
import { describe, expect, it } from "vitest";
import { ROOT } from "./support/serverProcess.js";

/**
 * Issue 22, point 10: the dependency tree matches the Node range the package declares. `npm
 * install` warned that cookie@2.0.2 (fastify → light-my-request 6.8) needs Node ≥ 22 while the
 * package said Node ≥ 20; an `overrides` entry keeps light-my-request on cookie 1.1 (Node ≥ 18,
 * the same `stringifySetCookie`), and `engines.node` says what the toolchain needs (vite and
 * rolldown, under vitest: ^20.19.0 || >=22.12.0; dependency-cruiser: no Node 21 or 23).
 */

/** The parts of semver used here. It is installed with fastify (its dependency), typed here rather than adding @types/semver. */
interface Semver {
  validRange(range: string): string | null;
  subset(sub: string, dom: string): boolean;
  intersects(a: string, b: string): boolean;
  satisfies(version: string, range: string): boolean;
}
const semver = createRequire(import.meta.url)("semver") as Semver;

interface LockEntry {
  version?: string;
  engines?: { node?: string } | string[];
  dev?: boolean;
  optional?: boolean;
}
const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { engines: { node: string }; overrides?: Record<string, unknown> };
const lock = JSON.parse(readFileSync(join(ROOT, "package-lock.json"), "utf8")) as { packages: Record<string, LockEntry> };
const declared = pkg.engines.node;

describe("the Node range the package declares", () => {
  it("is a valid range that admits Node 20 (and the Node running this test), and the lock file says the same", () => {
    expect(semver.validRange(declared)).not.toBeNull();
    expect(semver.intersects(declared, "20.x")).toBe(true);
    expect(semver.satisfies(process.versions.node, declared)).toBe(true);
    expect((lock.packages[""]!.engines as { node?: string }).node).toBe(declared);
  });

  it("every package in package-lock.json that declares engines.node supports every Node version in it", () => {
    const checked: string[] = [];
    const outside: string[] = [];
    for (const [path, entry] of Object.entries(lock.packages)) {
      if (path === "" || !entry.engines || Array.isArray(entry.engines)) continue;
      const range = entry.engines.node;
      if (!range) continue;
      checked.push(path);
      // subset: each version the package declares is one this package supports, not just some.
      if (!semver.validRange(range) || !semver.subset(declared, range)) outside.push(`${path.replace(/^.*node_modules\//, "")}@${entry.version} needs node ${range}${entry.dev ? " (dev)" : ""}`);
    }
    expect(checked.length).toBeGreaterThan(20); // the walk saw the tree, not an empty file
    expect(outside, `package.json declares node ${declared}`).toEqual([]);
  });

  it("fastify's inject (light-my-request) gets cookie 1.x from the override, and sends cookies as before", async () => {
    expect(pkg.overrides).toEqual({ "light-my-request": { cookie: "^1.1.1" } });
    const cookies = Object.entries(lock.packages).filter(([path]) => /(^|\/)node_modules\/cookie$/.test(path));
    expect(cookies.map(([path, e]) => [path, e.version?.split(".")[0]])).toEqual([["node_modules/light-my-request/node_modules/cookie", "1"]]);
    // What light-my-request uses cookie for: the Cookie header of an injected request.
    const app = Fastify();
    app.get("/c", async (req) => ({ cookie: req.headers.cookie ?? null }));
    try {
      const r = await app.inject({ method: "GET", url: "/c", cookies: { a: "1", b: "x y;z" } });
      expect(r.json()).toEqual({ cookie: "a=1; b=x%20y%3Bz" });
    } finally {
      await app.close();
    }
  });
});
