import { createHash, timingSafeEqual } from "node:crypto";
import type { FastifyReply, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import { pathOf } from "./requestLog.js";

declare module "fastify" {
  interface FastifyContextConfig {
    /**
     * Who may call a route when a token is configured: `token` (the default) wants it in the
     * configured header; `token_or_query` also takes a `token` query parameter (the WebSocket
     * upgrade: sipgate documents no headers for it, so wss://host/ws?token=… must work);
     * `open` is for the platform (health checks, Prometheus scrapes), not for sipgate;
     * `admin` is the call review's own check (ADMIN_TOKEN, src/server/adminSession.ts): the AI Flow
     * token neither opens nor is asked for there.
     */
    auth?: "token" | "token_or_query" | "open" | "admin";
  }
}

/**
 * Constant-time token comparison. Both sides are hashed first so the comparison takes the
 * same time whatever the lengths, and a wrong length leaks nothing either.
 */
export function tokenMatches(given: string | undefined, expected: string): boolean {
  if (given === undefined) return false;
  const a = createHash("sha256").update(given).digest();
  const b = createHash("sha256").update(expected).digest();
  return timingSafeEqual(a, b);
}

/** The token a request carries: the header, or (where the route allows it) the `token` query parameter. */
export function requestToken(req: FastifyRequest, headerName: string, allowQuery: boolean): string | undefined {
  const given = req.headers[headerName];
  const header = Array.isArray(given) ? given[0] : given;
  if (header !== undefined || !allowQuery) return header;
  const query = (req.query as Record<string, unknown> | undefined)?.token;
  const value = Array.isArray(query) ? query[0] : query;
  return typeof value === "string" ? value : undefined;
}

export interface AuthOptions {
  /** The shared secret; without it every route is open (start-up refuses that on an exposed address). */
  apiToken?: string;
  headerName: string;
}

/**
 * The one token check, for every route and both transports: one `onRequest` hook, app-wide
 * (fastify-plugin), so the WebSocket upgrade, routed through Fastify, passes the same check as
 * a webhook POST. Routes say who may call them in `config.auth`.
 */
export const authPlugin = fp<AuthOptions>(
  async (app, { apiToken, headerName }) => {
    if (!apiToken) return;
    const header = headerName.toLowerCase();
    app.addHook("onRequest", async function checkApiToken(req: FastifyRequest, reply: FastifyReply) {
      const auth = req.routeOptions.config?.auth ?? "token";
      if (auth === "open" || auth === "admin") return;
      if (tokenMatches(requestToken(req, header, auth === "token_or_query"), apiToken)) return;
      // The path only: a query may carry a (wrong) token, and no token reaches a log line.
      req.log.warn({ path: pathOf(req.url) }, "rejected request with a missing or wrong API token");
      return reply.code(401).send({ error: "Unauthorized" });
    });
  },
  { name: "auth", fastify: "5.x" },
);
