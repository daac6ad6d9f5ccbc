import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { BenchUsageError, benchOutput } from "../bench/outputs.js";

describe("npm run bench: where results go", () => {
  it("an ordinary run writes to the ignored bench/out/, never over the checked-in results", () => {
    expect(benchOutput([], {})).toEqual({ dir: join("bench", "out"), json: join("bench", "out", "results.json"), md: join("bench", "out", "results.md"), checkedIn: false });
    const ignored = spawnSync("git", ["check-ignore", "-q", "bench/out/results.json"]);
    expect(ignored.status, "bench/out/ must be in .gitignore").toBe(0);
  });

  it("--update writes the checked-in bench/results.md and bench/results.json", () => {
    expect(benchOutput(["--update"], {})).toEqual({ dir: "bench", json: join("bench", "results.json"), md: join("bench", "results.md"), checkedIn: true });
  });

  it("BENCH_OUT picks another folder; together with --update it is refused, not silently resolved", () => {
    expect(benchOutput([], { BENCH_OUT: "/tmp/b" })).toMatchObject({ dir: "/tmp/b", json: join("/tmp/b", "results.json"), checkedIn: false });
    expect(() => benchOutput(["--update"], { BENCH_OUT: "/tmp/b" })).toThrow(/--update .*BENCH_OUT=\/tmp\/b/);
  });

  it("--help gives no paths (usage is printed instead); an unknown flag is a usage error naming it", () => {
    expect(benchOutput(["--help"], {})).toBeUndefined();
    expect(() => benchOutput(["--updat"], {})).toThrow(BenchUsageError);
    expect(() => benchOutput(["--updat"], {})).toThrow(/'--updat'/);
  });

  it("--only names the rows measured (capacity, burst); an unknown or empty part is a usage error naming the parts", () => {
    expect(benchOutput(["--only", "capacity,burst", "--update"], {})).toMatchObject({ dir: "bench", checkedIn: true, only: ["capacity", "burst"] });
    expect(benchOutput([], {})?.only).toBeUndefined();
    expect(() => benchOutput(["--only", "capacity,speed"], {})).toThrow(/unknown part speed; the parts: capacity, burst/);
    expect(() => benchOutput(["--only", ""], {})).toThrow(BenchUsageError);
  });

  it("the CLI stops on a bad flag at once with one message and exit 2, before measuring anything", () => {
    const before = readFileSync("bench/results.json", "utf8");
    const r = spawnSync(process.execPath, ["--import", "tsx", "bench/run.ts", "--nope"], { encoding: "utf8", timeout: 30_000 });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^bench: Unknown option '--nope'/);
    expect(r.stderr).not.toMatch(/memory per live call/);
    expect(readFileSync("bench/results.json", "utf8")).toBe(before);
  }, 30_000);
});
