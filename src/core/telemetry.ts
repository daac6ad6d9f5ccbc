/**
 * The one interface the service traces through. Nothing outside src/telemetry/ imports
 * OpenTelemetry: the engine, the pipeline, the gate and the model wrapper call `telemetry`, which
 * is a no-op (a direct call of the wrapped work; attributes given as functions are never worked
 * out) until a tracer is installed: createService installs the one it is given, which `npm start`
 * builds with startTracing (src/telemetry/start.ts) when OTEL_EXPORTER_OTLP_ENDPOINT or
 * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set. Bench row (h) measures what the no-op costs.
 *
 * Attribute values pass the installed tracer's scrubber (numbers masked, secrets removed); a span
 * started inside a call's event or turn carries `call.id` without being told.
 */

export type AttrValue = string | number | boolean | string[] | undefined;
export type Attrs = Record<string, AttrValue>;
/** Attributes, or how to work them out: a function is called only when tracing is on (nothing is computed when off). */
export type LazyAttrs = Attrs | (() => Attrs);

/** What a traced piece of work may add to its own span. */
export interface SpanNote {
  set(attrs: LazyAttrs): void;
  event(name: string, attrs?: LazyAttrs): void;
  /** The work failed (the span's status is error; `error.type` names the kind, the message is scrubbed). */
  fail(e: unknown, type?: string): void;
}

/** How an event came in, for the event's span. */
export interface TracedEvent {
  type: string;
  session: { id: string; from_phone_number?: string | null; to_phone_number?: string | null };
  text?: string | null;
}

/** Entries of a call's outbox that leave with an answer (a turn's actions, by the event it ran for). */
export interface DeliveredEntry {
  seq: number;
  actions: ReadonlyArray<{ type: string; text?: string }>;
}

export interface Tracing {
  readonly enabled: boolean;
  /** Runs `work` in a child span of whatever is active (the call's event or turn). Sync or async. */
  span<T>(name: string, attrs: LazyAttrs, work: (s: SpanNote) => T, kind?: "client" | "internal"): T;
  /** Adds attributes to the active span (e.g. retries and fallbacks on the model request's span). */
  note(attrs: LazyAttrs): void;
  /** A span event on the active span (a guard decision, a holding line). */
  event(name: string, attrs: LazyAttrs): void;
  /** The root span of one incoming call event (webhook request or WebSocket frame): one trace per event. */
  callEvent<T>(event: TracedEvent, via: "http" | "ws", key: string, work: (s: SpanNote) => Promise<T>): Promise<T>;
  /**
   * A turn's span: a child of its event's span while that event still waits for its answer; a
   * trace of its own linked to the event when the event was answered already (a holding line) or
   * arrived at another instance.
   */
  turn<T>(callId: string, key: string, seq: number, eventType: string, work: (s: SpanNote) => Promise<T>, arrivedTrace?: string): Promise<T>;
  /** The active span as a W3C traceparent (queued with an event, so a turn on another instance can link to it); undefined when off. */
  traceparent(): string | undefined;
  /** Actions handed to sipgate with an answer or a push: one span, linked to the turns that produced them. */
  delivered(callId: string, via: "http" | "ws", entries: readonly DeliveredEntry[]): void;
  /** `fn`, run in the context active now whenever it is called later (an answer's written/lost callbacks). */
  bind<A extends unknown[], R>(fn: (...args: A) => R): (...args: A) => R;
  /** Exports what is buffered and stops. */
  shutdown(): Promise<void>;
}

const NOTE: SpanNote = { set() {}, event() {}, fail() {} };

/** Tracing off: every call is the work itself. */
export const NO_TRACING: Tracing = {
  enabled: false,
  span: (_name, _attrs, work) => work(NOTE),
  note() {},
  event() {},
  callEvent: (_event, _via, _key, work) => work(NOTE),
  turn: (_callId, _key, _seq, _type, work) => work(NOTE),
  traceparent: () => undefined,
  delivered() {},
  bind: (fn) => fn,
  shutdown: async () => {},
};

let current: Tracing = NO_TRACING;

/** Install a tracer for the process (one at a time); returns the function that uninstalls it. */
export function installTracing(t: Tracing): () => void {
  current = t;
  return () => {
    if (current === t) current = NO_TRACING;
  };
}

/** What the rest of the code calls: forwards to the installed tracer, or does nothing. */
export const telemetry: Tracing = {
  get enabled() {
    return current.enabled;
  },
  span: (name, attrs, work, kind) => current.span(name, attrs, work, kind),
  note: (attrs) => current.note(attrs),
  event: (name, attrs) => current.event(name, attrs),
  callEvent: (event, via, key, work) => current.callEvent(event, via, key, work),
  turn: (callId, key, seq, type, work, arrivedTrace) => current.turn(callId, key, seq, type, work, arrivedTrace),
  traceparent: () => current.traceparent(),
  delivered: (callId, via, entries) => current.delivered(callId, via, entries),
  bind: (fn) => current.bind(fn),
  shutdown: () => current.shutdown(),
};
