import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A local OpenAI-compatible Chat Completions server over real HTTP. Tests script what the
 * "model" answers, including misbehaviour (wrong tools, broken JSON, HTTP errors, slowness),
 * and inspect every request the service made.
 */

export interface ChatBody {
  model: string;
  messages: Array<{ role: string; content: string | null; tool_calls?: Array<{ id: string; function: { name: string; arguments: string } }>; tool_call_id?: string }>;
  tools?: Array<{ type: string; function: { name: string; description: string; parameters: Record<string, unknown>; strict?: boolean } }>;
  temperature?: number;
  max_tokens?: number;
  [k: string]: unknown;
}

export interface ScriptedToolCall {
  name: string;
  /** An object is JSON-encoded; a string is sent as is (so it can be broken JSON). */
  arguments?: string | Record<string, unknown>;
  id?: string;
}

export type ScriptedReply =
  | {
      kind: "message";
      text?: string;
      toolCalls?: ScriptedToolCall[];
      delayMs?: number;
      /** When the client streams: time to the first token, and between tokens (one token a word). */
      ttftMs?: number;
      tokenDelayMs?: number;
    }
  | { kind: "http_error"; status: number; body?: unknown; delayMs?: number }
  /** Accept the request and never answer before the client times out. */
  | { kind: "hang" };

export type ReplyFn = (body: ChatBody, index: number) => ScriptedReply | Promise<ScriptedReply>;

export const reply = {
  text: (text: string, delayMs?: number): ScriptedReply => ({ kind: "message", text, delayMs }),
  tool: (name: string, args: string | Record<string, unknown> = {}, text?: string): ScriptedReply => ({
    kind: "message",
    text,
    toolCalls: [{ name, arguments: args }],
  }),
  tools: (...calls: ScriptedToolCall[]): ScriptedReply => ({ kind: "message", toolCalls: calls }),
  error: (status: number, delayMs?: number): ScriptedReply => ({ kind: "http_error", status, delayMs }),
  empty: (): ScriptedReply => ({ kind: "message", text: "" }),
  hang: (): ScriptedReply => ({ kind: "hang" }),
};

export class FakeOpenAIServer {
  readonly requests: ChatBody[] = [];
  /** URL and headers of each request, for checking how a client addresses the server. */
  readonly calls: Array<{ url: string; headers: Record<string, string | string[] | undefined> }> = [];
  /** GET {base}/models requests (the service's reachability check), by arrival time (ms since epoch). */
  readonly modelListCalls: number[] = [];
  /** Streams the client hung up on before they finished (cancelled generations). */
  streamsAborted = 0;
  /** When each stream finished writing, by request index (ms since epoch). */
  readonly streamEnds: Record<number, number> = {};
  private queue: ScriptedReply[] = [];
  private gates: Array<{ arrive: () => void; released: Promise<void> }> = [];
  private fallback: ReplyFn = () => reply.text("Wie kann ich helfen?");
  private server?: Server;
  private readonly open = new Set<ServerResponse>();
  baseURL = "";

  /** Replies used in order, one per request; after that the fallback answers. */
  enqueue(...replies: ScriptedReply[]): this {
    this.queue.push(...replies);
    return this;
  }

  /**
   * Hold the next request until the test releases it: a model exactly as slow as the test
   * says, with no sleeps. `arrived` resolves once the request is in and held.
   */
  block(): { arrived: Promise<void>; release: () => void } {
    let arrive!: () => void;
    let release!: () => void;
    const arrived = new Promise<void>((r) => (arrive = r));
    const released = new Promise<void>((r) => (release = r));
    this.gates.push({ arrive, released });
    return { arrived, release };
  }

  /** Drop holds no request took up (the event made no model request after all). */
  clearBlocks(): void {
    for (const g of this.gates) g.arrive();
    this.gates = [];
  }

  /** Answer every request not covered by the queue. */
  onRequest(fn: ReplyFn): this {
    this.fallback = fn;
    return this;
  }

  reset(): void {
    this.queue = [];
    this.gates = [];
    this.requests.length = 0;
    this.calls.length = 0;
    this.modelListCalls.length = 0;
    this.fallback = () => reply.text("Wie kann ich helfen?");
  }

  /** Tool names offered in request i. */
  toolsOffered(i: number): string[] {
    return (this.requests[i]?.tools ?? []).map((t) => t.function.name);
  }

