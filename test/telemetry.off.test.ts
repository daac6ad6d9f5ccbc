import { afterEach, describe, expect, it } from "vitest";
import { ConfigError } from "../src/appConfig.js";
import { NO_TRACING, telemetry } from "../src/core/telemetry.js";
import { startTracing, tracingWanted } from "../src/telemetry/start.js";
import { reply } from "./support/fakeOpenAI.js";
import { ev } from "./support/events.js";
import { startTestService, testConfig } from "./support/harness.js";
import { OtlpReceiver } from "./support/otlpReceiver.js";

/** Tracing is off unless an OTLP endpoint is set: no exporter, no spans, the engine's calls are the work itself. */

const VARS = ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_SDK_DISABLED", "OTEL_SERVICE_NAME"] as const;
const saved = Object.fromEntries(VARS.map((k) => [k, process.env[k]]));
afterEach(() => {
  for (const k of VARS) {
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  }
});

/** A call through the real service, with the tracer `npm start` would build from this environment (or none, as createService's default). */
async function playCall(id: string, opts: { asNpmStart: boolean; receiverSeen?: () => number }) {
  const tracing = opts.asNpmStart ? await startTracing(testConfig(), process.env, []) : undefined;
  const svc = await startTestService({ tracing });
  await svc.post(ev.start(id));
  svc.fake.enqueue(reply.text("Wir haben von acht bis zwölf geöffnet."));
  await svc.post(ev.speak(id, "Wann haben Sie geöffnet?"));
  const enabledDuringCall = telemetry.enabled;
  await svc.post(ev.end(id));
  await svc.close();
  return { enabledDuringCall, tracing, seen: opts.receiverSeen?.() };
}

describe("tracing off by default", () => {
  it("without an OTLP endpoint there is no tracer: the service runs untraced", async () => {
    for (const k of VARS) delete process.env[k];
    process.env.OTEL_SERVICE_NAME = "not-traced";
    const { enabledDuringCall, tracing } = await playCall("untraced-1", { asNpmStart: true });
    expect(tracingWanted(process.env)).toBe(false);
    expect(tracing).toBe(NO_TRACING);
    expect(enabledDuringCall).toBe(false);
  });

  it("an endpoint turns it on, OTEL_SDK_DISABLED=true off again: the receiver gets nothing", async () => {
    const receiver = new OtlpReceiver();
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = await receiver.start();
    process.env.OTEL_EXPORTER_OTLP_PROTOCOL = "http/json";
    expect(tracingWanted(process.env)).toBe(true);
    process.env.OTEL_SDK_DISABLED = "true";
    const { enabledDuringCall, tracing, seen } = await playCall("untraced-2", { asNpmStart: true, receiverSeen: () => receiver.requests.length });
    await receiver.close();
    expect(tracing).toBe(NO_TRACING);
    expect(enabledDuringCall).toBe(false);
    expect(seen).toBe(0);
  });

  it("a service built without a tracer (tests, evals, the chat) traces nothing, whatever the environment says", async () => {
    const receiver = new OtlpReceiver();
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = await receiver.start();
    process.env.OTEL_EXPORTER_OTLP_PROTOCOL = "http/json";
    const { enabledDuringCall, seen } = await playCall("untraced-3", { asNpmStart: false, receiverSeen: () => receiver.requests.length });
    await receiver.close();
    expect(enabledDuringCall).toBe(false);
    expect(seen).toBe(0);
  });

  it("the traces-only endpoint is enough; a protocol other than OTLP/HTTP is a config error naming the variable", async () => {
    expect(tracingWanted({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://127.0.0.1:4318/v1/traces" })).toBe(true);
    const grpc = startTracing(testConfig(), { OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:4317", OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "grpc" }, []);
    await expect(grpc).rejects.toThrow(ConfigError);
    await expect(grpc).rejects.toThrow(/^OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "grpc" is not supported/);
  });
});
