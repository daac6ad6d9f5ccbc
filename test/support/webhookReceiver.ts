import { createServer, type IncomingHttpHeaders } from "node:http";

/** A post as the receiver got it: the raw body text and the headers (lower-case names). */
export interface Received {
  body: string;
  headers: IncomingHttpHeaders;
}

/**
 * What the receiver does with the n-th post (from 1): answer with a status (and headers), drop
 * the connection without answering ("reset"), or never answer ("hang", until close()).
 */
export type Reply = { status: number; headers?: Record<string, string>; delayMs?: number } | "reset" | "hang";

export interface Receiver {
  url: string;
  received: Received[];
  close(): Promise<void>;
}

/** A webhook receiver on 127.0.0.1 (a free port), answering each post as `reply` says. */
export async function startReceiver(reply: (r: Received, n: number) => Reply): Promise<Receiver> {
  const received: Received[] = [];
  const timers = new Set<NodeJS.Timeout>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const r = { body: Buffer.concat(chunks).toString("utf8"), headers: req.headers };
      received.push(r);
      const what = reply(r, received.length);
      if (what === "hang") return;
      if (what === "reset") return void req.socket.destroy();
      const answer = () => res.writeHead(what.status, what.headers).end(`{"status":${what.status}}`);
      if (!what.delayMs) return answer();
      const t = setTimeout(() => (timers.delete(t), answer()), what.delayMs);
      timers.add(t);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}/hooks/calls`,
    received,
    close: async () => {
      for (const t of timers) clearTimeout(t);
      server.closeAllConnections(); // hung posts and idle keep-alive sockets
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** A log sink for pino: every line, to check what was (and was not) logged. */
export function logLines(): { lines: string[]; write: (line: string) => void } {
  const lines: string[] = [];
  return { lines, write: (line: string) => void lines.push(line) };
}
