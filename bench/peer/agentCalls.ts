import { Agent, run, setDefaultOpenAIClient, setOpenAIAPI, setTracingDisabled, tool, type AgentInputItem } from "@openai/agents";
import OpenAI from "openai";
import type { PeerJob, PeerResult } from "./job.js";

/**
 * The peer in the bench's side-by-side comparison (bench/peerCompare.ts): OpenAI Agents JS
 * playing the same calls against the same local model server. Runs in its own process with
 * bench/peer's own node_modules (Agents JS needs zod 4; the service pins zod 3).
 * Reads a PeerJob as JSON on stdin, writes a PeerResult as JSON on stdout.
 *
 * One agent per language: the service's persona and every step prompt concatenated as its
 * instructions, every tool of the flow with the service's own JSON schemas and descriptions.
 * The tools do no work of their own: each returns the line or note the service would give for
 * it (job.outputs), so the peer's cost is the framework's and its model requests'.
 */

async function readStdin(): Promise<string> {
  let s = "";
  for await (const chunk of process.stdin) s += String(chunk);
  return s;
}

async function main() {
  const job = JSON.parse(await readStdin()) as PeerJob;
  // Only the local model server is ever asked: no traces exported, chat completions as the service uses.
  setTracingDisabled(true);
  setOpenAIAPI("chat_completions");
  setDefaultOpenAIClient(new OpenAI({ apiKey: "bench-not-sent", baseURL: job.baseURL, maxRetries: 0 }));

  const agentFor = (lang: string, outputs: Record<string, string>) => {
    const spec = job.agents[lang];
    if (!spec) throw new Error(`no agent for ${lang}`);
    const tools = spec.tools.map((t) =>
      tool({
        name: t.name,
        description: t.description,
        parameters: t.parameters as never,
        strict: t.strict as false,
        execute: async (args: unknown) => {
          if (t.name === "record_consent") return (args as { consented?: boolean }).consented ? outputs.record_consent_yes! : outputs.record_consent_no!;
          return outputs[t.name] ?? outputs.default!;
        },
      }),
    );
    return new Agent({
      name: "reception",
      instructions: spec.instructions,
      model: job.model,
      modelSettings: { temperature: job.temperature, maxTokens: job.maxTokens },
      tools,
      ...(job.stopAtToolNames ? { toolUseBehavior: { stopAtToolNames: job.stopAtToolNames } } : {}),
    });
  };

  const result: PeerResult = { calls: [] };
  for (let r = 0; r < job.repeat; r++) {
    for (const c of job.calls) {
      const agent = agentFor(c.lang, c.outputs);
      const started = performance.now();
      let history: AgentInputItem[] = [];
      const answers: string[] = [];
      for (const line of c.turns) {
        const res = await run(agent, [...history, { role: "user", content: line }]);
        history = res.history;
        answers.push(String(res.finalOutput ?? ""));
      }
      result.calls.push({ id: c.id, ms: performance.now() - started, answers });
    }
  }
  process.stdout.write(JSON.stringify(result));
}

main().catch((e) => {
  process.stderr.write(`peer: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
