import type { FastifyRequest } from "fastify";

/** A URL without its query. */
export function pathOf(url: string): string {
  const q = url.indexOf("?");
  return q === -1 ? url : url.slice(0, q);
}

/**
 * A URL as logged: the query is never written, since the WebSocket's `token` parameter travels
 * in it (and the service reads no other query parameter). `?[redacted]` says there was one.
 */
export function loggedUrl(url: string): string {
  const path = pathOf(url);
  return path === url ? url : `${path}?[redacted]`;
}

/**
 * Fastify's request serializer (its "incoming request" lines and error lines log `req`), with the
 * URL's query left out. Everything else as Fastify logs it.
 */
export function serializeRequest(req: FastifyRequest) {
  return {
    method: req.method,
    url: loggedUrl(req.url ?? ""),
    host: req.host,
    remoteAddress: req.ip,
    remotePort: req.socket?.remotePort,
  };
}
