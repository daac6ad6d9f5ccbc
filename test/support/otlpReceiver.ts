import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

/** One span as an OTLP/HTTP JSON export carries it, attributes flattened. */
export interface ReceivedSpan {
  name: string;
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  kind?: number;
  attributes: Record<string, unknown>;
  events: Array<{ name: string; attributes: Record<string, unknown> }>;
  links: Array<{ traceId: string; spanId: string; attributes: Record<string, unknown> }>;
  status?: { code?: number; message?: string };
  /** The resource's attributes (service.name …). */
  resource: Record<string, unknown>;
}

interface OtlpValue {
  stringValue?: string;
  intValue?: string | number;
  doubleValue?: number;
  boolValue?: boolean;
  arrayValue?: { values?: OtlpValue[] };
}
type OtlpAttrs = Array<{ key: string; value: OtlpValue }> | undefined;

/**
 * A local OTLP/HTTP receiver (JSON protocol: OTEL_EXPORTER_OTLP_PROTOCOL=http/json): accepts
 * POST /v1/traces, keeps every span, answers as a collector does. `bodies` keeps the raw texts,
 * so a test can look for a string anywhere in what was exported.
 */
export class OtlpReceiver {
  readonly spans: ReceivedSpan[] = [];
  readonly bodies: string[] = [];
  readonly requests: Array<{ method?: string; url?: string; contentType?: string }> = [];
  private server?: Server;

  async start(): Promise<string> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        this.requests.push({ method: req.method, url: req.url, contentType: req.headers["content-type"] });
        if (req.method !== "POST" || req.url !== "/v1/traces") {
          res.writeHead(404).end();
          return;
        }
        const text = Buffer.concat(chunks).toString("utf8");
        this.bodies.push(text);
        this.take(JSON.parse(text) as ExportRequest);
        res.writeHead(200, { "content-type": "application/json" }).end("{}");
      });
    });
    await new Promise<void>((r) => this.server!.listen(0, "127.0.0.1", () => r()));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }

  private take(body: ExportRequest): void {
    for (const rs of body.resourceSpans ?? []) {
      const resource = flat(rs.resource?.attributes);
      for (const ss of rs.scopeSpans ?? []) {
        for (const s of ss.spans ?? []) {
          this.spans.push({
            name: s.name,
            traceId: s.traceId,
            spanId: s.spanId,
            parentSpanId: s.parentSpanId || undefined,
            kind: s.kind,
            attributes: flat(s.attributes),
            events: (s.events ?? []).map((e) => ({ name: e.name, attributes: flat(e.attributes) })),
            links: (s.links ?? []).map((l) => ({ traceId: l.traceId, spanId: l.spanId, attributes: flat(l.attributes) })),
            status: s.status,
            resource,
          });
        }
      }
    }
  }
}

interface ExportRequest {
  resourceSpans?: Array<{
    resource?: { attributes?: OtlpAttrs };
    scopeSpans?: Array<{
      spans?: Array<{
        name: string;
        traceId: string;
        spanId: string;
        parentSpanId?: string;
        kind?: number;
        attributes?: OtlpAttrs;
        events?: Array<{ name: string; attributes?: OtlpAttrs }>;
        links?: Array<{ traceId: string; spanId: string; attributes?: OtlpAttrs }>;
        status?: { code?: number; message?: string };
      }>;
    }>;
  }>;
}

function value(v: OtlpValue): unknown {
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.arrayValue) return (v.arrayValue.values ?? []).map(value);
  return undefined;
}

function flat(attrs: OtlpAttrs): Record<string, unknown> {
  return Object.fromEntries((attrs ?? []).map((a) => [a.key, value(a.value)]));
}
