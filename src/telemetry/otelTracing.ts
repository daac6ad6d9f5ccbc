import { context, createContextKey, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Link, type Span, type SpanContext, type SpanOptions, type Tracer } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { OTLPTraceExporter as JsonExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { OTLPTraceExporter as ProtobufExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { detectResources, envDetector, resourceFromAttributes } from "@opentelemetry/resources";
import { BatchSpanProcessor, type SpanExporter, type SpanProcessor } from "@opentelemetry/sdk-trace-base";
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";
import { ATTR_SERVICE_NAME } from "@opentelemetry/semantic-conventions";
import { ConfigError } from "../config/load.js";
import type { BaseConfig } from "../config/schema.js";
import { Scrubber } from "./scrub.js";
import { tracingWanted } from "./wanted.js";
import { NO_TRACING, type Attrs, type DeliveredEntry, type LazyAttrs, type SpanNote, type TracedEvent, type Tracing } from "../core/telemetry.js";

/** The call a span belongs to: its id (every span's `call.id`) and its numbers (masked wherever they appear). */
interface CallTag {
  id: string;
  numbers: string[];
}

const CALL = createContextKey("aiflow.call");
/** Span contexts kept for links (events waiting for their turns, turns whose actions leave later): bounded, oldest out. */
const MAX_REMEMBERED = 10_000;

/**
 * Traces by OpenTelemetry's own variables, or NO_TRACING when no endpoint is set. The exporter,
 * its endpoint, headers and timeout, the sampler (OTEL_TRACES_SAMPLER) and the resource
 * (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES) are the SDK's, read from `env` by the SDK;
 * OTEL_EXPORTER_OTLP(_TRACES)_PROTOCOL picks http/protobuf (the default) or http/json.
 * `secrets` are removed from every attribute (the AI Flow token, the model key).
 */
export function tracingFromEnv(config: BaseConfig, env: NodeJS.ProcessEnv, secrets: ReadonlyArray<string | undefined>): Tracing {
  if (!tracingWanted(env)) return NO_TRACING;
  const variable = env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ? "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL" : "OTEL_EXPORTER_OTLP_PROTOCOL";
  const protocol = (env[variable] || "http/protobuf").trim();
  let exporter: SpanExporter;
  if (protocol === "http/protobuf") exporter = new ProtobufExporter();
  else if (protocol === "http/json") exporter = new JsonExporter();
  else throw new ConfigError(`${variable}: "${protocol}" is not supported; use http/protobuf or http/json (OTLP over HTTP)`);
  return new OtelTracing(config, exporter, secrets);
}

let contextManagerSet = false;

/** The SDK behind `telemetry`: one tracer provider, batch export, spans tagged with their call. */
export class OtelTracing implements Tracing {
  readonly enabled = true;
  private readonly provider: NodeTracerProvider;
  private readonly tracer: Tracer;
  private readonly scrub: Scrubber;
  private readonly transcript: boolean;
  /** By redelivery key: the event's span, and whether its answer is still to be given. */
  private readonly events = new Map<string, { span: SpanContext; open: boolean }>();
  /** By call and seq: the span of the turn that ran for the event. */
  private readonly turns = new Map<string, SpanContext>();
  /** By call: its numbers, from the events that carried them. */
  private readonly numbers = new Map<string, string[]>();

  constructor(config: BaseConfig, exporter: SpanExporter, secrets: ReadonlyArray<string | undefined>, processor?: SpanProcessor) {
    this.scrub = new Scrubber(secrets, config.homeCountry);
    this.transcript = config.telemetry.transcript;
    const resource = resourceFromAttributes({ [ATTR_SERVICE_NAME]: "aiflow-sms-agent" }).merge(detectResources({ detectors: [envDetector] }));
    this.provider = new NodeTracerProvider({ resource, spanProcessors: [new CallIdProcessor(), processor ?? new BatchSpanProcessor(exporter)] });
    // The context manager only (no global tracer provider): spans follow async work; other libraries see no tracer.
    if (!contextManagerSet) contextManagerSet = context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    this.tracer = this.provider.getTracer("aiflow-sms-agent");
  }

  span<T>(name: string, attrs: LazyAttrs, work: (s: SpanNote) => T, kind: "client" | "internal" = "internal"): T {
    const parent = context.active();
    const span = this.tracer.startSpan(name, { kind: kind === "client" ? SpanKind.CLIENT : SpanKind.INTERNAL, attributes: this.clean(attrs, parent) }, parent);
    return context.with(trace.setSpan(parent, span), () => this.run(span, parent, work));
  }

  note(attrs: LazyAttrs): void {
    const active = context.active();
    trace.getSpan(active)?.setAttributes(this.clean(attrs, active));
  }

  event(name: string, attrs: LazyAttrs): void {
    const active = context.active();
    trace.getSpan(active)?.addEvent(name, this.clean(attrs, active));
  }

  callEvent<T>(event: TracedEvent, via: "http" | "ws", key: string, work: (s: SpanNote) => Promise<T>): Promise<T> {
    const callId = event.session.id;
    const numbers = [event.session.from_phone_number, event.session.to_phone_number].filter((n): n is string => typeof n === "string" && n.length > 0);
    if (numbers.length) remember(this.numbers, callId, numbers);
    // A root: one trace per event, whatever the request or socket was doing before.
    const base = ROOT_CONTEXT.setValue(CALL, this.tag(callId));
    const attrs: Attrs = { "aiflow.event.type": event.type, "aiflow.transport": via };
    if (this.transcript && typeof event.text === "string") attrs["aiflow.caller.text"] = event.text;
    const span = this.tracer.startSpan(`aiflow.event ${event.type}`, { kind: SpanKind.SERVER, root: true, attributes: this.clean(attrs, base) }, base);
    const entry = { span: span.spanContext(), open: true };
    remember(this.events, key, entry);
    const done = () => {
      entry.open = false;
    };
    return context.with(trace.setSpan(base, span), () => this.run(span, base, work, done));
  }

  traceparent(): string | undefined {
    const c = trace.getSpan(context.active())?.spanContext();
    if (!c || !trace.isSpanContextValid(c)) return undefined;
    return `00-${c.traceId}-${c.spanId}-${(c.traceFlags & 1).toString(16).padStart(2, "0")}`;
  }

  turn<T>(callId: string, key: string, seq: number, eventType: string, work: (s: SpanNote) => Promise<T>, arrivedTrace?: string): Promise<T> {
    const event = this.events.get(key) ?? remoteEvent(arrivedTrace);
    let base = ROOT_CONTEXT.setValue(CALL, this.tag(callId));
    const options: SpanOptions = { attributes: this.clean({ "aiflow.event.type": eventType, "aiflow.event.seq": seq }, base) };
    if (event?.open) base = trace.setSpanContext(base, event.span);
    else {
      // Its event was answered already (a holding line while an earlier turn ran) or came in
      // elsewhere: a trace of its own, linked to the event's.
      options.root = true;
      if (event) options.links = [{ context: event.span, attributes: { "aiflow.link": "event answered before its turn ran" } }];
    }
    const span = this.tracer.startSpan(`aiflow.turn ${eventType}`, options, base);
    remember(this.turns, turnKey(callId, seq), span.spanContext());
    // The event got a holding line while this turn ran: its actions leave with a later answer (see delivered).
    const outlived = () => {
      if (event && !event.open && options.root !== true) span.setAttribute("aiflow.turn.outlived_answer", true);
    };
    return context.with(trace.setSpan(base, span), () => this.run(span, base, work, outlived));
  }

  delivered(callId: string, via: "http" | "ws", entries: readonly DeliveredEntry[]): void {
    const parent = context.active();
    for (const entry of entries) {
      const turn = this.turns.get(turnKey(callId, entry.seq));
      const links: Link[] = turn ? [{ context: turn, attributes: { "aiflow.link": "turn that produced the action" } }] : [];
      for (const action of entry.actions) {
        const attrs: Attrs = { "aiflow.action.type": action.type, "aiflow.transport": via, "aiflow.event.seq": entry.seq };
        if (this.transcript && typeof action.text === "string") attrs["aiflow.action.text"] = action.text;
        this.tracer.startSpan(`aiflow.deliver ${action.type}`, { links, attributes: this.clean(attrs, parent) }, parent).end();
      }
    }
  }

  bind<A extends unknown[], R>(fn: (...args: A) => R): (...args: A) => R {
    return context.bind(context.active(), fn);
  }

  async shutdown(): Promise<void> {
    await this.provider.shutdown();
  }

  private tag(callId: string): CallTag {
    return { id: callId, numbers: this.numbers.get(callId) ?? [] };
  }

  /** Attributes as a span may carry them: undefined left out, every text scrubbed. */
  private clean(lazy: LazyAttrs, ctx: Context): Attributes {
    const attrs = typeof lazy === "function" ? lazy() : lazy;
    const numbers = (ctx.getValue(CALL) as CallTag | undefined)?.numbers ?? [];
    const out: Attributes = {};
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined) continue;
      out[k] = typeof v === "string" ? this.scrub.text(v, numbers) : Array.isArray(v) ? v.map((s) => this.scrub.text(s, numbers)) : v;
    }
    return out;
  }

  private run<T>(span: Span, ctx: Context, work: (s: SpanNote) => T, settled?: () => void): T {
    const note: SpanNote = {
      set: (attrs) => span.setAttributes(this.clean(attrs, ctx)),
      event: (name, attrs = {}) => span.addEvent(name, this.clean(attrs, ctx)),
      fail: (e, type) => {
        const err = e as Error | undefined;
        span.setAttribute("error.type", type ?? err?.name ?? "Error");
        // The message only, scrubbed: no stack (paths), no number, no token.
        span.setStatus({ code: SpanStatusCode.ERROR, message: this.scrub.text(String(err?.message ?? e), (ctx.getValue(CALL) as CallTag | undefined)?.numbers) });
      },
    };
    const end = () => {
      settled?.();
      span.end();
    };
    let result: T;
    try {
      result = work(note);
    } catch (e) {
      note.fail(e);
      end();
      throw e;
    }
    if (result && typeof (result as { then?: unknown }).then === "function") {
      return (result as unknown as Promise<unknown>).then(
        (v) => {
          end();
          return v;
        },
        (e: unknown) => {
          note.fail(e);
          end();
          throw e;
        },
      ) as T;
    }
    end();
    return result;
  }
}

/** Every span of a call carries `call.id`, from the context it started in: the event's or the turn's. */
class CallIdProcessor implements SpanProcessor {
  onStart(span: Span, parent: Context): void {
    const call = parent.getValue(CALL) as CallTag | undefined;
    if (call) span.setAttribute("call.id", call.id);
  }
  onEnd(): void {}
  forceFlush(): Promise<void> {
    return Promise.resolve();
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

function turnKey(callId: string, seq: number): string {
  return `${callId}\u0000${seq}`;
}

function remember<V>(map: Map<string, V>, key: string, value: V): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > MAX_REMEMBERED) map.delete(map.keys().next().value!);
}

/** An event that arrived at another instance, from the traceparent queued with it: linked, never a parent (its answer left there). */
function remoteEvent(traceparent: string | undefined): { span: SpanContext; open: boolean } | undefined {
  const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(traceparent ?? "");
  if (!m) return undefined;
  const span: SpanContext = { traceId: m[1]!, spanId: m[2]!, traceFlags: parseInt(m[3]!, 16), isRemote: true };
  return trace.isSpanContextValid(span) ? { span, open: false } : undefined;
}
