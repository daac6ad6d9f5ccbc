import fastifyWebsocket from "@fastify/websocket";
import type { FastifyBaseLogger } from "fastify";
import fp from "fastify-plugin";
import type { RawData, WebSocket } from "ws";
import type { AiFlowAction } from "../aiflow/actions.js";
import type { BaseConfig } from "../config/schema.js";
import type { CallAnswerer } from "../engine/callPipeline.js";
import type { TransportObserver } from "./transportObserver.js";
import { handleSafely, reject, takeIn, type Arrival } from "./intake.js";

export interface WebSocketOptions {
  config: BaseConfig;
  pipeline: CallAnswerer;
  /** The call review: events as they arrive, frames as they are pushed. */
  observer?: TransportObserver;
}

/**
 * The WebSocket transport (sipgate connects to us, one connection per call in practice, but
 * several sessions on one socket work too). The upgrade is a Fastify route (`@fastify/websocket`),
 * so it passes the same token hook as the webhook; each frame goes through the same intake.
 * Same events, same pipeline: a holding line at the deadline when nothing was said yet, the
 * answer pushed when it is ready, speech sentence by sentence only when `speech.streamSentences`
 * is on. A caller who starts speaking (user_speech_started, or a barge-in) cancels the generation
 * in progress. Nothing but actions is ever sent to sipgate: a bad frame is logged, not answered.
 *
 * Registered with fastify-plugin, before any other route: `@fastify/websocket` must see every
 * route to keep upgrades off the ones that are not the WebSocket.
 */
export const websocketPlugin = fp<WebSocketOptions>(
  async (app, { config, pipeline, observer }) => {
    const { wsPath } = config.server;
    const inFlight = new Set<Promise<unknown>>();

    await app.register(fastifyWebsocket, {
      // sipgate's own example disables compression; frames are small JSON.
      options: { perMessageDeflate: false, maxPayload: config.server.maxBodyBytes },
      // A socket error (a frame over maxPayload, an unclean disconnect) ends that socket, nothing else.
      errorHandler(error, socket, req) {
        req.log.warn({ err: error.message }, "WebSocket error");
        socket.terminate();
      },
      // Graceful shutdown: finish the turns in flight, then say goodbye to the sockets.
      async preClose() {
        await Promise.allSettled([...inFlight]);
        for (const c of app.websocketServer.clients) c.close(1001, "server shutting down");
        await new Promise<void>((r) => app.websocketServer.close(() => r()));
      },
    });

    // Upgrades only on the WebSocket path; any other route answers 404 rather than accept and drop the socket.
    app.addHook("onRequest", async function upgradesOnlyOnWsPath(req, reply) {
      if (req.ws && req.routeOptions.url !== undefined && req.routeOptions.url !== wsPath) return reply.code(404).send({ error: "Not Found" });
    });

    app.get(wsPath, { websocket: true, config: { auth: "token_or_query" } }, (socket, req) => serve(socket, req.log));

    function serve(ws: WebSocket, log: FastifyBaseLogger): void {
      const at: Arrival = { transport: "ws", log };
      /** Every event in flight per session, so the caller's voice cancels whichever turn is running, not only the latest event's. */
      const running = new Map<string, Set<AbortController>>();
      /** Every call this socket carried: their bookkeeping goes when it closes. */
      const calls = new Set<string>();
      /** False when the socket is gone: the pipeline records an SMS it could not push as not sent. */
      const push = (action: AiFlowAction): boolean => {
        if (ws.readyState !== ws.OPEN) return false;
        ws.send(JSON.stringify(action));
        observer?.pushed(action);
        return true;
      };

      ws.on("message", (data: RawData, isBinary: boolean) => {
        if (isBinary) return void reject(at, "Invalid event: a binary frame (events are JSON text frames)", byteLength(data));
        const intake = takeIn(data.toString("utf8"), at);
        // A rejected frame or an unknown type is logged by the intake; sipgate gets nothing but actions.
        if (intake.kind !== "event") return;
        const { event, key } = intake;
        const sid = event.session.id;
        calls.add(sid);
        observer?.arrived(event, "ws");
        // The caller started talking: stop generating, keep tool calls and results paired.
        if (event.type === "user_speech_started" || (event.type === "user_speak" && event.barged_in)) {
          for (const c of running.get(sid) ?? []) c.abort();
          pipeline.callerSpeaking(sid);
        }
        if (event.type === "user_speech_started") return; // nothing to answer (sipgate ignores it)

        const controller = new AbortController();
        let inSession = running.get(sid);
        if (!inSession) running.set(sid, (inSession = new Set()));
        inSession.add(controller);
        const turn = handleSafely(at, event, () => pipeline.handleWs(event, key, push, controller.signal)).finally(() => {
          inSession.delete(controller);
          if (inSession.size === 0 && running.get(sid) === inSession) running.delete(sid);
          inFlight.delete(turn);
        });
        inFlight.add(turn);
      });

      ws.on("close", () => {
        for (const session of running.values()) for (const c of session) c.abort();
        pipeline.socketClosed(calls);
      });
    }
  },
  { name: "websocket", fastify: "5.x" },
);

function byteLength(data: RawData): number {
  if (Array.isArray(data)) return data.reduce((n, b) => n + b.length, 0);
  return data.byteLength;
}
