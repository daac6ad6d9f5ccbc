import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { actions, type AiFlowAction } from "../src/aiflow/actions.js";
import type { AiFlowEvent } from "../src/aiflow/events.js";
import type { CallState } from "../src/core/callState.js";
import { defineStep, defineTool, type Decision, type FlowHooks, type FlowTypes, type Keys, type TaskDef } from "../src/engine/define.js";
import { defineFlow } from "../src/engine/defineFlow.js";
import { FlowDefinitionError } from "../src/engine/errors.js";
import type { TurnContext } from "../src/engine/turnContext.js";
import { packageRoot } from "../src/config/paths.js";

/**
 * Issue 19, point 4: a flow is composed with its tasks by one rule (src/engine/define.ts,
 * FlowHooks): the parts run in order, its tasks first (as listed), then the flow; the first part
 * that decides wins; hooks that decide nothing all run, in that order. Seen here on the composed
 * flow itself, each hook recording its part's name.
 */

interface T extends FlowTypes {
  state: { seen: string[] };
  services: object;
  lines: Keys<never>;
  notes: Keys<"refused_by_a" | "refused_by_b">;
  reasons: Keys<"a_refuses" | "b_refuses">;
  tasks: object;
}

const SESSION = "s-1";
const said: string[] = [];
/** A turn as the hooks see it: only its state and session are read here. */
const ctx = { state: { seen: said }, sessionId: SESSION } as unknown as TurnContext<T>;
const state = { seen: said } as unknown as CallState<T["state"]>;
const event = (type: AiFlowEvent["type"]) => ({ type, session: { id: SESSION } }) as unknown as AiFlowEvent;
const step = defineStep<T>();
const tool = (name: string) => defineTool<T>()({ name, transitions: [], parameters: () => z.object({}), execute: () => name });

/** A part's hooks: each records `name` where it runs; `decides` says which ones decide. */
function hooks(name: string, decides: { handles?: boolean; refusesText?: boolean; blocks?: AiFlowAction["type"] }): FlowHooks<T> {
  const mark = (what: string) => void said.push(`${name}:${what}`);
  return {
    promptValues: () => ({ [`only_${name}`]: name, shared: name }),
    on: {
      user_speak: () => (mark("on"), decides.handles === true),
      sms_failed: { handle: () => (mark("on"), { handled: true, next: `${name}_retry` }), transitions: [`${name}_retry`] },
    },
    observe: { session_end: () => mark("observe") },
    gate: {
      async review(list) {
        mark(`gate(${list.map((a) => a.type).join(",")})`);
        const refused = list.filter((a) => a.type === decides.blocks);
        const decisions: Decision<T>[] = refused.map((a) => ({ subject: a.type, allowed: false, reason: name === "a" ? "a_refuses" : "b_refuses" }));
        return { allowed: list.filter((a) => a.type !== decides.blocks), decisions };
      },
    },
    checkModelText: () => {
      mark("text");
      return decides.refusesText ? { allowed: false, decision: { subject: "utterance", allowed: false, reason: name === "a" ? "a_refuses" : "b_refuses" }, correction: name === "a" ? "refused_by_a" : "refused_by_b" } : { allowed: true };
    },
    afterTurn: () => mark("afterTurn"),
    afterCommit: async () => mark("afterCommit"),
    recovery: {
      neverReplay: name === "a" ? ["send_sms"] : ["hangup"],
      onOutcome: () => mark("onOutcome"),
      onUnevaluated: () => mark("onUnevaluated"),
      onRetry: () => mark("onRetry"),
      onStateLost: () => mark("onStateLost"),
    },
  };
}

function task(name: string, decides: Parameters<typeof hooks>[1]): TaskDef<T> {
  return {
    name,
    start: () => ({ step: `${name}_retry`, note: "" }),
    steps: [step({ name: `${name}_retry`, kind: "llm", prompt: "main", tools: [tool(`${name}_own`)] })],
    entrySteps: [`${name}_retry`],
    lines: [],
    notes: [name === "a" ? "refused_by_a" : "refused_by_b"],
    tools: [tool("anywhere"), tool(`${name}_anywhere`)],
    hooks: hooks(name, decides),
  };
}

function flowWith(tasks: TaskDef<T>[], decides: Parameters<typeof hooks>[1] = {}) {
  return defineFlow<T>({
    name: "host",
    initialStep: "main",
    steps: [step({ name: "main", kind: "llm", prompt: "main", tools: [tool("main_own"), tool("anywhere")] }), step({ name: "host_retry", kind: "code", tools: [], run: () => undefined })],
    initialState: () => ({ seen: [] }),
    lines: [],
    notes: [],
    tasks,
    tools: [tool("host_anywhere")],
    hooks: hooks("host", decides),
  });
}

