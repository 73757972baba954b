// Tracing: W3C trace context in NATS headers, PRODUCER/CONSUMER spans per message, OTLP export to Jaeger.
// Export is on when OTEL_EXPORTER_OTLP_ENDPOINT (or CLEAVE_OTLP=1 for http://localhost:4318) is set.
import {
  context,
  propagation,
  trace,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  type Context,
  type Span,
  type TextMapGetter,
  type TextMapSetter,
} from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { NodeTracerProvider, BatchSpanProcessor, type SpanProcessor } from '@opentelemetry/sdk-trace-node';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import type { MsgHdrs } from '@nats-io/nats-core';
import { asCleaveError } from '../protocols/errors.js';

let provider: NodeTracerProvider | undefined;

/** Sets up tracing for this process once. Extra span processors are for tests (in-memory export). */
export function initTracing(serviceName: string, attributes: Record<string, string | number> = {}, extra: SpanProcessor[] = []): void {
  if (provider) return;
  const processors: SpanProcessor[] = [...extra];
  const endpoint = process.env.OTEL_EXPORTER_OTLP_ENDPOINT ?? (process.env.CLEAVE_OTLP ? 'http://localhost:4318' : undefined);
  if (endpoint) {
    const url = endpoint.endsWith('/v1/traces') ? endpoint : `${endpoint.replace(/\/$/, '')}/v1/traces`;
    processors.push(new BatchSpanProcessor(new OTLPTraceExporter({ url })));
  }
  if (processors.length === 0) {
    // Nothing would be exported: no SDK, so no span is recorded and no async context is tracked on
    // every promise (measured ~1 ms of an executor's main-thread CPU per request). Headers still carry
    // the trace on: spans are non-recording wrappers of the incoming context (see injectTrace).
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    return;
  }
  provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ 'service.name': serviceName, ...attributes }),
    spanProcessors: processors,
  });
  provider.register({ propagator: new W3CTraceContextPropagator() });
}

export async function shutdownTracing(): Promise<void> {
  await provider?.shutdown().catch(() => {});
  provider = undefined;
}

export const tracer = () => trace.getTracer('cleave');

const setter: TextMapSetter<MsgHdrs> = {
  set: (carrier, key, value) => carrier.set(key, value),
};
const getter: TextMapGetter<MsgHdrs | undefined> = {
  get: (carrier, key) => carrier?.get(key) || undefined,
  keys: (carrier) => (carrier ? carrier.keys() : []),
};

/** Writes the active (or given) context's traceparent into NATS headers. */
export function injectTrace(headers: MsgHdrs, span?: Span): void {
  // The span itself, not only the active context: without an SDK there is no active context, and the
  // (non-recording) span is what still holds the incoming trace.
  propagation.inject(span ? trace.setSpan(context.active(), span) : context.active(), headers, setter);
}

export function extractTrace(headers: MsgHdrs | undefined): Context {
  return propagation.extract(ROOT_CONTEXT, headers, getter);
}

/** Runs `fn` in a PRODUCER span `send <subject>`; `fn` gets the span to inject from. */
export function producerSpan<T>(subject: string, fn: (span: Span) => Promise<T>, attributes: Record<string, string | number> = {}): Promise<T> {
  return inSpan(`send ${subject}`, SpanKind.PRODUCER, subject, context.active(), fn, attributes);
}

/** Runs `fn` in a CONSUMER span `process <subject>` continuing the trace in the message's headers. */
export function consumerSpan<T>(
  subject: string,
  headers: MsgHdrs | undefined,
  fn: (span: Span) => Promise<T>,
  attributes: Record<string, string | number> = {},
): Promise<T> {
  return inSpan(`process ${subject}`, SpanKind.CONSUMER, subject, extractTrace(headers), fn, attributes);
}

function inSpan<T>(name: string, kind: SpanKind, subject: string, parent: Context, fn: (span: Span) => Promise<T>, attributes: Record<string, string | number>): Promise<T> {
  return tracer().startActiveSpan(name, { kind, attributes: { 'messaging.system': 'nats', 'messaging.destination.name': subject, ...attributes } }, parent, async (span) => {
    try {
      return await fn(span);
    } catch (e) {
      recordFailure(span, e);
      throw e;
    } finally {
      span.end();
    }
  });
}

function recordFailure(span: Span, e: unknown): void {
  const err = asCleaveError(e);
  span.setStatus({ code: SpanStatusCode.ERROR, message: `${err.code}: ${err.message}` });
  span.setAttribute('cleave.error.code', err.code);
}
