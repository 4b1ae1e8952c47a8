/**
 * Traces of runs served over HTTP, with an OpenTelemetry SDK registered as an application would
 * (global provider, AsyncLocalStorage context manager, W3C propagator) and an in-memory exporter.
 */
import { context, propagation, SpanKind, trace } from '@opentelemetry/api';
import {
  InMemorySpanExporter,
  NodeTracerProvider,
  SimpleSpanProcessor,
  type ReadableSpan,
} from '@opentelemetry/sdk-trace-node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { postRun, serveFake } from '../support/app.js';
import { readSse } from '../support/sse.js';

const exporter = new InMemorySpanExporter();
const provider = new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });

beforeAll(() => provider.register());
afterEach(() => exporter.reset());
afterAll(async () => {
  await provider.shutdown();
  trace.disable();
  context.disable();
  propagation.disable();
});

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT_ID = '00f067aa0ba902b7';
const traceparent = `00-${TRACE_ID}-${PARENT_ID}-01`;

function spansNamed(prefix: string): ReadableSpan[] {
  return exporter.getFinishedSpans().filter((span) => span.name.startsWith(prefix));
}

describe('tracing over HTTP', () => {
  it("parents a streamed run's span with the request's traceparent", async () => {
    const { story, model } = await serveFake();
    const reader = readSse(
      await postRun(story, { message: 'Tell me a story' }, { headers: { traceparent } }),
    );
    const call = await model.nextCall();
    call.emit('Once');
    call.end({ usage: { input_tokens: 4, output_tokens: 1, total_tokens: 5 } });
    const frames = await reader.rest();

    const [agent] = spansNamed('invoke_agent Story Writer Agent');
    expect(agent?.spanContext().traceId).toBe(TRACE_ID);
    expect(agent?.parentSpanContext?.spanId).toBe(PARENT_ID);
    expect(agent?.attributes).toMatchObject({
      'runstate.run.id': frames[0]!.data.run_id,
      'gen_ai.conversation.id': frames[0]!.data.session_id,
      'runstate.run.status': 'completed',
    });
    const [chat] = spansNamed('chat fake-model');
    expect(chat?.kind).toBe(SpanKind.CLIENT);
    expect(chat?.parentSpanContext?.spanId).toBe(agent?.spanContext().spanId);
  });

  it('makes the chat span the active context as the model request starts, for an HTTP client span to nest under', async () => {
    const { story, model } = await serveFake();
    const stream = model.stream.bind(model);
    model.stream = (request) => {
      trace.getTracer('http-client').startSpan('POST /v1/chat/completions').end();
      return stream(request);
    };
    const reader = readSse(
      await postRun(story, { message: 'Tell me a story' }, { headers: { traceparent } }),
    );
    (await model.nextCall()).end();
    await reader.rest();

    const [chat] = spansNamed('chat fake-model');
    const [request] = spansNamed('POST /v1/chat/completions');
    expect(request?.parentSpanContext?.spanId).toBe(chat?.spanContext().spanId);
    expect(request?.spanContext().traceId).toBe(TRACE_ID);
  });

  it('keeps the trace across a multipart body read before the run starts, and records a cancel', async () => {
    const { story, model } = await serveFake();
    const form = new FormData();
    form.set('message', 'Tell me a story');
    form.set('stream', 'false');
    const answer = fetch(`${story}/runs`, { method: 'POST', body: form, headers: { traceparent } });
    await model.nextCall();
    const runId = await activeRunId(story);
    expect((await fetch(`${story}/runs/${runId}/cancel`, { method: 'POST' })).status).toBe(200);
    expect(await (await answer).json()).toMatchObject({ status: 'cancelled', cancel_reason: 'api' });

    const [agent] = spansNamed('invoke_agent');
    expect(agent?.spanContext().traceId).toBe(TRACE_ID);
    expect(agent?.parentSpanContext?.spanId).toBe(PARENT_ID);
    expect(agent?.attributes['runstate.run.cancel_reason']).toBe('api');
  });

  it('starts a new trace for a request without traceparent', async () => {
    const { story, model } = await serveFake();
    const reader = readSse(await postRun(story, { message: 'Tell me a story' }));
    (await model.nextCall()).end();
    await reader.rest();
    const [agent] = spansNamed('invoke_agent');
    expect(agent?.parentSpanContext).toBeUndefined();
    expect(agent?.spanContext().traceId).not.toBe(TRACE_ID);
  });
});

async function activeRunId(agentUrl: string): Promise<string> {
  const runs = (await (await fetch(`${agentUrl}/runs?status=streaming`)).json()) as Array<{ run_id: string }>;
  expect(runs).toHaveLength(1);
  return runs[0]!.run_id;
}
