import { smsConfigOf } from "./support/harness.js";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfigFile } from "../src/appConfig.js";
import { NumberHasher } from "../src/ledger/numberHash.js";
import { abuseLimits, smsHolder } from "../src/tasks/sms/abuseLimits.js";
import { ev } from "./support/events.js";
import { FakeOpenAIServer, reply } from "./support/fakeOpenAI.js";
import { freePort } from "./support/processes.js";
import { connectRedis, REDIS_URL, uniquePrefix } from "./support/redis.js";
import { MAIN, ROOT, baseEnv, buildDist, startProcess, stopAll } from "./support/serverProcess.js";

/**
 * Issue 18, point 1, outside the ledger: with `ledger.numbers: hashed` the shared store's limit
 * keys hold the keyed hash of a number, never the number, and the service does not start
 * without the key. Through the compiled server, as an operator runs it.
 */

const KEY = "2026-12:Zm9yIHRlc3RzIG9ubHk6IG5vdCBhIHJlYWwga2V5IGF0IGFsbCE=";
const hasher = NumberHasher.keyed({ id: "2026-12", secret: KEY.slice("2026-12:".length) });

const outside = mkdtempSync(join(tmpdir(), "aiflow-hashed-"));
const fake = new FakeOpenAIServer();

/** The checked-in config with hashed numbers and the ledger in a temp folder. */
function hashedConfig(name: string): string {
  const path = join(outside, name);
  const yaml = readFileSync(join(ROOT, "config/agent.yaml"), "utf8")
    .replace("path: data/consent-ledger.jsonl", `path: ${join(outside, `${name}.ledger.jsonl`)}`)
    .replace("numbers: full", "numbers: hashed")
    // One instance on Redis with its own file ledger: the do-not-text list would need a shared one.
    .replace("optOutList: true", "optOutList: false");
  expect(yaml).toContain("numbers: hashed");
  writeFileSync(path, yaml);
  return path;
}

const node = (env: Record<string, string>, args: string[] = []) => startProcess(process.execPath, [MAIN, ...args], { env: baseEnv(env), cwd: outside });

beforeAll(async () => {
  buildDist();
  await fake.start();
}, 60_000);

afterAll(async () => {
  await stopAll();
  await fake.close();
});

describe("start-up with ledger.numbers: hashed", () => {
  it("without LEDGER_HASH_KEY, or with a malformed one, it refuses to start: exit 1, one line naming the variable", async () => {
    const config = hashedConfig("nokey.yaml");
    const base = { OPENAI_BASE_URL: fake.baseURL, HOST: "127.0.0.1", PORT: String(await freePort()), CONFIG: config };
    const cases = [
      { env: base, line: /^aiflow-sms-agent: ledger\.numbers is hashed but LEDGER_HASH_KEY is not set: set it to <id>:<secret>/ },
      { env: { ...base, LEDGER_HASH_KEY: "no-colon-here" }, line: /^aiflow-sms-agent: LEDGER_HASH_KEY must be <id>:<secret>/ },
      { env: { ...base, LEDGER_HASH_KEY: "2026-12:short" }, line: /^aiflow-sms-agent: LEDGER_HASH_KEY: the secret of key "2026-12" has 5 characters; use at least 32/ },
      { env: { ...base, LEDGER_HASH_KEY: KEY, LEDGER_HASH_KEYS_OLD: "2026-06:short" }, line: /^aiflow-sms-agent: LEDGER_HASH_KEYS_OLD: the secret of key "2026-06"/ },
    ];
    const runs = cases.map((c) => ({ ...c, p: node(c.env) }));
    for (const { p, line } of runs) {
      expect((await p.exited).code).toBe(1);
      expect(p.err().trim().split("\n")).toEqual([expect.stringMatching(line)]);
      expect(p.serverPid()).toBeUndefined(); // no log line: no server
    }
  }, 30_000);

  it("with a valid LEDGER_HASH_KEY it starts; --offline needs none (a demo hashes with a throwaway key)", async () => {
    const config = hashedConfig("withkey.yaml");
    const withKey = node({ OPENAI_BASE_URL: fake.baseURL, HOST: "127.0.0.1", PORT: String(await freePort()), CONFIG: config, LEDGER_HASH_KEY: KEY });
    const demo = node({ HOST: "127.0.0.1", PORT: String(await freePort()), CONFIG: config }, ["--offline"]);
    for (const p of [withKey, demo]) {
      await p.waitFor(/agent ready/);
      p.child.kill("SIGTERM");
      expect((await p.exited).code).toBe(0);
    }
  }, 30_000);

  it("--help lists LEDGER_HASH_KEY and LEDGER_HASH_KEYS_OLD", async () => {
    const p = node({}, ["--help"]);
    expect((await p.exited).code).toBe(0);
    expect(p.out()).toContain("LEDGER_HASH_KEY ");
    expect(p.out()).toContain("LEDGER_HASH_KEYS_OLD");
  }, 30_000);
});

