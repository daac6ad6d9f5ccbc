import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { reply } from "./support/fakeOpenAI.js";
import { CALLER, ev } from "./support/events.js";
import { startTestService, testConfig, type TestService } from "./support/harness.js";
import { connectRedis, uniquePrefix } from "./support/redis.js";
import { RedisReviewStore, MemoryReviewStore } from "../src/review/reviewStore.js";
import type { ReviewEntry } from "../src/review/entries.js";
import type { CallSummary } from "../src/review/summary.js";

const AIFLOW_TOKEN = "aiflow-shared-secret-0001";
const ADMIN_TOKEN = "admin-review-secret-0002";
const ORIGIN = "http://localhost:80";

/** Every form of the test caller's number that must never show: AI Flow digits, national, read back in groups. */
const NUMBER_FORMS = [CALLER, "015112345678", "0151 12345678", "0 1 5 1 1, 2 3 4, 5 6, 7 8", "12345678"];

function cookiesOf(setCookie: string | string[] | undefined): Record<string, string> {
  const list = Array.isArray(setCookie) ? setCookie : setCookie ? [setCookie] : [];
  return Object.fromEntries(list.map((c) => c.split(";")[0]!.split("=") as [string, string]));
}

async function playConsentCall(svc: TestService, id: string, headers: Record<string, string>, firstLine = "Können Sie mir die Öffnungszeiten per SMS schicken?") {
  await svc.post(ev.start(id), headers);
  svc.fake.enqueue(reply.tool("start_sms_flow", { info: "opening_hours" }));
  const asked = await svc.post(ev.speak(id, firstLine), headers);
  svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
  const sent = await svc.post(ev.speak(id, "Ja, gerne."), headers);
  await svc.post(ev.end(id), headers);
  await svc.review.flush();
  return { asked, sent };
}

describe("the call review page without ADMIN_TOKEN", () => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await startTestService({ apiToken: AIFLOW_TOKEN });
  });
  afterAll(async () => svc.close());

  it("is off: 404, also with the AI Flow token", async () => {
    for (const url of ["/calls", "/calls.json", "/calls/login"]) {
      const r = await svc.app.inject({ url, headers: { "x-api-token": AIFLOW_TOKEN } });
      expect(r.statusCode, url).toBe(404);
    }
  });
});

