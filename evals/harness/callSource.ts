import { Redis } from "ioredis";
import { z } from "zod";
import { reviewEntrySchema, type ReviewEntry } from "../../src/review/entries.js";
import { RedisReviewStore } from "../../src/review/reviewStore.js";
import { FromCallError } from "./fromCall.js";

/**
 * Where `--from-call` reads a call's timeline: a running service's call review
 * (`--service URL`, with ADMIN_TOKEN as the bearer token: works with either review store, from
 * anywhere the page is reachable), or the shared Redis itself (REDIS_URL, REDIS_PREFIX).
 */
export async function readCallTimeline(callId: string, from: { service?: string; env: NodeJS.ProcessEnv }): Promise<ReviewEntry[]> {
  const { service, env } = from;
  if (service) return fromService(callId, service, env.ADMIN_TOKEN);
  if (env.REDIS_URL) return fromRedis(callId, env.REDIS_URL, env.REDIS_PREFIX || "aiflow:");
  throw new FromCallError("--from-call reads the call from a running service (--service https://host, with ADMIN_TOKEN set) or from its Redis (REDIS_URL)");
}

const callJson = z.object({ entries: z.array(reviewEntrySchema) });

async function fromService(callId: string, service: string, adminToken: string | undefined): Promise<ReviewEntry[]> {
  if (!adminToken) throw new FromCallError("--service needs ADMIN_TOKEN (the call review's token) in the environment");
  let url: URL;
  try {
    url = new URL(`calls/${encodeURIComponent(callId)}.json`, service.endsWith("/") ? service : `${service}/`);
  } catch {
    throw new FromCallError(`--service: not a URL: ${service}`);
  }
  let res: Response;
  try {
    res = await fetch(url, { headers: { authorization: `Bearer ${adminToken}`, accept: "application/json" } });
  } catch (e) {
    throw new FromCallError(`cannot reach ${url.origin}: ${(e as Error).message}`);
  }
  if (res.status === 401) throw new FromCallError(`${url.origin} refused ADMIN_TOKEN (401)`);
  if (res.status === 404) throw new FromCallError(`${url.origin} has no call ${callId} in its review (unknown, expired, or the page is off: ADMIN_TOKEN not set there)`);
  if (!res.ok) throw new FromCallError(`${url.origin} answered ${res.status} for call ${callId}`);
  const parsed = callJson.safeParse(await res.json());
  if (!parsed.success) throw new FromCallError(`${url.origin}: call ${callId}'s timeline is not in the expected shape: ${parsed.error.issues[0]?.message}`);
  return parsed.data.entries;
}

async function fromRedis(callId: string, redisUrl: string, prefix: string): Promise<ReviewEntry[]> {
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1, lazyConnect: true, connectTimeout: 2000 });
  try {
    await redis.connect().catch((e: Error) => {
      throw new FromCallError(`cannot reach Redis at REDIS_URL: ${e.message}`);
    });
    // The retention only matters for writes; reading takes what is there.
    const entries = await new RedisReviewStore(redis, 1, prefix).get(callId);
    if (!entries) throw new FromCallError(`no call ${callId} in the review at REDIS_URL (prefix ${prefix}): unknown or older than review.retentionDays`);
    return entries;
  } finally {
    redis.disconnect();
  }
}