describe("npm run chat and npm run eval with ledger.numbers: hashed", () => {
  const TSX = join(ROOT, "node_modules", ".bin", "tsx");
  const cli = (script: string, args: string[], env: Record<string, string>, input = "") =>
    spawnSync(TSX, [script, ...args], { cwd: ROOT, env: baseEnv(env), input, encoding: "utf8", timeout: 60_000 });

  it("each takes the key from LEDGER_HASH_KEY; without it, one line naming the variable", () => {
    const config = hashedConfig("cli.yaml");
    const chatArgs = ["--offline", "--config", config];
    const evalArgs = ["--offline", "--config", config, "--filter", "happy-own-number-de", "--out", join(outside, "eval-out")];

    const chatWithout = cli("src/cli/chat.ts", chatArgs, {}, "Hallo\n");
    expect(chatWithout.status).toBe(1);
    expect(chatWithout.stderr.trim().split("\n")).toEqual([expect.stringMatching(/^chat: ledger\.numbers is hashed but LEDGER_HASH_KEY is not set/)]);
    const evalWithout = cli("evals/run.ts", evalArgs, {});
    expect(evalWithout.status).toBe(2);
    expect(evalWithout.stderr.trim().split("\n")).toEqual([expect.stringMatching(/^eval: ledger\.numbers is hashed but LEDGER_HASH_KEY is not set/)]);

    const chatWith = cli("src/cli/chat.ts", chatArgs, { LEDGER_HASH_KEY: KEY }, "Schicken Sie mir die Öffnungszeiten per SMS?\nJa, gerne.\n");
    expect(chatWith.status, chatWith.stderr).toBe(0);
    expect(chatWith.stdout).toMatch(/✉ SMS sent to \+4915112345678/);
    const evalWith = cli("evals/run.ts", evalArgs, { LEDGER_HASH_KEY: KEY });
    expect(evalWith.status, evalWith.stderr + evalWith.stdout).toBe(0);
  }, 120_000);
});