describe("the call review page with ADMIN_TOKEN", () => {
  let svc: TestService;
  const id = "review-call-1";
  const calledWith = { "x-api-token": AIFLOW_TOKEN };
  beforeAll(async () => {
    svc = await startTestService({ apiToken: AIFLOW_TOKEN, config: testConfig({ review: { transcripts: true } }), review: { adminToken: ADMIN_TOKEN } });
    await playConsentCall(svc, id, calledWith);
    // A caller who says something that would be markup on the page.
    await svc.post(ev.start("review-call-2"), calledWith);
    svc.fake.enqueue(reply.text("Gern geschehen."));
    await svc.post(ev.speak("review-call-2", `<script>alert("x")</script> & "quotes"`), calledWith);
    await svc.review.flush();
  });
  afterAll(async () => svc.close());

  it("is never reachable with the AI Flow token, in its header or as a bearer token", async () => {
    const header = await svc.app.inject({ url: "/calls.json", headers: { "x-api-token": AIFLOW_TOKEN } });
    expect(header.statusCode).toBe(401);
    const bearer = await svc.app.inject({ url: "/calls.json", headers: { authorization: `Bearer ${AIFLOW_TOKEN}`, "x-api-token": AIFLOW_TOKEN } });
    expect(bearer.statusCode).toBe(401);
    const html = await svc.app.inject({ url: "/calls", headers: { "x-api-token": AIFLOW_TOKEN } });
    expect(html.statusCode).toBe(303);
    expect(html.headers.location).toBe("/calls/login");
    // And the admin token does not open the webhook.
    const webhook = await svc.post(ev.start("x"), { authorization: `Bearer ${ADMIN_TOKEN}` });
    expect(webhook.status).toBe(401);
  });

  it("lists the call with its outcome for a script holding the bearer token", async () => {
    const r = await svc.app.inject({ url: "/calls.json", headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(r.statusCode).toBe(200);
    const { calls, figures } = r.json() as { calls: CallSummary[]; figures: { consentGivenRate?: number } };
    const call = calls.find((c) => c.callId === id)!;
    // From what the caller did: asked for the SMS, said yes, hung up; the model made two requests.
    expect(call.outcomes).toEqual(expect.arrayContaining(["sms_handed_over", "caller_hung_up"]));
    expect(call.outcomes).not.toContain("apology");
    expect(call.consent).toBe("given");
    expect(call.modelRequests).toBe(2);
    expect(call.agent).toBe("reception");
    expect(call.caller).toBe(`+49…${CALLER.slice(-3)}`);
    expect(call.ended).toBe(true);
    expect(figures.consentGivenRate).toBe(1);
  });

  it("opens a call as a timeline: said, heard, tool calls, the SMS and its ledger records, numbers masked", async () => {
    const r = await svc.app.inject({ url: `/calls/${id}.json`, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(r.statusCode).toBe(200);
    const { entries } = r.json() as { entries: ReviewEntry[] };
    const said = entries.flatMap((e) => (e.kind === "arrival" && e.text !== undefined ? [e.text] : []));
    expect(said).toEqual(["Können Sie mir die Öffnungszeiten per SMS schicken?", "Ja, gerne."]);
    const heard = entries.flatMap((e) => (e.kind === "answer" ? e.actions.flatMap((a) => (a.text ? [a.text] : [])) : []));
    expect(heard.some((t) => t.includes(`+49…${CALLER.slice(-3)}`) && t.startsWith("Darf ich"))).toBe(true);
    const tools = entries.flatMap((e) => (e.kind === "turn" ? e.tools.map((t) => t.name) : []));
    expect(tools).toEqual(expect.arrayContaining(["start_sms_flow", "record_consent"]));
    const sms = entries.flatMap((e) => (e.kind === "answer" ? e.actions.filter((a) => a.type === "send_sms") : []));
    expect(sms).toEqual([{ type: "send_sms", to: `+49…${CALLER.slice(-3)}` }]);
    const ledger = entries.flatMap((e) => (e.kind === "ledger" ? [e.record] : []));
    expect(ledger).toEqual(["consent_asked", "consent_given", "sms_approved", "sms_handed_over"]);
    // The model's answers are kept for --from-call.
    const answers = entries.flatMap((e) => (e.kind === "turn" ? e.model.map((m) => m.answer?.toolCalls.map((c) => c.name)) : []));
    expect(answers).toEqual([["start_sms_flow"], ["record_consent"]]);
    for (const form of NUMBER_FORMS) expect(r.body, form).not.toContain(form);
    const html = await svc.app.inject({ url: `/calls/${id}`, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    for (const form of NUMBER_FORMS) expect(html.body, form).not.toContain(form);
    expect(html.body).toContain("record_consent");
  });

  it("escapes what came from the call", async () => {
    const r = await svc.app.inject({ url: "/calls/review-call-2", headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(r.statusCode).toBe(200);
    expect(r.body).not.toContain("<script>");
    expect(r.body).toContain("&#60;script&#62;alert(&#34;x&#34;)&#60;/script&#62; &#38; &#34;quotes&#34;");
    expect(r.headers["content-security-policy"]).toContain("default-src 'none'");
  });

  it("logs in with the form (CSRF token, same origin) and out again", async () => {
    const form = await svc.app.inject({ url: "/calls/login" });
    expect(form.statusCode).toBe(200);
    const csrf = /name="csrf" value="([^"]+)"/.exec(form.body)![1]!;
    const csrfCookie = cookiesOf(form.headers["set-cookie"]).aiflow_review_csrf!;
    const post = (body: Record<string, string>, headers: Record<string, string>) =>
      svc.app.inject({ method: "POST", url: "/calls/login", headers: { "content-type": "application/x-www-form-urlencoded", host: "localhost:80", ...headers }, payload: new URLSearchParams(body).toString() });
    // From another site: refused, whatever it carries.
    expect((await post({ csrf, token: ADMIN_TOKEN }, { origin: "https://evil.example", cookie: `aiflow_review_csrf=${csrfCookie}` })).statusCode).toBe(403);
    // Without the form's token: refused.
    expect((await post({ csrf: "forged", token: ADMIN_TOKEN }, { origin: ORIGIN, cookie: `aiflow_review_csrf=${csrfCookie}` })).statusCode).toBe(403);
    // The AI Flow token is not the password.
    expect((await post({ csrf, token: AIFLOW_TOKEN }, { origin: ORIGIN, cookie: `aiflow_review_csrf=${csrfCookie}` })).statusCode).toBe(401);
    const ok = await post({ csrf, token: ADMIN_TOKEN }, { origin: ORIGIN, cookie: `aiflow_review_csrf=${csrfCookie}` });
    expect(ok.statusCode).toBe(303);
    const setCookie = ([] as string[]).concat(ok.headers["set-cookie"] ?? []);
    const session = setCookie.find((c) => c.startsWith("aiflow_review="))!;
    expect(session).toMatch(/HttpOnly/);
    expect(session).toMatch(/SameSite=Strict/);
    expect(session).not.toMatch(/Secure/);
    const cookie = session.split(";")[0]!;
    const page = await svc.app.inject({ url: "/calls", headers: { cookie } });
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain(`data-call="${id}"`);
    // A forged or expired cookie is nobody's.
    const [expiry, sig] = cookie.split("=")[1]!.split(".");
    expect((await svc.app.inject({ url: "/calls", headers: { cookie: `aiflow_review=${Number(expiry) + 1000}.${sig}` } })).statusCode).toBe(303);
    svc.clock.advance(9 * 3600_000);
    expect((await svc.app.inject({ url: "/calls", headers: { cookie } })).statusCode).toBe(303);
    svc.clock.advance(-9 * 3600_000);
    // Logout needs the page's CSRF token.
    const logoutCsrf = /action="\/calls\/logout"><input type="hidden" name="csrf" value="([^"]+)"/.exec(page.body)![1]!;
    const logout = (csrfValue: string) =>
      svc.app.inject({ method: "POST", url: "/calls/logout", headers: { "content-type": "application/x-www-form-urlencoded", host: "localhost:80", origin: ORIGIN, cookie }, payload: `csrf=${csrfValue}` });
    expect((await logout("forged")).statusCode).toBe(403);
    const out = await logout(logoutCsrf);
    expect(out.statusCode).toBe(303);
    expect(String(out.headers["set-cookie"])).toMatch(/aiflow_review=; .*Max-Age=0/);
  });

  it("marks the cookie Secure behind https", async () => {
    const form = await svc.app.inject({ url: "/calls/login", headers: { "x-forwarded-proto": "https" } });
    expect(String(form.headers["set-cookie"])).toMatch(/Secure/);
  });

  it("counts the ended call's outcome in /metrics", async () => {
    const text = (await svc.app.inject({ url: "/metrics" })).body;
    expect(text).toMatch(/^aiflow_calls_ended_total 1$/m);
    expect(text).toMatch(/^aiflow_call_outcomes_total\{outcome="sms_handed_over"\} 1$/m);
    expect(text).toMatch(/^aiflow_call_outcomes_total\{outcome="caller_hung_up"\} 1$/m);
    expect(text).toMatch(/^aiflow_holding_lines_per_call_count 1$/m);
    // Two caller turns, each answered at once (the test's clock stands still).
    expect(text).toMatch(/^aiflow_caller_wait_seconds_count\{until="answer"\} 2$/m);
  });
});

describe("transcripts off (the default)", () => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await startTestService({ review: { adminToken: ADMIN_TOKEN } });
    await playConsentCall(svc, "quiet-1", {});
  });
  afterAll(async () => svc.close());

  it("keeps what happened, not what was said or the model's answers", async () => {
    const r = await svc.app.inject({ url: "/calls/quiet-1.json", headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    const { entries, summary } = r.json() as { entries: ReviewEntry[]; summary: CallSummary };
    expect(summary.outcomes).toContain("sms_handed_over");
    expect(r.body).not.toContain("Öffnungszeiten");
    expect(r.body).not.toContain("Ja, gerne");
    expect(entries.some((e) => e.kind === "turn" && e.model.some((m) => m.answer))).toBe(false);
    expect(entries.some((e) => e.kind === "turn" && e.tools.some((t) => t.args !== undefined))).toBe(false);
  });
});

describe("review stores", () => {
  const entry = (at: number, event: string): ReviewEntry => ({ kind: "arrival", at, via: "http", event });

  it("memory: newest call first, oldest dropped past memoryMaxCalls, expired after the retention", async () => {
    let now = 1_000;
    const store = new MemoryReviewStore(10_000, 2, () => now);
    await store.append("a", [entry(1_000, "session_start")]);
    await store.append("b", [entry(2_000, "session_start")]);
    await store.append("c", [entry(3_000, "session_start")]);
    expect(await store.recent(10)).toEqual(["c", "b"]);
    now = 20_000;
    expect(await store.recent(10)).toEqual([]);
  });

  it("memory: an append within a second of the last expiry scan skips it, yet an expired call is never read and the cap holds at every append", async () => {
    let now = 1_000;
    const store = new MemoryReviewStore(10_000, 2, () => now);
    await store.append("a", [entry(1_000, "session_start")]);
    // Scans (over a second since the last): "a" is 9.9 s old, kept.
    now = 10_900;
    await store.append("b", [entry(10_900, "session_start")]);
    // "a" is now past its retention; this append, 0.2 s after the scan, does not look.
    now = 11_100;
    await store.append("b", [entry(11_100, "user_speak")]);
    // A read always looks: "a" is never shown.
    expect(await store.get("a")).toBeUndefined();
    expect(await store.recent(10)).toEqual(["b"]);
    // The cap (2 calls) is kept at every append, scanned or not: the oldest started goes first.
    now = 11_200;
    await store.append("x", [entry(11_200, "session_start")]);
    await store.append("y", [entry(11_210, "session_start")]);
    expect(await store.recent(10)).toEqual(["y", "x"]);
  });

  it("Redis: shared by instances, in time order, expiring with the retention", async () => {
    const redis = await connectRedis();
    try {
      const prefix = uniquePrefix();
      const one = new RedisReviewStore(redis, 60_000, prefix);
      const other = new RedisReviewStore(redis, 60_000, prefix);
      const t = Date.now();
      await one.append("call-x", [entry(t, "session_start")]);
      await other.append("call-x", [entry(t + 5, "user_speak")]);
      await one.append("call-x", [entry(t + 2, "assistant_speech_ended")]);
      await other.append("call-y", [entry(t + 10, "session_start")]);
      expect(await one.recent(10)).toEqual(["call-y", "call-x"]);
      expect((await other.get("call-x"))!.map((e) => (e.kind === "arrival" ? e.event : ""))).toEqual(["session_start", "assistant_speech_ended", "user_speak"]);
      expect(await redis.pttl(`${prefix}review:v1:call:{call-x}`)).toBeGreaterThan(50_000);
      expect(await one.get("unknown")).toBeUndefined();
    } finally {
      await redis.quit();
    }
  });

  it("Redis: the appends of many calls within one batch go out in one pipeline, each call's in order", async () => {
    const redis = await connectRedis();
    try {
      const prefix = uniquePrefix();
      const store = new RedisReviewStore(redis, 60_000, prefix);
      const t = Date.now();
      // Count what the store writes: every command ioredis sends, and how many writes carry them.
      const sent: string[] = [];
      const original = redis.sendCommand.bind(redis);
      redis.sendCommand = ((cmd: { name: string }) => {
        sent.push(cmd.name);
        return original(cmd as never);
      }) as typeof redis.sendCommand;
      // 50 calls, four entries each (arrival, answer, turn, ledger), appended one by one as an event makes them.
      const appends: Array<Promise<void>> = [];
      for (let i = 0; i < 4; i++) for (let c = 0; c < 50; c++) appends.push(store.append(`call-${c}`, [entry(t + i, i === 0 ? "session_start" : "user_speak")]));
      await Promise.all(appends);
      redis.sendCommand = original as typeof redis.sendCommand;
      // One MULTI per append was 6 commands each (1200 here); batched: RPUSH + PEXPIRE + ZADD per call, one index prune.
      expect(sent.length).toBe(50 * 3 + 1);
      expect(sent.filter((n) => n === "rpush")).toHaveLength(50);
      for (const c of [0, 17, 49]) expect((await store.get(`call-${c}`))!.map((e) => (e.kind === "arrival" ? e.event : ""))).toEqual(["session_start", "user_speak", "user_speak", "user_speak"]);
      expect(await store.recent(100)).toHaveLength(50);
    } finally {
      await redis.quit();
    }
  });

  it("Redis: an append whose batch cannot be written fails (the recorder logs it; the call is not affected)", async () => {
    const redis = await connectRedis();
    const store = new RedisReviewStore(redis, 60_000, uniquePrefix());
    await redis.quit();
    await expect(store.append("call-gone", [entry(Date.now(), "session_start")])).rejects.toThrow();
  });
});

describe("calls over the WebSocket", () => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await startTestService({ config: testConfig({ review: { transcripts: true } }), review: { adminToken: ADMIN_TOKEN } });
    await svc.app.listen({ port: 0, host: "127.0.0.1" });
  });
  afterAll(async () => svc.close());

  it("records arrivals and the pushed frames as the caller heard them", async () => {
    const { WebSocket } = await import("ws");
    const port = (svc.app.server.address() as { port: number }).port;
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, { perMessageDeflate: false });
    const frames: Array<{ type: string; text?: string }> = [];
    ws.on("message", (d) => frames.push(JSON.parse(d.toString()) as { type: string; text?: string }));
    await new Promise((r) => ws.once("open", r));
    const waitFrames = async (n: number) => {
      for (let i = 0; i < 400 && frames.length < n; i++) await new Promise((r) => setTimeout(r, 5));
      expect(frames.length).toBeGreaterThanOrEqual(n);
    };
    ws.send(JSON.stringify(ev.start("ws-review-1")));
    await waitFrames(1);
    svc.fake.enqueue(reply.text("Wir haben montags bis freitags von 8 bis 12 Uhr geöffnet."));
    ws.send(JSON.stringify(ev.speak("ws-review-1", "Wann haben Sie geöffnet?")));
    await waitFrames(2);
    ws.close();
    await svc.review.flush();
    const r = await svc.app.inject({ url: "/calls/ws-review-1.json", headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    const { entries } = r.json() as { entries: ReviewEntry[] };
    expect(entries.filter((e) => e.kind === "arrival").map((e) => (e.kind === "arrival" ? `${e.via}:${e.event}` : ""))).toEqual(["ws:session_start", "ws:user_speak"]);
    // What was pushed, in order, is what the timeline says the caller heard.
    const heard = entries.flatMap((e) => (e.kind === "answer" && e.answer === "pushed" ? e.actions.map((a) => a.text) : []));
    expect(heard).toEqual(frames.filter((f) => f.type === "speak").map((f) => f.text));
  });
});
