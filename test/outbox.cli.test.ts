import { spawnSync } from "node:child_process";
import { join } from "node:path";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RedisOutbox } from "../src/outbox/redisOutbox.js";
import { REDIS_URL, connectRedis, uniquePrefix } from "./support/redis.js";

/** `npm run outbox`: an operator lists the callback reports given up on and sends one again once the receiver is fixed. */

const TSX = join("node_modules", ".bin", "tsx");
const prefix = uniquePrefix();
let redis: Redis;
let outbox: RedisOutbox;

const cli = (args: string[], env: Record<string, string | undefined> = { REDIS_URL, REDIS_PREFIX: prefix }) =>
  spawnSync(TSX, ["src/cli/outbox.ts", ...args], { encoding: "utf8", timeout: 30_000, env: { ...process.env, REDIS_URL: undefined, REDIS_PREFIX: undefined, ...env } });

beforeAll(async () => {
  redis = await connectRedis();
  outbox = new RedisOutbox(redis, { prefix });
  const now = Date.now();
  await outbox.put("call-dead", '{"callId":"call-dead","request":{"name":"Erika Mustermann"}}', now, { final: true });
  const [claim] = await outbox.claimDue(now, 10, 30_000);
  await outbox.deadLetter(claim!, "http 422");
});
afterAll(() => redis.disconnect());

describe("npm run outbox", () => {
  it("dead-letters lists key, time, attempts and error; the body (personal data) only with --bodies", () => {
    const plain = cli(["dead-letters"]);
    expect(plain.status, plain.stderr).toBe(0);
    expect(plain.stdout).toMatch(/^call-dead {2}\d{4}-\d{2}-\d{2}T.*Z {2}1 attempt\(s\) {2}http 422$/m);
    expect(plain.stdout).not.toContain("Mustermann");
    const bodies = cli(["dead-letters", "--bodies"]);
    expect(bodies.stdout).toContain('"name":"Erika Mustermann"');
  }, 30_000);

  it("redrive puts it back, due now, for the running posters; a second redrive finds nothing", async () => {
    const r = cli(["redrive", "call-dead"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/call-dead: due again now/);
    expect(await outbox.deadLetters()).toEqual([]);
    expect(await outbox.claimDue(Date.now(), 10, 30_000)).toMatchObject([{ key: "call-dead", attempts: 0, final: true }]);
    const again = cli(["redrive", "call-dead"]);
    expect(again.status).toBe(1);
    expect(again.stderr).toMatch(/no dead letter for call-dead/);
  }, 30_000);

  it("without REDIS_URL it says why and exits 1; bad usage exits 2", () => {
    const noRedis = cli(["dead-letters"], {});
    expect(noRedis.status).toBe(1);
    expect(noRedis.stderr).toMatch(/REDIS_URL is not set/);
    expect(cli(["redrive"]).status).toBe(2);
    expect(cli(["bogus"]).status).toBe(2);
    expect(cli(["dead-letters", "--nope"]).status).toBe(2);
  }, 30_000);
});
