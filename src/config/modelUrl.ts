import { z } from "zod";

/**
 * Model endpoint URLs (OPENAI_BASE_URL, `llm.fallbacks[].baseURL`, `evalModels[].baseURL`).
 *
 * The openai client takes "localhost:11434/v1" as a URL with the scheme "localhost:", and
 * "htp://…" as one with the scheme "htp:"; both fail on every request with nothing but
 * "Connection error.", so callers hear "technische Störung" while the service looks healthy.
 * Start-up refuses them instead, naming the setting.
 */

const SCHEME = /^([a-z][a-z0-9+.-]*):\/\//i;

/** Why `value` cannot be a model endpoint, or undefined when it is an http(s) URL. */
export function modelUrlProblem(value: string): string | undefined {
  const shown = JSON.stringify(redactUrl(value));
  if (value !== value.trim()) return `${shown} has spaces around it; remove them`;
  const scheme = SCHEME.exec(value)?.[1];
  if (scheme === undefined) return `${shown} has no http:// or https:// in front (for example http://${redactUrl(value).replace(/^\/+/, "")})`;
  if (!/^https?$/i.test(scheme)) return `${shown} starts with ${scheme}://; a model endpoint starts with http:// or https://`;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return `${shown} is not a URL`;
  }
  if (!url.hostname) return `${shown} names no host`;
  return undefined;
}

/**
 * The URL as logs, /healthz and error lines may show it: without a user name, password or query
 * (a key can hide in any of them); a value that is no URL is cut to what precedes an "@".
 */
export function redactUrl(value: string): string {
  try {
    // Not a URL with a scheme: cut like any value that is no URL.
    if (!SCHEME.test(value)) return cutAtCredentials(value);
    const url = new URL(value);
    url.username = "";
    url.password = "";
    url.search = "";
    url.hash = "";
    return url.toString();
  } catch {
    return cutAtCredentials(value);
  }
}

/** A value that is no URL: what follows its last "@", without a query or fragment. */
function cutAtCredentials(value: string): string {
  const at = value.lastIndexOf("@");
  return (at >= 0 ? value.slice(at + 1) : value).replace(/[?#].*$/, "");
}

/** A model endpoint in the config file: an http(s) URL, or the field is named with the problem. */
export const modelUrlSchema = z.string().superRefine((value, ctx) => {
  const problem = modelUrlProblem(value);
  if (problem) ctx.addIssue({ code: z.ZodIssueCode.custom, message: problem });
});