  /** Listens on 127.0.0.1, on `port` when given (a test that brings an endpoint up late), else on a free one. */
  async start(port = 0): Promise<string> {
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(port, "127.0.0.1", resolve));
    const bound = (this.server.address() as AddressInfo).port;
    this.baseURL = `http://127.0.0.1:${bound}/v1`;
    return this.baseURL;
  }

  async close(): Promise<void> {
    for (const res of this.open) res.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  /** Server-sent events in the Chat Completions streaming format: one word a chunk, tool calls at the end. */
  private async stream(
    res: ServerResponse,
    body: ChatBody,
    index: number,
    scripted: Extract<ScriptedReply, { kind: "message" }>,
    toolCalls: Array<{ id: string; type: string; function: { name: string; arguments: string } }>,
    promptTokens: number,
  ): Promise<void> {
    let closed = false;
    res.on("close", () => {
      if (!res.writableEnded) {
        closed = true;
        this.streamsAborted++;
      }
    });
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
    const chunk = (delta: Record<string, unknown>, finish: string | null = null, extra: Record<string, unknown> = {}) =>
      `data: ${JSON.stringify({ id: `chatcmpl-${index}`, object: "chat.completion.chunk", created: Math.floor(Date.now() / 1000), model: body.model, choices: [{ index: 0, delta, finish_reason: finish }], ...extra })}\n\n`;
    const wait = (ms: number | undefined) => (ms ? new Promise((r) => setTimeout(r, ms)) : Promise.resolve());
    await wait(scripted.ttftMs);
    const words = (scripted.text ?? "").split(/(?<=\s)/).filter(Boolean);
    for (const [i, w] of words.entries()) {
      if (closed) return;
      res.write(chunk(i === 0 ? { role: "assistant", content: w } : { content: w }));
      await wait(scripted.tokenDelayMs);
    }
    if (closed) return;
    if (toolCalls.length) res.write(chunk({ tool_calls: toolCalls.map((c, i) => ({ index: i, ...c })) }));
    res.write(chunk({}, toolCalls.length ? "tool_calls" : "stop"));
    res.write(`data: ${JSON.stringify({ id: `chatcmpl-${index}`, object: "chat.completion.chunk", created: 0, model: body.model, choices: [], usage: { prompt_tokens: promptTokens, completion_tokens: words.length, total_tokens: promptTokens + words.length } })}\n\n`);
    res.end("data: [DONE]\n\n");
    this.streamEnds[index] = Date.now();
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    // The models list, as OpenAI-compatible servers answer it.
    if (req.method === "GET" && req.url?.split("?")[0]!.endsWith("/models")) {
      this.modelListCalls.push(Date.now());
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ object: "list", data: [{ id: "fake-model", object: "model", created: 0, owned_by: "test" }] }));
      return;
    }
    if (req.method !== "POST" || !req.url?.split("?")[0]!.endsWith("/chat/completions")) {
      res.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ error: { message: "not found" } }));
      return;
    }
    const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as ChatBody;
    const index = this.requests.length;
    this.requests.push(body);
    this.calls.push({ url: req.url, headers: req.headers });
    const gate = this.gates.shift();
    if (gate) {
      gate.arrive();
      await gate.released;
    }
    const scripted = this.queue.length ? this.queue.shift()! : await this.fallback(body, index);
    if (scripted.kind === "hang") {
      this.open.add(res);
      res.on("close", () => this.open.delete(res));
      return;
    }
    if (scripted.delayMs) await new Promise((r) => setTimeout(r, scripted.delayMs));
    if (scripted.kind === "http_error") {
      res.writeHead(scripted.status, { "content-type": "application/json" });
      res.end(JSON.stringify(scripted.body ?? { error: { message: `scripted HTTP ${scripted.status}`, type: "server_error" } }));
      return;
    }
    const toolCalls = (scripted.toolCalls ?? []).map((c, i) => ({
      id: c.id ?? `call_${index}_${i}`,
      type: "function",
      function: { name: c.name, arguments: typeof c.arguments === "string" ? c.arguments : JSON.stringify(c.arguments ?? {}) },
    }));
    const promptTokens = JSON.stringify(body.messages).length + JSON.stringify(body.tools ?? []).length;
    if (body.stream === true) {
      await this.stream(res, body, index, scripted, toolCalls, Math.ceil(promptTokens / 4));
      return;
    }
    res.writeHead(200, { "content-type": "application/json" });
    res.end(
      JSON.stringify({
        id: `chatcmpl-${index}`,
        object: "chat.completion",
        created: Math.floor(Date.now() / 1000),
        model: body.model,
        choices: [
          {
            index: 0,
            finish_reason: toolCalls.length ? "tool_calls" : "stop",
            message: { role: "assistant", content: scripted.text ?? null, ...(toolCalls.length ? { tool_calls: toolCalls } : {}) },
          },
        ],
        // Rough token count (4 chars per token) so tests can see usage flowing through.
        usage: { prompt_tokens: Math.ceil(promptTokens / 4), completion_tokens: 5, total_tokens: Math.ceil(promptTokens / 4) + 5 },
      }),
    );
  }
}