describe("a flow composed with its tasks, by one rule", () => {
  it("an event goes to the tasks' hooks first, as listed, then the flow's; the first that handles it ends it", async () => {
    said.length = 0;
    const flow = flowWith([task("a", {}), task("b", { handles: true })]);
    expect(await flow.hooks.user_speak!(ctx, event("user_speak"))).toEqual({ handled: true, next: undefined });
    expect(said).toEqual(["a:on", "b:on"]);
    said.length = 0;
    const nobody = flowWith([task("a", {}), task("b", {})]);
    expect(await nobody.hooks.user_speak!(ctx, event("user_speak"))).toBe(false);
    expect(said).toEqual(["a:on", "b:on", "host:on"]);
  });

  it("each part's hook moves the flow only where it declared; the diagram gets every part's targets", async () => {
    const flow = flowWith([task("a", {})]);
    expect(await flow.hooks.sms_failed!(ctx, event("sms_failed"))).toEqual({ handled: true, next: "a_retry" });
    expect(flow.hookTransitions.sms_failed).toEqual(["a_retry", "host_retry"]);
    const borrowing = flowWith([{ ...task("a", {}), hooks: { on: { sms_failed: () => ({ handled: true, next: "host_retry" }) } } }]);
    await expect(borrowing.hooks.sms_failed!(ctx, event("sms_failed"))).rejects.toThrow(FlowDefinitionError);
    await expect(borrowing.hooks.sms_failed!(ctx, event("sms_failed"))).rejects.toThrow(/a's sms_failed hook moved the flow to "host_retry", which it does not declare/);
  });

  it("a placeholder is set by the first part that sets it", () => {
    const values = flowWith([task("a", {}), task("b", {})]).promptValues(state, {});
    expect(values).toEqual({ only_a: "a", only_b: "b", only_host: "host", shared: "a" });
  });

  it("each gate reviews what the ones before let through: an action leaves only if every gate lets it", async () => {
    said.length = 0;
    const flow = flowWith([task("a", { blocks: "send_sms" }), task("b", { blocks: "hangup" })]);
    const out = [actions.speak(SESSION, "Hallo"), actions.sendSms(SESSION, "4915112345678", "Text"), actions.hangup(SESSION)];
    const { allowed, decisions } = await flow.gate!.review(out, ctx);
    expect(allowed.map((a) => a.type)).toEqual(["speak"]);
    expect(decisions.map((d) => d.reason)).toEqual(["a_refuses", "b_refuses"]);
    expect(said).toEqual(["a:gate(speak,send_sms,hangup)", "b:gate(speak,hangup)", "host:gate(speak)"]);
  });

  it("the model's text is refused by the first check that refuses it; the later ones do not run", () => {
    said.length = 0;
    const verdict = flowWith([task("a", {}), task("b", { refusesText: true })], { refusesText: true }).checkModelText!("Die SMS ist angekommen.", ctx);
    expect(verdict).toMatchObject({ allowed: false, correction: "refused_by_b" });
    expect(said).toEqual(["a:text", "b:text"]);
  });

  it("hooks that decide nothing all run, tasks first; never-replayed actions are joined", async () => {
    said.length = 0;
    const flow = flowWith([task("a", {}), task("b", {})]);
    await flow.observers.session_end!(ctx, event("session_end"));
    await flow.afterTurn!(ctx);
    await flow.afterCommit!(state, {}, { now: 0, log: undefined as never, seq: 1 });
    await flow.onOutcome!({ status: "rerun_done", callId: SESSION, seq: 1, reason: "lease_lost" }, {}, state, 0);
    await flow.onUnevaluated!(ctx);
    await flow.onRetry!(ctx);
    await flow.onStateLost!(ctx);
    const order = ["a", "b", "host"];
    expect(said).toEqual(["observe", "afterTurn", "afterCommit", "onOutcome", "onUnevaluated", "onRetry", "onStateLost"].flatMap((h) => order.map((p) => `${p}:${h}`)));
    expect(flow.neverReplay).toEqual(["send_sms", "hangup"]);
  });

  it("a hook no part brings is absent (the engine skips it), and a flow without tasks runs as written", async () => {
    const bare = defineFlow<T>({ name: "bare", initialStep: "main", steps: [step({ name: "main", kind: "llm", prompt: "main", tools: [] })], initialState: () => ({ seen: [] }), lines: [], notes: [] });
    expect([bare.gate, bare.checkModelText, bare.afterTurn, bare.afterCommit, bare.onOutcome, bare.onUnevaluated, bare.onRetry, bare.onStateLost]).toEqual(Array(8).fill(undefined));
    expect(bare.neverReplay).toEqual([]);
    expect(bare.promptValues(state, {})).toEqual({});
  });

  it("the tools offered anywhere come after each LLM step's own, once each; a task's steps are copied, not changed", () => {
    const a = task("a", {});
    const flow = flowWith([a]);
    const tools = (name: string) => flow.steps.find((s) => s.name === name)!.tools.map((t) => t.name);
    expect(tools("main")).toEqual(["main_own", "anywhere", "a_anywhere", "host_anywhere"]);
    expect(tools("a_retry")).toEqual(["a_own", "anywhere", "a_anywhere", "host_anywhere"]);
    // A tool offered anywhere by two parts is the first part's (the task's).
    expect(flow.flowTools.find((t) => t.name === "anywhere")).toBe(a.tools![0]);
    expect(tools("host_retry")).toEqual([]);
    expect(a.steps[0]!.tools.map((t) => t.name)).toEqual(["a_own"]);
  });
});

/** Every error the service raises is an AgentError with a code: no plain Error, RangeError or TypeError is built in src/ or tools/. */
describe("errors", () => {
  it("src/ and tools/ throw only AgentErrors", () => {
    const root = packageRoot();
    const files = (dir: string): string[] => readdirSync(dir).flatMap((f) => (statSync(join(dir, f)).isDirectory() ? files(join(dir, f)) : f.endsWith(".ts") ? [join(dir, f)] : []));
    const plain = [...files(join(root, "src")), ...files(join(root, "tools"))].flatMap((f) =>
      readFileSync(f, "utf8")
        .split("\n")
        .map((line, i) => ({ at: `${f.slice(root.length + 1)}:${i + 1}`, line }))
        // The one plain Error built is a cause, never thrown: the timeout a ModelError wraps.
        .filter(({ line }) => /new (Range|Type)?Error\(/.test(line) && !line.includes('Object.assign(new Error("timeout")')),
    );
    expect(plain.map((p) => `${p.at}: ${p.line.trim()}`)).toEqual([]);
  });
});
