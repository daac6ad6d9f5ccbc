import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";
import { outcomeFigures } from "../review/figures.js";
import { callPage, listPage, loginPage } from "../review/page.js";
import type { ReviewStore } from "../review/reviewStore.js";
import { summarize } from "../review/summary.js";
import { AdminSessions, sameOrigin } from "./adminSession.js";
import { pathOf } from "./requestLog.js";

export interface CallsPageOptions {
  adminToken: string;
  store: ReviewStore;
  listCalls: number;
  retentionDays: number;
  now?: () => number;
}

/** No script, no framing, forms only to this host. */
const CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/**
 * The call review: `GET /calls` (recent calls and the outcome figures), `GET /calls/<id>` (one
 * call's timeline), JSON at `/calls.json` and `/calls/<id>.json` (or with `Accept:
 * application/json`), the login and logout forms. Registered only when ADMIN_TOKEN is set;
 * `config.auth: "admin"` keeps the AI Flow token out of it (src/server/auth.ts).
 */
export const callsPagePlugin: FastifyPluginAsync<CallsPageOptions> = async (app, opts) => {
  const sessions = new AdminSessions(opts.adminToken, opts.now);
  const route = { config: { auth: "admin" as const } };

  // The login form posts urlencoded; only in this plugin's scope.
  app.addContentTypeParser("application/x-www-form-urlencoded", { parseAs: "string", bodyLimit: 4096 }, (_req, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)));
  });

  app.addHook("onSend", async (_req, reply) => {
    reply.header("content-security-policy", CSP);
    reply.header("x-content-type-options", "nosniff");
    reply.header("referrer-policy", "same-origin");
    reply.header("cache-control", "no-store");
  });

  const wantsJson = (req: FastifyRequest, path: string) => path.endsWith(".json") || (req.headers.accept ?? "").split(",")[0]!.trim() === "application/json";

  /** Admitted, or answered: 401 for scripts, the login form for a browser. */
  const admitted = (req: FastifyRequest, reply: FastifyReply, json: boolean): boolean => {
    if (sessions.allowed(req)) return true;
    req.log.info({ path: pathOf(req.url) }, "call review: not logged in");
    if (json) void reply.code(401).header("www-authenticate", 'Bearer realm="call review"').send({ error: "Unauthorized: send Authorization: Bearer <ADMIN_TOKEN>" });
    else void reply.code(303).header("location", "/calls/login").send();
    return false;
  };
  const logoutCsrf = (req: FastifyRequest) => {
    const s = sessions.session(req);
    return s ? sessions.sessionCsrf(s) : undefined;
  };

  const list = async (req: FastifyRequest, reply: FastifyReply, json: boolean) => {
    if (!admitted(req, reply, json)) return reply;
    const ids = await opts.store.recent(opts.listCalls);
    const calls = [];
    for (const id of ids) {
      const entries = await opts.store.get(id);
      if (entries?.length) calls.push(summarize(id, entries));
    }
    const figures = outcomeFigures(calls);
    if (json) return reply.send({ calls, figures });
    return reply.type("text/html; charset=utf-8").send(listPage(calls, figures, logoutCsrf(req), opts.retentionDays));
  };
  app.get("/calls", route, (req, reply) => list(req, reply, wantsJson(req, "")));
  app.get("/calls.json", route, (req, reply) => list(req, reply, true));

  app.get("/calls/login", route, async (req, reply) => {
    if (sessions.session(req)) return reply.code(303).header("location", "/calls").send();
    return reply.type("text/html; charset=utf-8").send(loginPage(sessions.loginCsrf(req, reply)));
  });

  app.post("/calls/login", route, async (req, reply) => {
    const body = (req.body ?? {}) as Record<string, string | undefined>;
    if (!sameOrigin(req) || !sessions.loginCsrfOk(req, body.csrf)) {
      req.log.warn({ path: "/calls/login" }, "call review: login refused (cross-site or stale form)");
      return reply.code(403).type("text/html; charset=utf-8").send(loginPage(sessions.loginCsrf(req, reply), "The form expired or came from another site: log in again."));
    }
    if (!sessions.tokenMatches(body.token)) {
      req.log.warn({ path: "/calls/login" }, "call review: wrong admin token");
      return reply.code(401).type("text/html; charset=utf-8").send(loginPage(sessions.loginCsrf(req, reply), "Wrong admin token."));
    }
    sessions.startSession(req, reply);
    return reply.code(303).header("location", "/calls").send();
  });

  app.post("/calls/logout", route, async (req, reply) => {
    const body = (req.body ?? {}) as Record<string, string | undefined>;
    if (!sameOrigin(req) || !sessions.sessionCsrfOk(req, body.csrf)) return reply.code(403).send({ error: "Forbidden: cross-site or stale form" });
    sessions.endSession(req, reply);
    return reply.code(303).header("location", "/calls/login").send();
  });

  app.get("/calls/:id", route, async (req, reply) => {
    const raw = (req.params as { id: string }).id;
    const json = wantsJson(req, raw);
    if (!admitted(req, reply, json)) return reply;
    const id = raw.endsWith(".json") ? raw.slice(0, -5) : raw;
    const entries = await opts.store.get(id);
    if (!entries?.length) return reply.code(404).send({ error: `no call ${id} in the review (unknown, or older than review.retentionDays)` });
    const summary = summarize(id, entries);
    if (json) return reply.send({ summary, entries });
    return reply.type("text/html; charset=utf-8").send(callPage(summary, entries, logoutCsrf(req)));
  });
};