describe("the shared store with hashed numbers (real Redis)", () => {
  let redis: Redis;
  beforeAll(async () => {
    redis = await connectRedis();
  });
  afterAll(async () => {
    redis.disconnect();
  });

  const CALLER = "4915112345678";
  const RECIPIENT = "491701234567";
  /** Every way the two numbers could sit in a key or value in digits: E.164 digits, national, the national number alone. */
  const forms = (n: string) => [n, "0" + n.slice(2), n.slice(2)];
  const separators = /[\s,.\-/()]/g;

  /** Every key under `prefix` and everything it holds, as text (binary values as latin1). */
  async function dump(prefix: string): Promise<Array<{ key: string; type: string; content: string }>> {
    const keys: string[] = [];
    let cursor = "0";
    do {
      const [next, batch] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
      keys.push(...batch);
      cursor = next;
    } while (cursor !== "0");
    const out = [];
    for (const key of keys) {
      const type = await redis.type(key);
      let parts: Buffer[];
      if (type === "string") parts = [(await redis.getBuffer(key))!];
      else if (type === "list") parts = await redis.lrangeBuffer(key, 0, -1);
      else if (type === "hash") parts = await redis.hgetallBuffer(key).then((h) => Object.entries(h).flatMap(([f, v]) => [Buffer.from(f), v]));
      else if (type === "zset") parts = await redis.zrangeBuffer(key, "0", "-1", "WITHSCORES");
      else if (type === "set") parts = await redis.smembersBuffer(key);
      else throw new Error(`key ${key} of type ${type}: the scan does not read that type`);
      out.push({ key, type, content: parts.map((b) => b.toString("latin1")).join("\n") });
    }
    return out;
  }

  it("after a call that texts another number, no Redis key or value holds the caller's or the recipient's number; the limits count under their keyed hashes", async () => {
    const prefix = uniquePrefix();
    const port = await freePort();
    const p = node({
      OPENAI_BASE_URL: fake.baseURL,
      HOST: "127.0.0.1",
      PORT: String(port),
      CONFIG: hashedConfig("redis.yaml"),
      REDIS_URL,
      REDIS_PREFIX: prefix,
      LEDGER_HASH_KEY: KEY,
    });
    await p.waitFor(/agent ready/);
    const post = async (event: unknown) => {
      const res = await fetch(`http://127.0.0.1:${port}/webhook`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(event) });
      expect(res.status).toBeLessThan(300);
      const text = await res.text();
      return (text ? ([] as Array<Record<string, unknown>>).concat(JSON.parse(text)) : []).filter(Boolean);
    };
    const id = "hashed-redis-1";
    fake.reset();
    await post(ev.start(id));
    // The caller (a mobile) wants the SMS at another mobile, said in words; then says yes.
    fake.enqueue(
      reply.tool("start_sms_flow", { info: "address" }),
      reply.tool("collect_phone_number", { phone_number: "null eins sieben null, eins zwei drei, vier fünf sechs sieben" }),
      reply.tool("record_consent", { consented: true }),
    );
    await post(ev.speak(id, "Schicken Sie mir die Adresse per SMS?"));
    const asked = await post(ev.speak(id, "Bitte an null eins sieben null, eins zwei drei, vier fünf sechs sieben."));
    expect(asked.map((a) => a.text).join(" ")).toContain("0 1 7 0, 1 2 3, 4 5, 6 7");
    const sent = [...(await post(ev.speak(id, "Ja, bitte.")))];
    // A holding line on a slow machine: the send leaves with a later answer.
    for (let i = 0; i < 20 && !sent.some((a) => a.type === "send_sms"); i++) sent.push(...(await post(ev.speechEnded(id))));
    expect(sent.filter((a) => a.type === "send_sms")).toEqual([expect.objectContaining({ phone_number: RECIPIENT })]);

    // The limits counted this SMS, under the keyed hashes of the numbers (and of the range's prefix).
    const limits = abuseLimits(smsConfigOf(loadConfigFile(join(outside, "redis.yaml"))), hasher, RECIPIENT, "DE", CALLER);
    for (const { kind, spec } of limits) {
      expect(await redis.zcard(`${prefix}limit:${spec.key}`), `${kind} window ${spec.key}`).toBe(1);
    }
    expect(limits.find((l) => l.kind === "recipient")!.spec.key).toBe(`sms:to:${hasher.storeKey(RECIPIENT)}`);
    expect(await redis.exists(`${prefix}limit:held:${smsHolder(id, RECIPIENT, hasher)}`)).toBe(1);

    await post(ev.speechEnded(id));
    await post(ev.end(id));
    p.child.kill("SIGTERM");
    expect((await p.exited).code).toBe(0);

    const stored = await dump(prefix);
    expect(stored.some((s) => s.key.includes(":limit:sms:to:"))).toBe(true);
    for (const s of stored) {
      for (const n of [CALLER, RECIPIENT]) {
        for (const form of forms(n)) {
          expect(s.key, `key ${s.key}`).not.toContain(form);
          expect(s.content.replace(separators, ""), `${s.type} ${s.key}`).not.toContain(form);
        }
      }
    }
  }, 60_000);

  it("abuseLimits and smsHolder with ledger.numbers: full keep the numbers as they are", () => {
    const config = loadConfigFile(join(ROOT, "config/agent.yaml"));
    const full = NumberHasher.full();
    expect(abuseLimits(smsConfigOf(config), full, RECIPIENT, "DE", CALLER).map((l) => l.spec.key)).toEqual([
      `sms:to:${RECIPIENT}`,
      `sms:from:${CALLER}`,
      `sms:range:${RECIPIENT.slice(0, -config.tasks.sms.abuse.perPrefix.prefixDigits)}`,
      "sms:country:DE",
      "sms:global",
    ]);
    expect(smsHolder("call-1", RECIPIENT, full)).toBe(`sms:call-1:${RECIPIENT}`);
    expect(abuseLimits(smsConfigOf(config), hasher, RECIPIENT, "DE", undefined).map((l) => l.spec.key)).toEqual([
      `sms:to:${hasher.storeKey(RECIPIENT)}`,
      "sms:from:anonymous",
      `sms:range:${hasher.storeKey(RECIPIENT.slice(0, -config.tasks.sms.abuse.perPrefix.prefixDigits))}`,
      "sms:country:DE",
      "sms:global",
    ]);
  });
});
