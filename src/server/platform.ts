import type { FastifyPluginAsync } from "fastify";
import type { CallStore } from "../store/callStore.js";
import type { LoadMonitor } from "./load.js";

/** Extra /healthz fields: fixed (demo mode), or read at each request (the model endpoint's state). */
export type HealthInfo = Record<string, unknown> | (() => Record<string, unknown>);

/**
 * GET /healthz: 200 when this instance can take calls, 503 when its store (Redis) is down or it is
 * over its load limits (server.overload: it refuses new calls meanwhile). For the
 * platform: no token. The model endpoint's state is information, not health: see src/llm/endpointMonitor.ts.
 */
export const healthPlugin: FastifyPluginAsync<{ store: CallStore; info?: HealthInfo; load?: Pick<LoadMonitor, "over" | "last"> }> = async (app, { store, info, load }) => {
  app.get("/healthz", { config: { auth: "open" } }, async (_req, reply) => {
    try {
      const activeCalls = await store.size();
      // Over its limits (server.overload) the instance refuses new calls: a load balancer should send them elsewhere.
      const overloaded = load?.over();
      if (overloaded) return reply.code(503).send({ status: "overloaded", reason: overloaded, activeCalls, ...load!.last });
      return { status: "ok", activeCalls, ...(typeof info === "function" ? info() : info) };
    } catch (e) {
      // The store (Redis) is down: this instance cannot take calls safely.
      return reply.code(503).send({ status: "unavailable", error: (e as Error).message });
    }
  });
};

export interface MetricsSource {
  render(): Promise<string>;
  contentType: string;
}

/** GET /metrics: Prometheus text. Scraped by the platform: no token. */
export const metricsPlugin: FastifyPluginAsync<{ metrics: MetricsSource }> = async (app, { metrics }) => {
  app.get("/metrics", { config: { auth: "open" } }, async (_req, reply) => reply.type(metrics.contentType).send(await metrics.render()));
};
