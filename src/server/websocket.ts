import { createHash } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import type { FastifyBaseLogger, FastifyInstance } from "fastify";
import { WebSocketServer, type RawData, type WebSocket } from "ws";
import type { AiFlowAction } from "../aiflow/actions.js";
import { InvalidEventError, parseEvent } from "../aiflow/events.js";
import type { AppConfig } from "../config/schema.js";
import type { CallPipeline } from "../engine/callPipeline.js";
import { tokenMatches } from "./auth.js";

export interface WebSocketDeps {
  config: AppConfig;
  pipeline: CallPipeline;
  apiToken?: string;
}

/**
 * The shared secret on the upgrade: the configured header, or a `token` query parameter (sipgate
 * documents no headers for the WebSocket upgrade, so a URL like wss://host/ws?token=… must work).
 */
export function upgradeToken(req: IncomingMessage, headerName: string): string | undefined {
  const given = req.headers[headerName];
  const header = Array.isArray(given) ? given[0] : given;
  if (header !== undefined) return header;
  const query = (req.url ?? "").split("?")[1];
  return query === undefined ? undefined : (new URLSearchParams(query).get("token") ?? undefined);
}

/**
 * The WebSocket transport (sipgate connects to us, one connection per call in practice, but
 * several sessions on one socket work too). Same events, same pipeline as the webhook: a
 * holding line at the deadline when nothing was said yet, the answer pushed when it is ready,
 * speech sentence by sentence only when `speech.streamSentences` is on. A caller who starts
 * speaking (user_speech_started, or a barge-in) cancels the generation in progress. Nothing
 * but actions is ever sent to sipgate: a bad frame is logged, not answered.
 */
export function attachWebSocket(app: FastifyInstance, deps: WebSocketDeps): void {
  const { config, pipeline } = deps;
  const log: FastifyBaseLogger = app.log;
  // sipgate's own example disables compression; frames are small JSON.
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: config.server.maxBodyBytes });
  const headerName = config.server.apiTokenHeader.toLowerCase();
  const inFlight = new Set<Promise<unknown>>();

  const reject = (socket: Duplex, status: string) => {
    socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  };

  app.server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    // The path only: the query may carry the token, which never reaches a log line.
    const path = (req.url ?? "").split("?")[0];
    if (path !== config.server.wsPath) return reject(socket, "404 Not Found");
    if (deps.apiToken && !tokenMatches(upgradeToken(req, headerName), deps.apiToken)) {
      log.warn({ path }, "rejected WebSocket upgrade with a missing or wrong API token");
      return reject(socket, "401 Unauthorized");
    }
    wss.handleUpgrade(req, socket, head, (ws) => serve(ws));
  });

  function serve(ws: WebSocket): void {
    /** The turn currently running per session, so the caller's voice can cancel it. */
    const running = new Map<string, AbortController>();
    const push = (action: AiFlowAction) => {
      if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(action));
    };

    ws.on("message", (data: RawData, isBinary: boolean) => {
      if (isBinary) return void log.warn("WebSocket: binary frame ignored (events are JSON text frames)");
      const text = data.toString("utf8");
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        return void log.warn({ bytes: text.length }, "WebSocket: frame ignored, not valid JSON");
      }
      let parsed;
      try {
        parsed = parseEvent(body);
      } catch (e) {
        if (e instanceof InvalidEventError) return void log.warn({ err: e.message }, "WebSocket: frame ignored, not a valid event");
        throw e;
      }
      if (parsed.kind === "unknown") {
        log.info({ eventType: parsed.type, sessionId: parsed.sessionId }, "unknown event type ignored");
        return;
      }
      const event = parsed.event;
      const sid = event.session.id;
      // The caller started talking: stop generating, keep tool calls and results paired.
      if (event.type === "user_speech_started" || (event.type === "user_speak" && event.barged_in)) running.get(sid)?.abort();
      if (event.type === "user_speech_started") return; // nothing to answer (sipgate ignores it)

      const controller = new AbortController();
      running.set(sid, controller);
      const key = createHash("sha256").update(text).digest("hex");
      const turn = pipeline
        .handleWs(event, key, push, controller.signal)
        .catch((e: Error) => log.error({ sessionId: sid, err: e.stack ?? e.message }, "WebSocket event failed"))
        .finally(() => {
          if (running.get(sid) === controller) running.delete(sid);
          inFlight.delete(turn);
        });
      inFlight.add(turn);
    });

    ws.on("close", () => {
      for (const c of running.values()) c.abort();
    });
    ws.on("error", (e) => log.warn({ err: e.message }, "WebSocket error"));
  }

  // Graceful shutdown: finish the turns in flight, then say goodbye to the sockets.
  app.addHook("preClose", async () => {
    await Promise.allSettled([...inFlight]);
    for (const c of wss.clients) c.close(1001, "server shutting down");
    await new Promise<void>((r) => wss.close(() => r()));
  });
}
