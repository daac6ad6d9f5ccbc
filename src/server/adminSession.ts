import { createHmac, randomBytes } from "node:crypto";
import type { FastifyReply, FastifyRequest } from "fastify";
import { tokenMatches } from "./auth.js";

/**
 * Who may see the call review: the bearer token (`Authorization: Bearer <ADMIN_TOKEN>`, for
 * scripts) or a session cookie from the login form. The cookie is `<expiry>.<HMAC>` keyed from
 * ADMIN_TOKEN, so every instance with the same token accepts it (no session store) and changing
 * the token ends every session. HttpOnly, SameSite=Strict, Secure behind https. The login and
 * logout forms carry a CSRF token and their Origin must be this host's.
 */

export const SESSION_COOKIE = "aiflow_review";
const CSRF_COOKIE = "aiflow_review_csrf";
/** A session lasts a working day. */
export const SESSION_MS = 8 * 3600_000;

export class AdminSessions {
  private readonly key: Buffer;

  constructor(
    private readonly adminToken: string,
    private readonly now: () => number = Date.now,
  ) {
    // Derived, so the cookie never carries anything from which the token itself could be tested offline cheaply.
    this.key = createHmac("sha256", adminToken).update("aiflow call review session v1").digest();
  }

  private sign(what: string): string {
    return createHmac("sha256", this.key).update(what).digest("base64url");
  }

  /** The bearer token, or a live session cookie. */
  allowed(req: FastifyRequest): boolean {
    const auth = req.headers.authorization;
    if (typeof auth === "string" && auth.startsWith("Bearer ")) return tokenMatches(auth.slice(7).trim(), this.adminToken);
    return this.session(req) !== undefined;
  }

  /** The session cookie's value when it is genuine and not expired. */
  session(req: FastifyRequest): string | undefined {
    const value = cookie(req, SESSION_COOKIE);
    if (!value) return undefined;
    const [expiry, sig] = value.split(".");
    if (!expiry || !sig || !/^\d+$/.test(expiry) || Number(expiry) <= this.now()) return undefined;
    return tokenMatches(sig, this.sign(`session:${expiry}`)) ? value : undefined;
  }

  /** The password check of the login form (constant time). */
  tokenMatches(given: string | undefined): boolean {
    return tokenMatches(given, this.adminToken);
  }

  startSession(req: FastifyRequest, reply: FastifyReply): void {
    const expiry = String(this.now() + SESSION_MS);
    reply.header("set-cookie", [setCookie(req, SESSION_COOKIE, `${expiry}.${this.sign(`session:${expiry}`)}`, SESSION_MS / 1000), setCookie(req, CSRF_COOKIE, "", 0)]);
  }

  endSession(req: FastifyRequest, reply: FastifyReply): void {
    reply.header("set-cookie", setCookie(req, SESSION_COOKIE, "", 0));
  }

  /** The login form's CSRF token: a random value in a cookie and in the form (double submit), set when the form is shown. */
  loginCsrf(req: FastifyRequest, reply: FastifyReply): string {
    const value = randomBytes(18).toString("base64url");
    reply.header("set-cookie", setCookie(req, CSRF_COOKIE, value, 600));
    return value;
  }

  loginCsrfOk(req: FastifyRequest, given: string | undefined): boolean {
    const expected = cookie(req, CSRF_COOKIE);
    return Boolean(expected) && tokenMatches(given, expected!);
  }

  /** The logout form's CSRF token: bound to the session, so only a page of this session has it. */
  sessionCsrf(session: string): string {
    return this.sign(`csrf:${session}`);
  }

  sessionCsrfOk(req: FastifyRequest, given: string | undefined): boolean {
    const session = this.session(req);
    return session !== undefined && tokenMatches(given, this.sessionCsrf(session));
  }
}

/** A form POST must come from a page of this host: its Origin (or, without one, its Referer) names it. */
export function sameOrigin(req: FastifyRequest): boolean {
  const from = req.headers.origin ?? req.headers.referer;
  if (typeof from !== "string") return false;
  try {
    const origin = new URL(from);
    // Through the same URL parser, so a default port ("host:80" for http) compares equal.
    return req.headers.host !== undefined && origin.host === new URL(`${origin.protocol}//${req.headers.host}`).host;
  } catch {
    return false;
  }
}

function secure(req: FastifyRequest): boolean {
  const proto = req.headers["x-forwarded-proto"];
  return req.protocol === "https" || (typeof proto === "string" && proto.split(",")[0]!.trim() === "https");
}

function setCookie(req: FastifyRequest, name: string, value: string, maxAgeSeconds: number): string {
  return `${name}=${value}; Path=/calls; Max-Age=${Math.floor(maxAgeSeconds)}; HttpOnly; SameSite=Strict${secure(req) ? "; Secure" : ""}`;
}

function cookie(req: FastifyRequest, name: string): string | undefined {
  const header = req.headers.cookie;
  if (!header) return undefined;
  for (const part of header.split(";")) {
    const i = part.indexOf("=");
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}
