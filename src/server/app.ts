import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyServerOptions } from "fastify";
import type { BaseConfig } from "../config/schema.js";
import type { CallAnswerer } from "../engine/callPipeline.js";
import type { CallStore } from "../store/callStore.js";
import { authPlugin } from "./auth.js";
import { callsPagePlugin, type CallsPageOptions } from "./callsPage.js";
import type { TransportObserver } from "./transportObserver.js";
import { logFailure, reject, type Arrival } from "./intake.js";
import type { LoadMonitor } from "./load.js";
import { healthPlugin, metricsPlugin, type HealthInfo, type MetricsSource } from "./platform.js";
import { pathOf, serializeRequest } from "./requestLog.js";
import { webhookPlugin } from "./webhook.js";
import { websocketPlugin } from "./websocket.js";

export interface AppDeps {
  config: BaseConfig;
  pipeline: CallAnswerer;
  store: CallStore;
  /** Over its limits /healthz answers 503 (a load balancer routes around the instance). */
  load?: Pick<LoadMonitor, "over" | "last">;
  /** When set, every request must carry it in the configured header. */
  apiToken?: string;
  logger?: FastifyServerOptions["logger"] | FastifyBaseLogger;
  /** Served at GET /metrics in Prometheus text format. */
  metrics?: MetricsSource;
  /** Extra fields for GET /healthz (demo mode says so there; the model endpoint's state). */
  healthInfo?: HealthInfo;
  /** The call review: what the transports tell it, and its page (only with ADMIN_TOKEN). */
  review?: { recorder?: TransportObserver; page?: CallsPageOptions };
}


/** Fastify error codes for bodies we reject, mapped to a message the sender can act on. */
function clientErrorMessage(code: string | undefined, maxBodyBytes: number): string | undefined {
  switch (code) {
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

/**
 * Builds the app from its dependencies; tests build the same app with test doubles. The app is
 * plugins: one token hook for every route (`authPlugin`), the WebSocket (`websocketPlugin`), the
 * platform's endpoints (`healthPlugin`, `metricsPlugin`) and the webhook (`webhookPlugin`); both
 * transports read events through one intake (`intake.ts`).
 */
export function buildApp(deps: AppDeps): FastifyInstance {
  const { config, pipeline, store } = deps;
  const app = Fastify({ ...loggerOptions(deps), bodyLimit: config.server.maxBodyBytes });

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
    const at: Arrival = { transport: req.ws ? "ws" : "http", log: req.log };
    const message = clientErrorMessage(err.code, config.server.maxBodyBytes);
    if (message || (err.statusCode && err.statusCode >= 400 && err.statusCode < 500)) {
      const rejected = reject(at, `Invalid request: ${message ?? err.message}`);
      return reply.code(400).send({ error: rejected.message });
    }
    // Never a 500 to sipgate: answering 204 keeps the call alive; the error is logged for us.
    logFailure(at, err);
    return reply.code(204).send();
  });

  // Fastify's own 404 logs the whole URL, query and all; this one logs the path only.
  app.setNotFoundHandler((req, reply) => {
    req.log.info({ method: req.method, path: pathOf(req.url) }, "route not found");
    return reply.code(404).send({ error: "Not Found" });
  });

  // Order matters. The WebSocket support first: it must see every route, and its hook marks an
  // upgrade (req.ws) before any other runs, so a refused upgrade's socket is closed after the answer.
  app.register(websocketPlugin, { config, pipeline, observer: deps.review?.recorder });
  app.register(authPlugin, { apiToken: deps.apiToken, headerName: config.server.apiTokenHeader });
  app.register(healthPlugin, { store, info: deps.healthInfo, load: deps.load });
  if (deps.metrics) app.register(metricsPlugin, { metrics: deps.metrics });
  app.register(webhookPlugin, { pipeline, observer: deps.review?.recorder });
  if (deps.review?.page) app.register(callsPagePlugin, deps.review.page);

  return app;
}

/** Fastify's logger, with request lines that never carry the URL's query (it may hold the WebSocket's token). */
function loggerOptions(deps: AppDeps): Pick<FastifyServerOptions, "logger" | "loggerInstance"> {
  const given = deps.logger ?? { level: deps.config.logLevel };
  if (typeof (given as FastifyBaseLogger).child === "function") {
    return { loggerInstance: (given as FastifyBaseLogger).child({}, { serializers: { req: serializeRequest } }) };
  }
  if (given === true || (given && typeof given === "object")) {
    const options = given === true ? {} : (given as Exclude<FastifyServerOptions["logger"], boolean | undefined>);
    return { logger: { ...options, serializers: { ...options.serializers, req: serializeRequest } } };
  }
  return { logger: given as FastifyServerOptions["logger"] };
}
