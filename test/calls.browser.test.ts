import { writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Browser } from "./support/cdp.js";
import { until } from "./support/deadline.js";
import { reply } from "./support/fakeOpenAI.js";
import { ev } from "./support/events.js";
import { spoken, startTestService, testConfig, type TestService } from "./support/harness.js";
import { describeMissing, findChromium, missingTestPrograms } from "./support/testPrograms.js";

const ADMIN_TOKEN = "admin-review-secret-0004";
const ID = "6f1c9a2e-review-demo";
/** The README's screenshot (regenerate with UPDATE_SCREENSHOTS=1). */
const SCREENSHOT = "docs/call-review.png";

describe("the call review in headless Chromium", () => {
  let svc: TestService;
  let base: string;
  let browser: Browser;

  beforeAll(async () => {
    svc = await startTestService({ config: testConfig({ review: { transcripts: true } }), review: { adminToken: ADMIN_TOKEN } });
    // A call with a slow model: the caller hears the holding line 0.8 s after speaking, the
    // consent question 2.3 s after; then says yes and gets the SMS; then hangs up.
    await svc.post(ev.start(ID));
    svc.clock.advance(3000);
    const gate = svc.fake.block();
    svc.fake.enqueue(reply.tool("start_sms_flow", { info: "opening_hours" }));
    const first = svc.post(ev.speak(ID, "Können Sie mir die Öffnungszeiten per SMS schicken?"));
    await gate.arrived;
    await until(async () => svc.deadlineClock.pending > 0, "the deadline armed");
    svc.clock.advance(800);
    svc.deadlineClock.advance(800);
    expect(spoken((await first).actions)).toEqual(["Einen Moment bitte."]);
    gate.release();
    await until(async () => (await svc.store.get(ID))?.step === "confirm_consent", "the consent question");
    svc.clock.advance(1500);
    expect(spoken((await svc.post(ev.speechEnded(ID))).actions)[0]).toMatch(/^Darf ich Ihnen/);
    svc.clock.advance(4000);
    svc.fake.enqueue(reply.tool("record_consent", { consented: true }));
    await svc.post(ev.speak(ID, "Ja, gerne."));
    svc.clock.advance(5000);
    await svc.post(ev.end(ID));
    await svc.review.flush();
    await svc.app.listen({ port: 0, host: "127.0.0.1" });
    base = `http://127.0.0.1:${(svc.app.server.address() as AddressInfo).port}`;
    const chromium = findChromium();
    // npm test names a missing Chromium before it starts (test/support/testPrograms.ts); a run of this file alone fails here, never skips.
    expect(chromium, describeMissing(missingTestPrograms(process.env, { browser: true }))).toBeDefined();
    browser = await Browser.launch(chromium!);
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await svc.close();
  });

  it("logs in through the form and lists the call with its outcome and waits", async () => {
    await browser.goto(`${base}/calls`);
    // Not logged in: the login form.
    expect(await browser.evaluate<string>("location.pathname")).toBe("/calls/login");
    await browser.loaded(() => browser.evaluate(`document.getElementById("token").value = ${JSON.stringify(ADMIN_TOKEN)}; document.getElementById("log-in").click()`));
    expect(await browser.evaluate<string>("location.pathname")).toBe("/calls");
    // The session cookie is HttpOnly: the page's script never sees it.
    expect(await browser.evaluate<string>("document.cookie")).toBe("");
    const row = await browser.evaluate<string>(`document.querySelector('tr[data-call="${ID}"]').innerText`);
    expect(row).toContain("SMS handed over");
    expect(row).toContain("caller hung up");
    expect(row).toContain("reception");
    // The longest waits, from the clock moves above: 0.8 s until the holding line, 2.3 s until the answer.
    expect(row).toContain("0.8 s");
    expect(row).toContain("2.3 s");
    expect(await browser.evaluate<string>(`document.getElementById("fig-consent-given").innerText`)).toContain("100 %");
  });

  it("opens the call's timeline: said, heard, holding line, tool calls, the SMS and its ledger records", async () => {
    await browser.loaded(() => browser.evaluate(`document.querySelector('tr[data-call="${ID}"] a').click()`));
    expect(await browser.evaluate<string>("location.pathname")).toBe(`/calls/${ID}`);
    const timeline = await browser.evaluate<string>(`document.getElementById("timeline").innerText`);
    for (const part of [
      "caller: “Können Sie mir die Öffnungszeiten per SMS schicken?”",
      "holding line",
      "agent: “Einen Moment bitte.”",
      "start_sms_flow",
      "record_consent",
      "agent: “Darf ich Ihnen die Informationen per SMS an die Nummer +49…678 schicken?”",
      "send_sms to +49…678",
      "consent_asked",
      "sms_approved",
      "sms_handed_over",
    ])
      expect(timeline).toContain(part);
    expect(timeline).not.toMatch(/5 6, 7 8|15112345678/);
    const png = await browser.screenshot();
    expect(png.subarray(1, 4).toString()).toBe("PNG");
    if (process.env.UPDATE_SCREENSHOTS === "1") writeFileSync(SCREENSHOT, png);
  });

  it("logs out: the page asks for the login again", async () => {
    await browser.loaded(() => browser.evaluate(`document.querySelector('form[action="/calls/logout"] button').click()`));
    expect(await browser.evaluate<string>("location.pathname")).toBe("/calls/login");
    await browser.goto(`${base}/calls`);
    expect(await browser.evaluate<string>("location.pathname")).toBe("/calls/login");
  });
});
