// The layering of src/ and tools/ (issue 12, points 1 and 2; issue 19, point 2), checked by
// `npm run lint:deps`, which `npm test` (and so CI) runs before the tests. Bottom to top:
//
//   src/aiflow     the wire protocol; imports nothing of ours
//   src/core       types every layer shares (call state, turn record, errors); only src/aiflow below
//   src/config, src/phone, src/store, src/llm, src/ledger, src/metrics, src/outbox   infrastructure; know no flow
//   src/engine     the generic flow engine (it runs tasks) and call pipeline; knows no flow, no task, no app config
//   src/tasks/<name>    a task's rules (sms: state slice, gate, claim check, start, result); knows no agent and no tool
//   src/agents/<name>   an agent's rules (callback: state slice, read-back, report); knows no tool
//   tools/<name>/  one file per tool of task or agent <name>, using only its own rules; and the
//                  definitions that list those tools: tools/<task>/task.ts, tools/<agent>/agent.ts
//   src/main.ts, src/service.ts, src/cli/   the composition root: picks an agent (tools/*/agent.ts)
//   src/registry.ts, src/appConfig.ts       its registry of tasks and agents, and the config composed from it
//
// So a task or agent is one name in parallel folders (src/tasks/<name> or src/agents/<name>,
// tools/<name>, prompts/), and src/tasks and src/agents never import tools: no folder cycle.
// src/guards and src/flow are the pre-issue-12 names of src/tasks and src/agents, src/tasks/composed
// the pre-issue-19 home of task definitions; the rules still name them so that none comes back
// under its old name as a way around them.
//
// Type-only imports count like any other (tsPreCompilationDeps): a layer that needs another
// layer's types depends on it. A rule that fails names the file and the import; fix the import
// (move the shared type down, usually into src/core), do not add an exception here.

