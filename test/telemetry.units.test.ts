import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { installTracing, telemetry } from "../src/core/telemetry.js";
import type { ChatModel, ChatRequest, ChatResponse } from "../src/llm/chatModel.js";
import { ResilientModel } from "../src/llm/resilientModel.js";
import { OtelTracing } from "../src/telemetry/otelTracing.js";
import { Scrubber } from "../src/telemetry/scrub.js";
import { testConfig } from "./support/harness.js";

/** The model wrapper's retries and fallbacks on the model request's span, and the scrubber on its own. */

const exporter = new InMemorySpanExporter();
let uninstall: () => void;
let tracing: OtelTracing;
beforeAll(() => {
  tracing = new OtelTracing(testConfig(), exporter, ["secret-token-123"], new SimpleSpanProcessor(exporter));
  uninstall = installTracing(tracing);
});
afterAll(async () => {
  uninstall();
  await tracing.shutdown();
});

const REQUEST: ChatRequest = { model: "gpt-4o-mini", temperature: 0, maxTokens: 100, system: "s", messages: [], tools: [] };
const ANSWER: ChatResponse = { text: "ok", toolCalls: [], usage: { promptTokens: 10, completionTokens: 2 }, model: "backup-model" };

/** A model that fails with an HTTP status `fails` times, then answers. */
function flaky(fails: number, status = 503): ChatModel {
  let n = 0;
  return {
    complete: async () => {
      if (n++ < fails) throw Object.assign(new Error(`status ${status}`), { status });
      return ANSWER;
    },
  };
}

describe("the resilient model on the model request's span", () => {
  it("names the route that answered, the retries before it and the fallback, with one span per attempt", async () => {
    exporter.reset();
    const model = new ResilientModel(
      [
        { name: "primary", model: flaky(99) },
        { name: "fallback-1", model: flaky(1), modelName: "backup-model" },
      ],
      { timeoutMs: 1000, retries: 1, backoffInitialMs: 1, backoffMaxMs: 1, breakerThreshold: 10, breakerCooldownMs: 1000, sleep: async () => {} },
    );
    const res = await telemetry.span("chat gpt-4o-mini", {}, () => model.complete(REQUEST), "client");
    expect(res).toBe(ANSWER);
    const spans = exporter.getFinishedSpans();
    const chat = spans.find((s) => s.name === "chat gpt-4o-mini")!;
    // What the test set up: primary failed twice (one retry), fallback-1 failed once and answered on its retry.
    expect(chat.attributes).toMatchObject({ "aiflow.llm.route": "fallback-1", "aiflow.llm.retries": 3, "aiflow.llm.fallback": true, "aiflow.llm.fallback_from": "primary" });
    const attempts = spans.filter((s) => s.name === "aiflow.llm.attempt");
    expect(attempts.map((a) => [a.attributes["aiflow.llm.route"], a.attributes["aiflow.llm.attempt"], a.status.code])).toEqual([
      ["primary", 1, 2],
      ["primary", 2, 2],
      ["fallback-1", 1, 2],
      ["fallback-1", 2, 0],
    ]);
    for (const a of attempts) expect(a.parentSpanContext?.spanId).toBe(chat.spanContext().spanId);
    expect(attempts.find((a) => a.attributes["aiflow.llm.route"] === "fallback-1")!.attributes["gen_ai.request.model"]).toBe("backup-model");
  });

  it("an answer on the first try: no retries, no fallback", async () => {
    exporter.reset();
    const model = new ResilientModel([{ name: "primary", model: flaky(0) }], { timeoutMs: 1000, retries: 2, backoffInitialMs: 1, backoffMaxMs: 1, breakerThreshold: 10, breakerCooldownMs: 1000 });
    await telemetry.span("chat gpt-4o-mini", {}, () => model.complete(REQUEST), "client");
    const chat = exporter.getFinishedSpans().find((s) => s.name === "chat gpt-4o-mini")!;
    expect(chat.attributes).toMatchObject({ "aiflow.llm.route": "primary", "aiflow.llm.retries": 0, "aiflow.llm.fallback": false });
  });
});

describe("the scrubber", () => {
  const scrub = new Scrubber(["secret-token-123", "short"], "DE");
  const NSN = "15112345678";

  it("masks a number in every written form, keeping its last three digits as the logs do", () => {
    for (const form of ["+4915112345678", "4915112345678", "0151 12345678", "0151-1234 5678", "(0151) 123 456 78", "+49 (0)151 12345678", "0 1 5 1 1, 2 3 4, 5 6, 7 8", "004915112345678"]) {
      const out = scrub.text(`Nummer ${form} bitte`);
      expect(out.replace(/\D/g, "").includes(NSN), `${form} → ${out}`).toBe(false);
      expect(out).toMatch(/^Nummer \*+678 bitte$/);
    }
  });

  it("replaces the call's own number said in words, and removes the secrets it was given", () => {
    expect(scrub.text("null eins fünf eins, eins zwei drei vier, fünf sechs sieben acht", ["4915112345678"])).toBe("{number}");
    expect(scrub.text("GET /ws?token=secret-token-123 failed")).toBe("GET /ws?token=[redacted] failed");
    // Values too short to be a secret are not blanked out of ordinary words.
    expect(scrub.text("a short line")).toBe("a short line");
  });

  it("leaves short figures alone", () => {
    expect(scrub.text("Mo-Fr 8-12 Uhr, 3 Versuche, 2026")).toBe("Mo-Fr 8-12 Uhr, 3 Versuche, 2026");
  });
});

describe("an event that arrived at another instance", () => {
  it("its turn links to the event's span through the traceparent queued with it (the call store carries it on both stores)", async () => {
    const arrivalExporter = new InMemorySpanExporter();
    const arrival = new OtelTracing(testConfig(), arrivalExporter, [], new SimpleSpanProcessor(arrivalExporter));
    const event = { type: "user_speak", text: "Ja", session: { id: "remote-call", from_phone_number: "+4915112345678", to_phone_number: "+4921112345678" } };
    // Instance A: the event's span, and the traceparent it queues with the event.
    const queued = await arrival.callEvent(event, "http", "key-on-a", async () => arrival.traceparent());
    expect(queued).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    const [eventSpan] = arrivalExporter.getFinishedSpans();
    // Instance B (this file's tracer) never saw the event: its turn starts a trace of its own, linked.
    exporter.reset();
    await tracing.turn("remote-call", "key-on-a", 7, "user_speak", async () => undefined, queued);
    const turn = exporter.getFinishedSpans().find((s) => s.name === "aiflow.turn user_speak")!;
    expect(turn.spanContext().traceId).not.toBe(eventSpan!.spanContext().traceId);
    expect(turn.links.map((l) => [l.context.traceId, l.context.spanId])).toEqual([[eventSpan!.spanContext().traceId, eventSpan!.spanContext().spanId]]);
    // A traceparent that is not one is no link.
    exporter.reset();
    await tracing.turn("remote-call", "key-unknown", 8, "user_speak", async () => undefined, "00-garbage");
    expect(exporter.getFinishedSpans().find((s) => s.name === "aiflow.turn user_speak")!.links).toEqual([]);
    await arrival.shutdown();
  });
});
