import { execFile, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
import { parse as parseYaml } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { reply } from "./support/fakeOpenAI.js";
import { ev } from "./support/events.js";
import { startTestService, testConfig, type TestService } from "./support/harness.js";
import { loadScenarios } from "../evals/harness/scenario.js";
import { PREFILLED_MARK, scenarioFromCall } from "../evals/harness/fromCall.js";
import { MemoryReviewStore, RedisReviewStore, type ReviewStore } from "../src/review/reviewStore.js";
import { REDIS_URL, connectRedis, uniquePrefix } from "./support/redis.js";

const TSX = join("node_modules", ".bin", "tsx");
const ADMIN_TOKEN = "admin-review-secret-0003";
/** The committed scenario this test's call produces (regenerate with UPDATE_FROM_CALL=1). */
const COMMITTED = "evals/scenarios/from-call-reviewed-call-1.yaml";
const CALL_ID = "reviewed-call-1";
/** The caller's landline and the mobile number they give: neither may reach the scenario. */
const LANDLINE = "493012345678";
const MOBILE_SAID = "0170 1234567";

describe("from a reviewed call to a scenario in the offline suite", () => {
  let svc: TestService & { reviewStoreEntries: ReviewStore["get"] };
  let service: string;
  const out = mkdtempSync(join(tmpdir(), "from-call-"));
  const written = join(out, "from-call.yaml");

  beforeAll(async () => {
    const store = new MemoryReviewStore(3600_000, 100);
    svc = Object.assign(await startTestService({ config: testConfig({ review: { transcripts: true } }), review: { adminToken: ADMIN_TOKEN, reviewStore: store } }), { reviewStoreEntries: (id: string) => store.get(id) });
    // The call: a landline caller asks for the address by SMS, gives a mobile number, says yes.
    const s = { from: LANDLINE };
    await svc.post(ev.start(CALL_ID, s));
    svc.fake.enqueue(reply.tool("start_sms_flow", { info: "address" }));
    await svc.post(ev.speak(CALL_ID, "Schicken Sie mir bitte die Adresse per SMS.", false, s));
    svc.fake.enqueue(reply.tool("collect_phone_number", { phone_number: MOBILE_SAID }));
    await svc.post(ev.speak(CALL_ID, `Meine Handynummer ist ${MOBILE_SAID}.`, false, s));
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
    await svc.post(ev.speak(CALL_ID, "Ja, genau.", false, s));
    await svc.post({ ...ev.end(CALL_ID), session: { ...ev.end(CALL_ID).session, from_phone_number: LANDLINE } });
    await svc.review.flush();
    await svc.app.listen({ port: 0, host: "127.0.0.1" });
    service = `http://127.0.0.1:${(svc.app.server.address() as AddressInfo).port}`;
  });
  afterAll(async () => svc.close());

  const envOf = (env: Record<string, string>) => ({ ...process.env, OPENAI_API_KEY: "", OPENAI_BASE_URL: "", REDIS_URL: "", ADMIN_TOKEN: "", ...env });
  const run = (args: string[], env: Record<string, string> = {}) => spawnSync(TSX, ["evals/run.ts", ...args], { encoding: "utf8", env: envOf(env), timeout: 120_000 });
  /** The CLI while this process serves the call review it reads: without blocking the event loop. */
  const runBeside = (args: string[], env: Record<string, string> = {}) =>
    new Promise<{ status: number; stdout: string; stderr: string }>((resolve) => {
      execFile(TSX, ["evals/run.ts", ...args], { encoding: "utf8", env: envOf(env), timeout: 120_000 }, (err, stdout, stderr) =>
        resolve({ status: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });

  it("writes the scenario from the running service's call review (--service, ADMIN_TOKEN)", async () => {
    const r = await runBeside(["--from-call", CALL_ID, "--service", service, "--scenario-out", written], { ADMIN_TOKEN });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(`scenario from-call-${CALL_ID} written to ${written}`);
    const yaml = readFileSync(written, "utf8");
    expect(yaml).toContain(PREFILLED_MARK);
    // No number of the call: test numbers instead, each the same wherever it stands.
    for (const n of [LANDLINE, "3012345678", "1701234567", MOBILE_SAID, "1234567"]) expect(yaml).not.toContain(n);
    const [scenario] = parseYaml(yaml) as Array<{ caller: { number: string }; script: Array<{ say?: string }>; replay: Array<{ step: string; toolCalls: Array<{ name: string; arguments: Record<string, string> }> }>; expect: { sms: { recipient: string } } }>;
    // The caller's lines, in order, are the script; the model's answers, in order, the replay.
    expect(scenario!.script.map((x) => x.say)).toEqual(["Schicken Sie mir bitte die Adresse per SMS.", expect.stringMatching(/^Meine Handynummer ist 01[5-7][\d ]+\.$/), "Ja, genau.", undefined]);
    expect(scenario!.replay.map((x) => `${x.step}:${x.toolCalls.map((c) => c.name).join(",")}`)).toEqual(["main:start_sms_flow", "collect_number:collect_phone_number", "confirm_consent:record_consent"]);
    // The number the caller said, the model's argument and the SMS recipient are one test number; the landline another.
    const said = scenario!.script[1]!.say!.replace(/^Meine Handynummer ist |\.$/g, "");
    expect(scenario!.replay[1]!.toolCalls[0]!.arguments.phone_number).toBe(said);
    expect(`0${scenario!.expect.sms.recipient.slice(2)}`.replace(/\D/g, "")).toBe(said.replace(/\D/g, ""));
    expect(scenario!.caller.number).not.toBe(scenario!.expect.sms.recipient);
    expect(scenario!.caller.number.slice(-3)).toBe(LANDLINE.slice(-3));
    expect(scenario!.expect.sms.recipient.slice(-3)).toBe("567");
  }, 180_000);

  it("writes the same scenario from the shared Redis (REDIS_URL, REDIS_PREFIX)", async () => {
    const redis = await connectRedis();
    try {
      const prefix = uniquePrefix();
      // The call's timeline as a service with REDIS_URL keeps it.
      await new RedisReviewStore(redis, 3600_000, prefix).append(CALL_ID, (await svc.reviewStoreEntries(CALL_ID))!);
      const fromRedis = join(out, "from-redis.yaml");
      const r = run(["--from-call", CALL_ID, "--scenario-out", fromRedis], { REDIS_URL, REDIS_PREFIX: prefix });
      expect(r.status, r.stderr).toBe(0);
      expect(readFileSync(fromRedis, "utf8")).toBe(readFileSync(written, "utf8"));
      expect(run(["--from-call", "nope"], { REDIS_URL, REDIS_PREFIX: prefix }).stderr).toMatch(/no call nope in the review at REDIS_URL/);
    } finally {
      await redis.quit();
    }
  }, 180_000);

  it("is the scenario committed under evals/scenarios/", () => {
    const yaml = readFileSync(written, "utf8");
    if (process.env.UPDATE_FROM_CALL === "1") writeFileSync(COMMITTED, yaml);
    expect(readFileSync(COMMITTED, "utf8")).toBe(yaml);
    expect(loadScenarios("evals/scenarios").some((s) => s.id === `from-call-${CALL_ID}` && s.replay?.length === 3)).toBe(true);
  });

  it("passes in the offline suite, answered from its replay", () => {
    const r = run(["--offline", "--filter", `from-call-${CALL_ID}`, "--out", join(out, "report")]);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    const report = JSON.parse(readFileSync(join(out, "report", "report.json"), "utf8")) as { trials: Array<{ scenario: string; passed: boolean; transcript: Array<{ llmRequests: Array<{ model: string }> }> }> };
    const trial = report.trials.find((t) => t.scenario === `from-call-${CALL_ID}`)!;
    expect(trial.passed).toBe(true);
    expect(trial.transcript.flatMap((t) => t.llmRequests.map((q) => q.model))).toEqual(["replay", "replay", "replay"]);
  }, 180_000);

  it("fails loudly when the call went another way than its replay", () => {
    const changed = readFileSync(written, "utf8").replace("step: confirm_consent", "step: main");
    const dir = mkdtempSync(join(tmpdir(), "from-call-bad-"));
    writeFileSync(join(dir, "bad.yaml"), changed);
    const r = run(["--offline", "--scenarios", dir, "--out", join(dir, "report")]);
    expect(r.status).toBe(1);
    expect(r.stdout + r.stderr).toMatch(/model request 3 is for step confirm_consent, the call's was for step main/);
  }, 180_000);

  it("names what is missing: no transcripts, no token, an unknown call", async () => {
    expect((await runBeside(["--from-call", CALL_ID, "--service", service], {})).stderr).toMatch(/--service needs ADMIN_TOKEN/);
    expect((await runBeside(["--from-call", "nope", "--service", service], { ADMIN_TOKEN })).stderr).toMatch(/has no call nope in its review/);
    expect((await runBeside(["--from-call", CALL_ID, "--service", service], { ADMIN_TOKEN: "wrong-token-wrong-token" })).stderr).toMatch(/refused ADMIN_TOKEN \(401\)/);
    expect(run(["--from-call", CALL_ID]).stderr).toMatch(/--service https:\/\/host, with ADMIN_TOKEN set\) or from its Redis/);
    // (an exit code of 2 for each: a setup problem, not a failed scenario)
    const quiet = [
      { kind: "arrival" as const, at: 1, via: "http" as const, event: "session_start" },
      { kind: "arrival" as const, at: 2, via: "http" as const, event: "user_speak" },
    ];
    expect(() => scenarioFromCall("quiet", quiet, { language: "de-DE", agent: "reception" })).toThrow(/recorded without transcripts: set review.transcripts: true/);
  }, 180_000);
});
