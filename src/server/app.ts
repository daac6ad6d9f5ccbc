import { createHash } from "node:crypto";
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyServerOptions } from "fastify";
import type { AiFlowAction } from "../aiflow/actions.js";
import { InvalidEventError, parseEvent } from "../aiflow/events.js";
import type { AppConfig } from "../config/schema.js";
import type { CallPipeline } from "../engine/callPipeline.js";
import type { CallStore } from "../store/callStore.js";
import { tokenMatches } from "./auth.js";
import { attachWebSocket } from "./websocket.js";

export interface AppDeps {
  config: AppConfig;
  pipeline: CallPipeline;
  store: CallStore;
  /** When set, every request must carry it in the configured header. */
  apiToken?: string;
  logger?: FastifyServerOptions["logger"] | FastifyBaseLogger;
  /** Served at GET /metrics in Prometheus text format. */
  metrics?: { render(): Promise<string>; contentType: string };
  /** Extra fields for GET /healthz (demo mode says so there). */
  healthInfo?: Record<string, unknown>;
}

/** Fastify error codes for bodies we reject, mapped to a message the sender can act on. */
function clientErrorMessage(code: string | undefined, maxBodyBytes: number): string | undefined {
  switch (code) {
    case "FST_ERR_CTP_INVALID_JSON_BODY":
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return "body is not valid JSON";
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return `body exceeds ${maxBodyBytes} bytes`;
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return "content-type must be application/json";
    case "FST_ERR_CTP_INVALID_CONTENT_LENGTH":
      return "content-length does not match the body";
    default:
      return undefined;
  }
}

/** Builds the HTTP app from its dependencies; tests build the same app with test doubles. */
export function buildApp(deps: AppDeps): FastifyInstance {
  const { config, pipeline, store } = deps;
  const loggerOption = deps.logger ?? { level: config.logLevel };
  const app = Fastify({
    ...(typeof (loggerOption as FastifyBaseLogger).child === "function"
      ? { loggerInstance: loggerOption as FastifyBaseLogger }
      : { logger: loggerOption as FastifyServerOptions["logger"] }),
    bodyLimit: config.server.maxBodyBytes,
    // sipgate's JSON bodies: reject prototype-poisoning keys rather than silently keep them.
    onProtoPoisoning: "error",
    onConstructorPoisoning: "error",
  });

  // Events are JSON only; anything else is a sender error, reported as such.
  app.removeContentTypeParser("text/plain");
  // Keep the raw body: redelivery is recognised by a hash of exactly what sipgate sent
  // (re-serialising a parsed body can fail on very deep nesting). Parsing stays Fastify's own,
  // with its prototype-poisoning protection.
  const jsonParser = app.getDefaultJsonParser("error", "error");
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "string" }, (req, body, done) => {
    (req as unknown as { rawBody: string }).rawBody = body as string;
    jsonParser(req, body as string, done);
  });

  const headerName = config.server.apiTokenHeader.toLowerCase();

  // Graceful shutdown: requests in flight finish, and their keep-alive connections close with
  // them, so closing does not wait for idle sockets to time out.
  let closing = false;
  app.addHook("preClose", async () => {
    closing = true;
  });
  app.addHook("onSend", async (_req, reply) => {
    if (closing) reply.header("connection", "close");
  });

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, req, reply) => {
    const message = clientErrorMessage(err.code, config.server.maxBodyBytes);
    if (message || (err.statusCode && err.statusCode >= 400 && err.statusCode < 500)) {
      req.log.info({ code: err.code }, `bad request: ${message ?? err.message}`);
      return reply.code(400).send({ error: `Invalid request: ${message ?? err.message}` });
    }
    // Never a 500 to sipgate: answering 204 keeps the call alive; the error is logged for us.
    req.log.error({ err }, "unhandled error while answering a webhook");
    return reply.code(204).send();
  });

  if (deps.apiToken) {
    const expected = deps.apiToken;
    app.addHook("onRequest", async (req, reply) => {
      // Health checks and Prometheus scrapes come from the platform, not from sipgate.
      if (req.url === "/healthz" || req.url === "/metrics") return;
      const given = req.headers[headerName];
      if (!tokenMatches(Array.isArray(given) ? given[0] : given, expected)) {
        req.log.warn("rejected request with a missing or wrong API token");
        return reply.code(401).send({ error: "Unauthorized" });
      }
    });
  }

  app.get("/healthz", async (_req, reply) => {
    try {
      return { status: "ok", activeCalls: await store.size(), ...deps.healthInfo };
    } catch (e) {
      // The store (Redis) is down: this instance cannot take calls safely.
      return reply.code(503).send({ status: "unavailable", error: (e as Error).message });
    }
  });

  if (deps.metrics) {
    const metrics = deps.metrics;
    app.get("/metrics", async (_req, reply) => reply.type(metrics.contentType).send(await metrics.render()));
  }

  attachWebSocket(app, { config, pipeline, apiToken: deps.apiToken });

  app.post("/webhook", async (req, reply) => {
    let parsed;
    try {
      parsed = parseEvent(req.body);
    } catch (e) {
      if (e instanceof InvalidEventError) return reply.code(400).send({ error: e.message });
      throw e;
    }
    if (parsed.kind === "unknown") {
      req.log.info({ eventType: parsed.type, sessionId: parsed.sessionId }, "unknown event type ignored");
      return reply.code(204).send();
    }
    const event = parsed.event;
    const key = createHash("sha256").update((req as unknown as { rawBody: string }).rawBody).digest("hex");
    // Within server.answerWithinMs: the turn's actions, or a holding line while it finishes in the background.
    const answer = await pipeline.answerHttp(event, key);
    req.log.debug({ sessionId: event.session.id, event: event.type, answer: answer.kind, actions: answer.actions.length }, "answered");
    return respond(reply, answer.actions);
  });

  return app;
}

function respond(reply: { code(c: number): { send(b?: unknown): unknown } }, actions: AiFlowAction[]) {
  if (actions.length === 0) return reply.code(204).send();
  return reply.code(200).send(actions.length === 1 ? actions[0] : actions);
}
