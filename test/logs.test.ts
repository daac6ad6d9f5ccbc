import { Writable } from "node:stream";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { MemoryLedger } from "../src/ledger/memoryLedger.js";
import { OpenAIChatModel } from "../src/llm/openaiChatModel.js";
import { createService } from "../src/service.js";
import { FakeOpenAIServer, reply } from "./support/fakeOpenAI.js";
import { CALLER, ev } from "./support/events.js";
import { testConfig } from "./support/harness.js";
import { ManualClock } from "../src/engine/clock.js";

describe("logs", () => {
  it("one structured line per event, refusals with reasons, and phone numbers masked to the last 3 digits", async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _enc, cb) {
        lines.push(...String(chunk).split("\n").filter(Boolean));
        cb();
      },
    });
    const fake = new FakeOpenAIServer();
    await fake.start();
    const config = testConfig({ logLevel: "info" });
    const service = createService({
    // Deadlines (server.answerWithinMs) move only when told: no answer depends on machine speed.
    clock: new ManualClock(),
      config,
      model: new OpenAIChatModel({ apiKey: "k", baseURL: fake.baseURL, timeoutMs: 2000, maxRetries: 0 }),
      ledger: new MemoryLedger(),
      logger: pino({ level: "debug" }, sink),
    });
    const post = (e: unknown) => service.app.inject({ method: "POST", url: "/webhook", headers: { "content-type": "application/json" }, payload: JSON.stringify(e) });
    try {
      const id = "log-1";
      await post(ev.start(id));
      fake.enqueue(reply.tool("start_sms_flow", { info: "address" }));
      await post(ev.speak(id, "SMS bitte"));
      fake.enqueue(reply.tool("collect_phone_number", { phone_number: "0900 1234567" }));
      await post(ev.speak(id, "Nehmen Sie 0900 1234567"));
      // "Ja" here answers "do you have a mobile number?", not the consent question: asked again.
      fake.enqueue(reply.tool("record_consent", { consented: true }));
      await post(ev.speak(id, "Ja"));
      fake.enqueue(reply.tool("record_consent", { consented: true }));
      await post(ev.speak(id, "Ja, an meine Nummer."));
      await post(ev.smsFailed(id, "insufficient_balance"));
    } finally {
      await service.close();
      await fake.close();
    }
    const all = lines.join("\n");
    expect(all).not.toContain(CALLER);
    expect(all).not.toContain(CALLER.slice(2));
    expect(all).not.toContain("4990012345");
    expect(all).toContain("**********678");
    const handled = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === "event handled");
    expect(handled.map((l) => l.event)).toEqual(["session_start", "user_speak", "user_speak", "user_speak", "user_speak", "sms_failed"]);
    expect(handled[2]).toMatchObject({ sessionId: "log-1", step: "confirm_consent", refusals: ["collect_phone_number:recipient_number_type_not_allowed"] });
    expect(handled[3]).toMatchObject({ actions: ["speak"], refusals: ["record_consent:consent_question_not_last"] });
    expect(handled[4]!.actions).toEqual(["send_sms(**********678)", "speak"]);
    const accountProblem = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.level === 50);
    expect(accountProblem).toMatchObject({ reason: "insufficient_balance", msg: expect.stringMatching(/account problem/) });
  });
});
