import { afterAll, describe, expect, it } from "vitest";
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import pino from "pino";
import { spokenToDialString } from "../src/phone/spoken.js";
import { ReviewRecorder } from "../src/review/recorder.js";
import { MemoryReviewStore } from "../src/review/reviewStore.js";
import { OtelTracing } from "../src/telemetry/otelTracing.js";
import type { AiFlowEvent } from "../src/aiflow/events.js";
import { testConfig } from "./support/harness.js";

/**
 * Adversarial review of issue 20 (numbers are masked in traces and in the call review): a number
 * the caller says that is not one of the call's own (the SMS target), in words, or with a
 * hesitation between its groups, as speech recognition writes them. The oracle is what the
 * caller said: the last seven digits of the number said must not be readable in what is kept.
 */

const CALLER = "+4915112345678";
const FLOW = "+4921112345678";
/** The SMS target the caller says; its digits as the caller said them. */
const SAID_FORMS = [
  "Bitte an null eins sieben eins, eins zwei drei, vier fünf sechs sieben.",
  "Bitte an null eins sieben eins äh eins zwei drei ähm vier fünf sechs sieben.",
  "Bitte an 0171 123 äh 45 67.",
  "Bitte an 0171 123 ähm 4567.",
];

/** The last seven digits of the number a text says (the caller's words are the oracle). */
const tail = (said: string) => spokenToDialString(said).slice(-7);
/** Every digit a kept text still shows, digits and number words alike. */
const shown = (kept: string) => spokenToDialString(kept);

function userSpeak(callId: string, text: string): AiFlowEvent {
  return { type: "user_speak", text, session: { id: callId, account_id: "acc", phone_number: FLOW, direction: "inbound", from_phone_number: CALLER, to_phone_number: FLOW } } as unknown as AiFlowEvent;
}

describe("traces with telemetry.transcript on: a number said that is not the call's own", () => {
  const exporter = new InMemorySpanExporter();
  const tracing = new OtelTracing(testConfig({ telemetry: { transcript: true } }), exporter, [], new SimpleSpanProcessor(exporter));
  afterAll(() => tracing.shutdown());

  for (const said of SAID_FORMS) {
    it(`masks it in aiflow.caller.text: "${said}"`, async () => {
      exporter.reset();
      await tracing.callEvent(userSpeak("rev20-trace", said), "http", `k-${said}`, async () => undefined);
      const text = exporter.getFinishedSpans().find((s) => s.name === "aiflow.event user_speak")!.attributes["aiflow.caller.text"] as string;
      expect(text, text).toBeTypeOf("string");
      expect(shown(text), `kept: "${text}"`).not.toContain(tail(said));
    });
  }
});

describe("the call review with review.transcripts on: a number said with a hesitation between its groups", () => {
  for (const said of SAID_FORMS) {
    it(`masks it in the caller's line: "${said}"`, async () => {
      const store = new MemoryReviewStore(86_400_000, 100);
      const recorder = new ReviewRecorder({ store, transcripts: true, homeCountry: "DE", agent: "test", log: pino({ level: "silent" }) });
      recorder.arrived(userSpeak("rev20-review", said), "http");
      await recorder.flush();
      const [entry] = (await store.get("rev20-review"))!;
      const text = (entry as { text?: string }).text!;
      expect(text).toBeTypeOf("string");
      expect(shown(text), `kept: "${text}"`).not.toContain(tail(said));
    });
  }
});
