import { isIP } from "node:net";

/**
 * Whether a listen address is reachable only from this machine. Names other than `localhost` are
 * not resolved: a name could point anywhere, so it counts as exposed.
 */
export function isLoopback(host: string): boolean {
  const h = host.trim().toLowerCase().replace(/^\[(.*)\]$/, "$1");
  if (h === "localhost" || h.endsWith(".localhost")) return true;
  if (isIP(h) === 4) return h.startsWith("127.");
  if (isIP(h) === 6) {
    if (h === "::1" || h === "0:0:0:0:0:0:0:1") return true;
    // IPv4-mapped loopback (::ffff:127.x.y.z)
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(h);
    return Boolean(mapped && mapped[1]!.startsWith("127."));
  }
  return false;
}

export interface ExposureInput {
  host: string;
  /** AIFLOW_API_TOKEN is set (and not empty). */
  hasToken: boolean;
  /** `server.allowNoToken` in the config. */
  allowNoToken: boolean;
}

/**
 * Secure by default: without a shared secret anyone who reaches the port can drive calls and make
 * the service send SMS, so an open listen address needs a token or an explicit opt-out.
 * Returns the reason to refuse start-up, or undefined when the service may start.
 */
export function exposureProblem({ host, hasToken, allowNoToken }: ExposureInput): string | undefined {
  if (hasToken || allowNoToken || isLoopback(host)) return undefined;
  return (
    `refusing to serve ${host} without AIFLOW_API_TOKEN: anyone who reaches the port could drive calls and send SMS. ` +
    `Set AIFLOW_API_TOKEN (the shared secret of your AI Flow), listen on loopback (HOST=127.0.0.1), ` +
    `or set server.allowNoToken: true in the config if a proxy in front checks requests`
  );
}
