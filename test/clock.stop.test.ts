import { describe, expect, it } from "vitest";
import { ManualClock, Stop, systemClock } from "../src/engine/clock.js";

describe("Stop: what the pipeline's sleeps and waits stop with (instead of an AbortController)", () => {
  it("calls each listener once, in order, at the first abort; none removed before it, none added after it", () => {
    const stop = new Stop();
    const calls: string[] = [];
    const removed = () => calls.push("removed");
    stop.addEventListener("abort", () => calls.push("a"));
    stop.addEventListener("abort", removed);
    stop.addEventListener("abort", () => calls.push("b"));
    stop.removeEventListener("abort", removed);
    expect(stop.aborted).toBe(false);
    stop.abort();
    stop.abort();
    stop.addEventListener("abort", () => calls.push("late"));
    expect(stop.aborted).toBe(true);
    expect(stop.signal).toBe(stop);
    expect(calls).toEqual(["a", "b"]);
  });

  it("ends a manual clock's sleep at once, and a sleep asked for after the stop does not wait", async () => {
    const clock = new ManualClock();
    const stop = new Stop();
    let woke = false;
    const sleeping = clock.sleep(60_000, stop).then(() => (woke = true));
    expect(clock.pending).toBe(1);
    stop.abort();
    await sleeping;
    expect(woke).toBe(true);
    expect(clock.pending).toBe(0);
    await clock.sleep(60_000, stop);
    expect(clock.pending).toBe(0);
  });

  it("ends the system clock's sleep long before its time", async () => {
    const stop = new Stop();
    const t0 = performance.now();
    const sleeping = systemClock.sleep(60_000, stop);
    stop.abort();
    await sleeping;
    expect(performance.now() - t0).toBeLessThan(30_000);
  });

  it("a clock's sleep still takes an AbortSignal", async () => {
    const clock = new ManualClock();
    const controller = new AbortController();
    const sleeping = clock.sleep(1_000, controller.signal);
    controller.abort("done");
    await sleeping;
    expect(clock.pending).toBe(0);
  });
});
