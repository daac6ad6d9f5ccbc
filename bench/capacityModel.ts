import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { seededRandom } from "./capacityCaller.js";

/**
 * The model server of the capacity bench, a process of its own: an OpenAI-compatible Chat
 * Completions endpoint (non-streaming) that decides by the tools it is offered and the caller's
 * last words, after a random BENCH_MODEL_MIN_MS..BENCH_MODEL_MAX_MS (seeded: BENCH_SEED).
 * It keeps nothing per request (a run has hundreds of thousands of them): only counts.
 *   start_sms_flow offered and the caller asks for an SMS  → start_sms_flow(opening_hours)
 *   record_consent offered                                 → record_consent(consented: the caller said "ja" and no "nein")
 *   end_call offered and the caller says goodbye           → end_call
 *   anything else                                          → a short text answer (counted as unexpected)
 * `node --import tsx bench/capacityModel.ts PORT` prints "ready URL"; IPC "stats" answers the counts.
 */

type Message = { role: string; content: string | null };
type Body = { model: string; messages: Message[]; tools?: Array<{ function: { name: string } }> };

const min = Number(process.env.BENCH_MODEL_MIN_MS ?? 300);
const max = Number(process.env.BENCH_MODEL_MAX_MS ?? 1500);
const random = seededRandom(Number(process.env.BENCH_SEED ?? 21) * 7919);
const counts = { requests: 0, unexpected: 0 };

/** What the model calls, from the tools offered and the caller's last words. */
function decide(body: Body): { name: string; args: Record<string, unknown> } | { text: string } {
  const tools = (body.tools ?? []).map((t) => t.function.name);
  const lastUser = [...body.messages].reverse().find((m) => m.role === "user")?.content ?? "";
  if (tools.includes("record_consent")) return { name: "record_consent", args: { consented: /\bja\b/i.test(lastUser) && !/\bnein\b/i.test(lastUser) } };
  if (tools.includes("end_call") && /tschüss|auf wiederhören/i.test(lastUser)) return { name: "end_call", args: {} };
  if (tools.includes("start_sms_flow") && /sms/i.test(lastUser)) return { name: "start_sms_flow", args: { info: "opening_hours" } };
  counts.unexpected++;
  return { text: "Wie kann ich Ihnen helfen?" };
}

const server = createServer(async (req, res) => {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const path = req.url?.split("?")[0] ?? "";
  if (req.method === "GET" && path.endsWith("/models")) {
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ object: "list", data: [{ id: "bench-model", object: "model", created: 0, owned_by: "bench" }] }));
    return;
  }
  if (req.method !== "POST" || !path.endsWith("/chat/completions")) {
    res.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ error: { message: "not found" } }));
    return;
  }
  const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as Body;
  const n = ++counts.requests;
  const choice = decide(body);
  await new Promise((r) => setTimeout(r, Math.round(min + random() * (max - min))));
  const toolCalls = "name" in choice ? [{ id: `call_${n}`, type: "function", function: { name: choice.name, arguments: JSON.stringify(choice.args) } }] : [];
  res.writeHead(200, { "content-type": "application/json" });
  res.end(
    JSON.stringify({
      id: `chatcmpl-${n}`,
      object: "chat.completion",
      created: Math.floor(Date.now() / 1000),
      model: body.model,
      choices: [{ index: 0, finish_reason: toolCalls.length ? "tool_calls" : "stop", message: { role: "assistant", content: "text" in choice ? choice.text : null, ...(toolCalls.length ? { tool_calls: toolCalls } : {}) } }],
      usage: { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 },
    }),
  );
});
// Hundreds of service connections at once: no request timeout, a deep accept queue.
server.keepAliveTimeout = 60_000;
server.listen({ port: Number(process.argv[2] ?? 0), host: "127.0.0.1", backlog: 4096 }, () => {
  console.log(`ready http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`);
});
process.on("message", (m) => {
  if (m === "stats") process.send!({ ...counts, cpuUs: process.cpuUsage().user + process.cpuUsage().system });
});
process.on("SIGTERM", () => process.exit(0));
process.on("SIGINT", () => process.exit(0));
