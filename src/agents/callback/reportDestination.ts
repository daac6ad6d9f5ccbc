import { ConfigError } from "../../config/load.js";
import type { CallbackConfig } from "./config.js";

/**
 * Where the callback agent's reports go. The service posts them to `agents.callback.endpoint.url`. Test
 * calls (the offline demo, `npm run chat`) post only to a receiver named in the environment
 * (CALLBACK_URL): the file's URL is the production receiver (in the checked-in config a
 * placeholder), which test calls must never reach. Without one their reports are shown instead:
 * the demo logs each, the chat prints it.
 */
export type ReportDestination = { kind: "post"; url: string; secretEnv: string; secret: string } | { kind: "shown" };

/** Throws a ConfigError naming `agents.callback.endpoint.secretEnv` when reports are posted unsigned. */
export function reportDestination(callback: CallbackConfig, env: NodeJS.ProcessEnv, opts: { testCalls: boolean }): ReportDestination {
  const endpoint = callback.endpoint;
  if (opts.testCalls && !env.CALLBACK_URL) return { kind: "shown" };
  const secret = env[endpoint.secretEnv];
  // A receiver must be able to tell our posts from anyone's: never post unsigned, nor with a made-up key.
  if (!secret) throw new ConfigError(`agents.callback.endpoint.secretEnv: set ${endpoint.secretEnv} to the signing secret the receiver checks the X-Signature header with`);
  return { kind: "post", url: endpoint.url, secretEnv: endpoint.secretEnv, secret };
}

/** For the ready line and the chat: where reports go. */
export function describeDestination(d: ReportDestination, shownAs: string): string {
  if (d.kind === "shown") return `${shownAs}, not posted; set CALLBACK_URL and CALLBACK_SIGNING_SECRET to post them to your receiver`;
  return `posted to ${shownUrl(d.url)}, signed with ${d.secretEnv}`;
}

/** A receiver's URL for output: without credentials or query (they may carry a token). */
export function shownUrl(url: string): string {
  const u = new URL(url);
  return `${u.origin}${u.pathname}${u.search ? "?…" : ""}`;
}
