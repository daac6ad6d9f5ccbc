import { request } from "node:http";
import { expect } from "vitest";
import { reply } from "./fakeOpenAI.js";
import { ev } from "./events.js";
import { spoken, type TestService } from "./harness.js";
import type { ManualClock } from "../../src/engine/clock.js";

/** Tests of the answer deadline: the manual clock moves only when a test says so. */

/** Poll until `check` holds (by default 400 tries 5 ms apart); fails naming what it waited for. */
export async function until(check: () => boolean | Promise<boolean>, what = "condition", opts: { tries?: number; everyMs?: number } = {}): Promise<void> {
  const { tries = 400, everyMs = 5 } = opts;
  for (let i = 0; i < tries; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Post an event whose answer waits for the deadline; resolves once the deadline is armed (the answer is boxed, so awaiting this does not await it). */
export async function postPending(svc: TestService, event: unknown, clock: ManualClock = svc.deadlineClock) {
  const armedBefore = clock.pending;
  const answer = svc.post(event);
  for (let i = 0; i < 400 && clock.pending <= armedBefore; i++) await new Promise((r) => setTimeout(r, 5));
  expect(clock.pending, "the answer's deadline was armed").toBeGreaterThan(armedBefore);
  return { answer };
}

/** Let the deadline pass: the answer goes out with what is ready. */
export async function pastDeadline(svc: TestService, event: unknown) {
  const { answer } = await postPending(svc, event);
  svc.deadlineClock.advance(800);
  return answer;
}

export const ledgerKinds = (svc: TestService, id: string) => svc.memoryLedger.records.filter((r) => r.callId === id).map((r) => r.kind);

/** A call that has just been asked the consent question for the caller's own number. */
export async function atConsentQuestion(svc: TestService, id: string): Promise<void> {
  await svc.post(ev.start(id));
  svc.fake.enqueue(reply.tool("start_sms_flow", { info: "address" }));
  const q = await svc.post(ev.speak(id, "Schicken Sie mir die Adresse per SMS?"));
  expect(spoken(q.actions).at(-1)).toMatch(/^Darf ich Ihnen die Informationen per SMS/);
}

/** A turn slower than the deadline: the model is held, the deadline passes, the caller hears the holding line. Returns the hold (release it). */
export async function slowTurn(svc: TestService, event: unknown) {
  const gate = svc.fake.block();
  const answer = svc.post(event);
  await gate.arrived;
  await until(async () => svc.deadlineClock.pending > 0, "the deadline armed");
  svc.deadlineClock.advance(800);
  const first = await answer;
  expect(spoken(first.actions)).toEqual(["Einen Moment bitte."]);
  return gate;
}

/** POST an event over a real socket to the service on `port`, and hang up the request once the model has it (before any answer is written). */
export async function postAndHangUp(port: number, event: unknown, modelArrived: Promise<void>): Promise<void> {
  const req = request({ host: "127.0.0.1", port, path: "/webhook", method: "POST", headers: { "content-type": "application/json" } });
  req.on("error", () => undefined);
  req.end(JSON.stringify(event));
  await modelArrived;
  req.destroy();
}
