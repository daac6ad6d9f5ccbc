import { parseArgs } from "node:util";
import { Redis } from "ioredis";
import { RedisOutbox } from "../outbox/redisOutbox.js";
import { AgentError } from "../core/errors.js";

const USAGE = `usage: npm run outbox -- dead-letters [--bodies]
       npm run outbox -- redrive KEY

The callback agent's reports that were given up on (a receiver that rejected them, or kept failing
until callback.endpoint.maxAttempts): dead letters, kept 7 days.
dead-letters   one line each, oldest first: key (the call id), when, attempts, error; --bodies adds
               each report's JSON (personal data: the caller's name, number and reason).
redrive KEY    once the receiver is fixed: the report is due again now, its attempts reset; the
               running instances' posters send it.

Reads the outbox in Redis: REDIS_URL (and REDIS_PREFIX, default aiflow:) as the service uses them.
Without Redis the outbox lives in the service's memory and dies with it. Exit codes: 0 done;
1 failed (Redis unreachable, no such dead letter); 2 bad usage.`;

class UsageError extends AgentError {
  readonly code = "usage";
}

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: { bodies: { type: "boolean", default: false }, help: { type: "boolean", short: "h", default: false } }, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const [command, key, ...extra] = parsed.positionals;
  if (parsed.values.help) {
    console.log(USAGE);
    return 0;
  }
  if (command !== "dead-letters" && command !== "redrive") throw new UsageError(command ? `unknown command "${command}"` : "a command is needed");
  if (command === "redrive" && !key) throw new UsageError("redrive needs the KEY (a call id from dead-letters)");
  if (extra.length || (command === "dead-letters" && key)) throw new UsageError(`unexpected argument "${[key, ...extra].filter(Boolean).join(" ")}"`);
  const url = process.env.REDIS_URL;
  if (!url) {
    console.error("outbox: REDIS_URL is not set; without Redis the outbox lives in the service's memory, not reachable from here");
    return 1;
  }
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: false, connectTimeout: 2000 });
  redis.on("error", () => undefined);
  try {
    await redis.connect();
  } catch (e) {
    console.error(`outbox: cannot reach Redis at REDIS_URL: ${(e as Error).message}`);
    return 1;
  }
  try {
    const outbox = new RedisOutbox(redis, { prefix: process.env.REDIS_PREFIX || "aiflow:" });
    if (command === "redrive") {
      const r = await outbox.redrive(key!, Date.now());
      if (r === "no_dead_letter") {
        console.error(`outbox: no dead letter for ${key} (redriven already, delivered, or past its retention)`);
        return 1;
      }
      console.log(`${key}: due again now; the service's posters send it`);
      return 0;
    }
    const letters = await outbox.deadLetters();
    if (letters.length === 0) console.log("no dead letters");
    for (const d of letters) {
      console.log(`${d.key}  ${new Date(d.at).toISOString()}  ${d.attempts} attempt(s)  ${d.error}${d.final ? "" : "  (snapshot: the call's session_end never came)"}`);
      if (parsed.values.bodies) console.log(`  ${d.body}`);
    }
    return 0;
  } finally {
    redis.disconnect();
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => {
    if (e instanceof UsageError) {
      console.error(`outbox: ${e.message}\n\n${USAGE}`);
      process.exit(2);
    }
    console.error(`outbox: ${(e as Error).message}`);
    process.exit(1);
  },
);