/** A module of ours, in src/ or tools/ (npm packages and node: modules are never matched). */
const OURS = "^(src|tools)/";
/** The composition root: the only code that picks an agent and wires the app together. */
const ROOT = "^src/(main|service|registry|appConfig)\\.ts$|^src/cli/";

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    // ---- point 2: no import cycles ------------------------------------------------------------
    {
      name: "no-circular-between-folders",
      comment:
        "No folder of src/ or tools/ may depend, directly or through other folders, on a folder that " +
        "depends on it (issue 12, point 2). Folders form layers; a cycle means two folders are one. " +
        "Move the shared part below both (types shared by several layers live in src/core).",
      severity: "error",
      scope: "folder",
      from: { path: OURS },
      to: { circular: true },
    },
    {
      name: "no-cycle-leaving-its-folder",
      comment:
        "The same rule at module level, so the message names the modules: a module cycle that passes " +
        "through another folder (type-only imports included) is a cycle between folders.",
      severity: "error",
      from: { path: "^((?:src|tools)/.*/|src/)[^/]+$" },
      to: { circular: true, via: { pathNot: "^$1[^/]+$" } },
    },
    {
      name: "no-runtime-cycle",
      comment:
        "No module cycle with a value import anywhere (the same ESM cycle that leaves a binding in its " +
        "temporal dead zone at start-up). The only cycles allowed are type-only ones inside one " +
        "folder, erased at compile time: today src/engine/define.ts <-> src/engine/turnContext.ts " +
        "(a tool's run() receives the TurnContext, and the TurnContext knows the flow's tools).",
      severity: "error",
      from: { path: OURS },
      to: { circular: true, via: { dependencyTypesNot: ["type-only"] } },
    },

    // ---- point 1: the engine is generic -------------------------------------------------------
    {
      name: "engine-imports-only-lower-layers",
      comment:
        "src/engine is the generic flow engine and call pipeline (issue 12, point 1): it may import " +
        "only src/core, src/aiflow, src/llm (the model interface) and the call store's interface " +
        "(src/store/callStore.ts) - not a task or agent, no tool, not src/phone or the ledger (SMS " +
        "code), not src/config (the engine's options are its own type, EngineOptions, not the app " +
        "config), not the server, the store implementations or the composition root.",
      severity: "error",
      from: { path: "^src/engine/" },
      to: {
        path: OURS,
        pathNot: "^src/(engine|core|aiflow|llm)/|^src/store/callStore\\.ts$",
      },
    },
    {
      name: "engine-reaches-no-app-code",
      comment:
        "The same, transitively: nothing the engine imports may in turn lead to the app config, a " +
        "task, an agent, a tool, SMS code, the server, a store implementation or the composition root " +
        "(e.g. src/llm/createModel.ts reads the app config, so the engine must not import it). On a " +
        "direct import this lists every engine module that reaches the target; the line of " +
        "engine-imports-only-lower-layers names the import to fix.",
      severity: "error",
      from: { path: "^src/engine/" },
      to: {
        path:
          "^src/(config|tasks|agents|guards|flow|phone|ledger|server|metrics|outbox|cli)/|^tools/|" +
          "^src/store/(memoryCallStore|redisCallStore|rateLimiter)\\.ts$|" + ROOT,
        reachable: true,
      },
    },

    // ---- point 2: shared types live below every layer ------------------------------------------
    {
      name: "aiflow-is-the-bottom",
      comment:
        "src/aiflow is the wire protocol (events read, actions written); everything may use its " +
        "types, so it imports nothing of ours.",
      severity: "error",
      from: { path: "^src/aiflow/" },
      to: { path: OURS, pathNot: "^src/aiflow/" },
    },
    {
      name: "core-sits-below-every-layer",
      comment:
        "src/core holds the types several layers share (call state, turn record, the error base " +
        "class); it must sit below all of them, so it may import only src/aiflow's types.",
      severity: "error",
      from: { path: "^src/core/" },
      to: { path: OURS, pathNot: "^src/(core|aiflow)/" },
    },
    {
      name: "infrastructure-knows-no-flow",
      comment:
        "The lower layers (config, phone numbers, call store and rate limits, model clients, consent " +
        "ledger, metrics, the webhook outbox) are used by the engine, tasks and server and must not use them back: no " +
        "engine, task, agent, tool, server or composition root.",
      severity: "error",
      from: { path: "^src/(config|phone|store|llm|ledger|metrics|outbox)/" },
      to: {
        path: "^src/(engine|tasks|agents|guards|flow|server|cli)/|^tools/|^src/(main|service|registry|appConfig)\\.ts$",
      },
    },

    // ---- tasks, agents, tools, server ----------------------------------------------------------
    {
      name: "tasks-know-no-agent-tool-or-server",
      comment:
        "A task's rules (src/tasks/<task>: state slice, gate, claim check, start, result) are composed " +
        "into agents through tools/<task>/task.ts; they must not know the agents that use them, the " +
        "tools built on them, or the server.",
      severity: "error",
      from: { path: "^src/tasks/" },
      to: { path: "^src/(agents|server|cli)/|^tools/|^src/(main|service|registry|appConfig)\\.ts$" },
    },
    {
      name: "no-composed-folder",
      comment:
        "A task's definition (its steps, built from its tools) lives in tools/<task>/task.ts (issue 19, " +
        "point 2), never again in src/tasks/composed, which sat above the tools it imported.",
      severity: "error",
      from: { path: "^src/tasks/composed/" },
      to: {},
    },
    {
      name: "agent-rules-know-no-tool-or-server",
      comment:
        "An agent's rules (src/agents/<agent>: its state slice, read-back, report) are used by its own " +
        "tools; they import no tool (the agent's definition, tools/<agent>/agent.ts, lists the tools), " +
        "no other agent, no server and no composition root.",
      severity: "error",
      from: { path: "^src/agents/([^/]+)/" },
      to: { path: "^tools/|^src/(server|cli)/|^src/(main|service|registry|appConfig)\\.ts$|^src/agents/(?!$1/)" },
    },
    {
      name: "below-agents-knows-no-agent",
      comment: "Nothing below the agents (engine, tasks, infrastructure, server) uses an agent's rules.",
      severity: "error",
      from: { path: OURS, pathNot: ROOT + "|^tools/|^src/agents/" },
      to: { path: "^src/agents/" },
    },
    {
      name: "tools-know-no-server",
      comment: "A tool runs inside the engine, never against the transport; agents pick tools, not the other way round.",
      severity: "error",
      from: { path: "^tools/" },
      to: { path: "^src/(server|cli)/|^src/(main|service|registry|appConfig)\\.ts$" },
    },
    {
      name: "tool-group-uses-only-its-own-rules",
      comment:
        "A tool of tools/<name> may use src/tasks/<name> or src/agents/<name> and no other task's or " +
        "agent's rules (tools/sms -> src/tasks/sms; tools/common uses none), so a task can be left out " +
        "of an agent with its tools. The one door into another task is its start module " +
        "(src/tasks/<task>/start.ts: SMS_TASK, what a starting tool declares). Definitions (task.ts, " +
        "agent.ts) compose, so they may use any task's rules (its state slice, its types).",
      severity: "error",
      from: { path: "^tools/([^/]+)/", pathNot: "^tools/[^/]+/(task|agent)\\.ts$" },
      to: { path: "^src/(tasks|agents)/", pathNot: "^src/(tasks|agents)/($1/|[^/]+/start\\.ts$)" },
    },
    {
      name: "definitions-use-only-their-own-agent",
      comment: "A task's or agent's definition uses its own agent's rules only (src/agents/<name>).",
      severity: "error",
      from: { path: "^tools/([^/]+)/(task|agent)\\.ts$" },
      to: { path: "^src/agents/", pathNot: "^src/agents/$1/" },
    },
    {
      name: "a-tool-uses-only-its-own-group",
      comment:
        "A tool uses the tools of its own group and the shared ones (tools/common), nothing of another " +
        "group; a task's definition (task.ts) lists only its own tools and shared ones. An agent's " +
        "definition (agent.ts) composes: any group's tools and task definitions.",
      severity: "error",
      from: { path: "^tools/([^/]+)/", pathNot: "^tools/[^/]+/agent\\.ts$" },
      to: { path: "^tools/", pathNot: "^tools/($1|common)/" },
    },
    {
      name: "server-knows-no-flow",
      comment:
        "src/server (HTTP and WebSocket intake, auth, health, metrics) hands events to the call " +
        "pipeline; which agent, task or tool runs is the composition root's choice, not the transport's.",
      severity: "error",
      from: { path: "^src/server/" },
      to: { path: "^src/(tasks|agents|guards|flow|cli)/|^tools/|^src/(main|service|registry|appConfig)\\.ts$" },
    },
    {
      name: "only-the-composition-root-picks-an-agent",
      comment:
        "An agent's definition (tools/<agent>/agent.ts) sits on top of tasks and tools; only " +
        "src/service.ts, src/main.ts and src/cli/ choose and wire one, and nothing below imports the " +
        "composition root.",
      severity: "error",
      from: { path: OURS, pathNot: ROOT },
      to: { path: "^tools/[^/]+/agent\\.ts$|" + ROOT },
    },

    // ---- issue 20: OpenTelemetry stays behind one module ---------------------------------------
    {
      name: "only-telemetry-imports-opentelemetry",
      comment:
        "The engine, pipeline, gate and model wrapper trace through the small interface in " +
        "src/core/telemetry.ts (a no-op when tracing is off); only src/telemetry/ knows the " +
        "OpenTelemetry SDK, so the rest of the code never depends on it (nor loads it when off).",
      severity: "error",
      from: { path: OURS, pathNot: "^src/telemetry/" },
      to: { path: "node_modules/@opentelemetry/" },
    },

    // ---- the check itself ----------------------------------------------------------------------
    {
      name: "not-to-unresolvable",
      comment:
        "Every import must resolve (NodeNext: './x.js' is the file './x.ts'). An import the cruiser " +
        "cannot resolve would slip past every rule above, so it fails the check instead.",
      severity: "error",
      from: { path: OURS },
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    // Type-only imports are dependencies too (a layer that needs another layer's types depends on it).
    tsPreCompilationDeps: true,
    // tsconfig.json: NodeNext resolution. A './x.js' specifier whose .js file does not exist is
    // resolved to './x.ts' the way tsc does it (built into dependency-cruiser for TypeScript);
    // not-to-unresolvable above fails the check should that ever stop working.
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: {
      exportsFields: ["exports"],
      conditionNames: ["import", "require", "node", "default", "types"],
      extensions: [".ts", ".js", ".json"],
    },
    reporterOptions: {
      text: { highlightFocused: true },
    },
  },
};
