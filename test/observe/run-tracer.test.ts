import { context, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import {
  AlwaysOffSampler,
  BasicTracerProvider,
  SimpleSpanProcessor,
  type ReadableSpan,
} from '@opentelemetry/sdk-trace-node';
import { describe, expect, it } from 'vitest';
import { createRunTracer } from '../../src/observe/index.js';
import { useInMemoryTracing } from '../support/in-memory-tracing.js';
import { playRun } from '../support/notices.js';

// The run span's parent is the active context: that needs a context manager, as an SDK registers.
const { exporter, provider } = useInMemoryTracing();

/** The spans ended since the last call, by name. */
function takeSpans(): Map<string, ReadableSpan[]> {
  const spans = new Map<string, ReadableSpan[]>();
  for (const span of exporter.getFinishedSpans())
    spans.set(span.name, [...(spans.get(span.name) ?? []), span]);
  exporter.reset();
  return spans;
}

function only(spans: Map<string, ReadableSpan[]>, name: string): ReadableSpan {
  const found = spans.get(name) ?? [];
  expect(found).toHaveLength(1);
  return found[0]!;
}

describe('OpenTelemetry traces of runs', () => {
  it('makes an invoke_agent span per run and a chat client span per model request, as the GenAI conventions name them', () => {
    const tracer = createRunTracer({ tracerProvider: provider });
    const run = playRun(tracer.listener, { session: 'session-7' });
    run.request('Once upon a time');
    run.event({ event: 'RunContent', content: ', there was' });
    run.complete({ input_tokens: 12, output_tokens: 30 });

    const spans = takeSpans();
    expect([...spans.keys()].sort()).toEqual(['chat gpt-test', 'invoke_agent Story Writer Agent']);
    const agent = only(spans, 'invoke_agent Story Writer Agent');
    expect(agent.kind).toBe(SpanKind.INTERNAL);
    expect(agent.attributes).toMatchObject({
      'gen_ai.operation.name': 'invoke_agent',
      'gen_ai.agent.id': 'story-writer-agent',
      'gen_ai.agent.name': 'Story Writer Agent',
      'gen_ai.conversation.id': 'session-7',
      'gen_ai.request.model': 'gpt-test',
      'gen_ai.provider.name': 'openai',
      'runstate.run.id': run.record.run_id,
      'runstate.run.status': 'completed',
      'gen_ai.usage.input_tokens': 12,
      'gen_ai.usage.output_tokens': 30,
      'gen_ai.response.finish_reasons': ['stop'],
    });
    expect(agent.status.code).toBe(SpanStatusCode.UNSET);

    const chat = only(spans, 'chat gpt-test');
    expect(chat.kind).toBe(SpanKind.CLIENT);
    expect(chat.parentSpanContext?.spanId).toBe(agent.spanContext().spanId);
    expect(chat.spanContext().traceId).toBe(agent.spanContext().traceId);
    expect(chat.attributes).toMatchObject({
      'gen_ai.operation.name': 'chat',
      'gen_ai.request.model': 'gpt-test',
      'gen_ai.provider.name': 'openai',
      'gen_ai.usage.input_tokens': 12,
      'gen_ai.usage.output_tokens': 30,
      'gen_ai.response.finish_reasons': ['stop'],
    });
    expect(chat.attributes['gen_ai.response.time_to_first_chunk']).toBeGreaterThanOrEqual(0);
  });

  it('parents the run span with the context active when the run is created (a traced request)', () => {
    const tracer = createRunTracer({ tracerProvider: provider });
    const request = provider.getTracer('test').startSpan('POST /agents/{agent_id}/runs');
    const run = context.with(trace.setSpan(context.active(), request), () => playRun(tracer.listener));
    // Notices after creation arrive outside that context: the run keeps its own.
    run.request();
    run.complete();
    request.end();

    const spans = takeSpans();
    const agent = only(spans, 'invoke_agent Story Writer Agent');
    expect(agent.parentSpanContext?.spanId).toBe(request.spanContext().spanId);
    expect(agent.spanContext().traceId).toBe(request.spanContext().traceId);
    expect(only(spans, 'chat gpt-test').spanContext().traceId).toBe(request.spanContext().traceId);
  });

  it('records a cancel with its reason, not as an error, and ends the request span', () => {
    const tracer = createRunTracer({ tracerProvider: provider });
    const run = playRun(tracer.listener);
    run.request();
    run.cancel('client_disconnect');

    const spans = takeSpans();
    const agent = only(spans, 'invoke_agent Story Writer Agent');
    expect(agent.status.code).toBe(SpanStatusCode.UNSET);
    expect(agent.attributes).toMatchObject({
      'runstate.run.status': 'cancelled',
      'runstate.run.cancel_reason': 'client_disconnect',
    });
    expect(agent.events.map(({ name, attributes }) => [name, attributes])).toEqual([
      ['runstate.run.cancelled', { 'runstate.run.cancel_reason': 'client_disconnect' }],
    ]);
    expect(only(spans, 'chat gpt-test').status.code).toBe(SpanStatusCode.UNSET);
  });

  it('marks a failed run and its request as errors with the error code, and a retried request as failed', () => {
    const tracer = createRunTracer({ tracerProvider: provider });
    const run = playRun(tracer.listener);
    run.state({ streaming: { attempt: 'requesting' } });
    const error = {
      code: 'MODEL_REQUEST_FAILED',
      message: '503 from upstream',
      status: 503,
      retryable: true,
    };
    run.state({ streaming: 'retrying' }, { type: 'ERROR', error });
    run.state({ streaming: { attempt: 'requesting' } });
    run.fail('MODEL_REQUEST_FAILED');

    const spans = takeSpans();
    const agent = only(spans, 'invoke_agent Story Writer Agent');
    expect(agent.status).toEqual({ code: SpanStatusCode.ERROR, message: 'the model server failed' });
    expect(agent.attributes['error.type']).toBe('MODEL_REQUEST_FAILED');
    const chats = spans.get('chat gpt-test') ?? [];
    expect(chats.map((chat) => [chat.status.code, chat.attributes['error.type']])).toEqual([
      [SpanStatusCode.ERROR, 'MODEL_REQUEST_FAILED'],
      [SpanStatusCode.ERROR, 'MODEL_REQUEST_FAILED'],
    ]);
    // Usage is per run: with two requests, neither request span claims it.
    expect(chats[1]!.attributes['gen_ai.usage.input_tokens']).toBeUndefined();
  });

  it('makes an execute_tool span per tool call between two model requests, an error marked as such', () => {
    const tracer = createRunTracer({ tracerProvider: provider });
    const run = playRun(tracer.listener);
    run.state({ streaming: { attempt: 'requesting' } });
    run.tool('get_weather');
    run.tool('get_traffic', { error: true });
    run.request('It is sunny.');
    run.complete();

    const spans = takeSpans();
    const agent = only(spans, 'invoke_agent Story Writer Agent');
    expect(spans.get('chat gpt-test')).toHaveLength(2);
    const weather = only(spans, 'execute_tool get_weather');
    expect(weather.kind).toBe(SpanKind.INTERNAL);
    expect(weather.parentSpanContext?.spanId).toBe(agent.spanContext().spanId);
    expect(weather.attributes).toMatchObject({
      'gen_ai.operation.name': 'execute_tool',
      'gen_ai.tool.name': 'get_weather',
      'gen_ai.tool.type': 'function',
    });
    expect(weather.attributes['gen_ai.tool.call.id']).toMatch(/^call-/);
    expect(weather.status.code).toBe(SpanStatusCode.UNSET);
    // Arguments and results are content: not recorded by default.
    expect(weather.attributes['gen_ai.tool.call.arguments']).toBeUndefined();
    expect(weather.attributes['gen_ai.tool.call.result']).toBeUndefined();
    const traffic = only(spans, 'execute_tool get_traffic');
    expect(traffic.status.code).toBe(SpanStatusCode.ERROR);
    expect(traffic.attributes['error.type']).toBe('failed');
    // The first request ended asking for the calls, the second with the answer.
    expect(
      spans.get('chat gpt-test')!.map((chat) => chat.attributes['gen_ai.response.finish_reasons']),
    ).toEqual([['tool_calls'], ['stop']]);
  });

  it('makes an execute_tool span for a call that never ran (an unknown tool), marked failed', () => {
    const tracer = createRunTracer({ tracerProvider: provider });
    const run = playRun(tracer.listener);
    run.state({ streaming: { attempt: 'requesting' } });
    run.state({ streaming: 'tools' }, { type: 'DONE' });
    // Checked and refused before it could run: its ToolCallCompleted comes with no ToolCallStarted.
    run.event({
      event: 'ToolCallCompleted',
      tool: {
        tool_call_id: 'call-unknown',
        tool_name: 'nope',
        tool_args: {},
        result: "Error: there is no tool named 'nope'",
        content: null,
        tool_call_error: true,
        status: 'failed',
        requires_confirmation: false,
        confirmed: null,
        confirmation_note: null,
        metrics: { start_time: 1_700_000_001, end_time: 1_700_000_001, duration: 0 },
        created_at: 1_700_000_001,
      },
    });
    run.request('Sorry.');
    run.complete();

    const spans = takeSpans();
    const nope = only(spans, 'execute_tool nope');
    expect(nope.attributes).toMatchObject({ 'gen_ai.tool.call.id': 'call-unknown', 'error.type': 'failed' });
    expect(nope.status.code).toBe(SpanStatusCode.ERROR);
  });

  it('names a call of a name no tool can have (50 KB of a prompt) `_other` in its span', () => {
    const tracer = createRunTracer({ tracerProvider: provider });
    const run = playRun(tracer.listener);
    run.state({ streaming: { attempt: 'requesting' } });
    run.state({ streaming: 'tools' }, { type: 'DONE' });
    run.tool('x'.repeat(50_000), { ran: false });
    run.request('Sorry.');
    run.complete();

    const spans = takeSpans();
    const other = only(spans, 'execute_tool _other');
    expect(other.attributes['gen_ai.tool.name']).toBe('_other');
    expect(other.attributes['error.type']).toBe('failed');
  });

  it('marks a tool call cut short by its run’s cancel (no ToolCallCompleted comes) as an error, `cancelled`', () => {
    const tracer = createRunTracer({ tracerProvider: provider });
    const run = playRun(tracer.listener);
    run.state({ streaming: { attempt: 'requesting' } });
    run.startTool('slow_search', {});
    run.cancel('api');

    const spans = takeSpans();
    const call = only(spans, 'execute_tool slow_search');
    expect(call.status).toEqual({ code: SpanStatusCode.ERROR, message: 'tool call cancelled' });
    expect(call.attributes['error.type']).toBe('cancelled');
    expect(only(spans, 'invoke_agent Story Writer Agent').status.code).toBe(SpanStatusCode.UNSET);
  });

  it('records no message content unless told to', () => {
    const secret = 'my password is hunter2';
    const quiet = createRunTracer({ tracerProvider: provider });
    const run = playRun(quiet.listener, { input: secret });
    run.request('the answer is 42');
    run.complete();
    const text = JSON.stringify([...takeSpans().values()].flat().map((span) => span.attributes));
    expect(text).not.toContain('hunter2');
    expect(text).not.toContain('the answer is 42');

    const verbose = createRunTracer({ tracerProvider: provider, recordContent: true });
    const recorded = playRun(verbose.listener, { input: secret });
    recorded.request('the answer is 42');
    recorded.tool('get_weather', { args: { city: 'Paris' }, result: 'sunny' });
    recorded.complete();
    const spans = takeSpans();
    expect(only(spans, 'execute_tool get_weather').attributes).toMatchObject({
      'gen_ai.tool.call.arguments': '{"city":"Paris"}',
      'gen_ai.tool.call.result': 'sunny',
    });
    const agent = only(spans, 'invoke_agent Story Writer Agent');
    expect(JSON.parse(String(agent.attributes['gen_ai.input.messages']))).toEqual([
      { role: 'user', parts: [{ type: 'text', content: secret }] },
    ]);
    expect(JSON.parse(String(agent.attributes['gen_ai.output.messages']))).toEqual([
      { role: 'assistant', parts: [{ type: 'text', content: 'the answer is 42' }], finish_reason: 'stop' },
    ]);
  });

  it('uses the global provider by default, found when the first run starts', () => {
    const tracer = createRunTracer();
    // Registered after the tracer was made, as an application may do.
    trace.setGlobalTracerProvider(provider);
    try {
      const run = playRun(tracer.listener);
      run.request();
      run.complete();
      expect([...takeSpans().keys()]).toContain('invoke_agent Story Writer Agent');
    } finally {
      trace.disable();
    }
  });

  it('ends the span of a paused run another instance took (a `left` notice), marked so', () => {
    const tracer = createRunTracer({ tracerProvider: provider });
    const run = playRun(tracer.listener);
    run.request();
    run.state('paused');
    tracer.listener({ type: 'left', runId: run.record.run_id });
    const spans = takeSpans();
    const agent = only(spans, 'invoke_agent Story Writer Agent');
    expect(agent.attributes['runstate.run.status']).toBe('paused');
    expect(agent.events.map((event) => event.name)).toEqual(['runstate.run.left']);
    expect(spans.get('chat gpt-test')).toHaveLength(1);
    // Later notices of the run (none should come) are ignored.
    run.complete();
    expect(takeSpans().size).toBe(0);
  });

  it('traces a run taken here from the store (a `taken` notice) from there, marked so', () => {
    const tracer = createRunTracer({ tracerProvider: provider });
    let here = false;
    const run = playRun((notice) => here && tracer.listener(notice));
    here = true;
    tracer.listener({ type: 'taken', run: { ...run.record, status: 'paused' } });
    run.state('paused');
    run.request('Published.');
    run.complete();
    const spans = takeSpans();
    const agent = only(spans, 'invoke_agent Story Writer Agent');
    expect(agent.attributes).toMatchObject({
      'runstate.run.taken': true,
      'runstate.run.status': 'completed',
    });
    expect(only(spans, 'chat gpt-test').parentSpanContext?.spanId).toBe(agent.spanContext().spanId);
  });

  it('follows no further a run whose span is not recorded (sampled out): no span for its requests or tools', () => {
    const off = new BasicTracerProvider({
      sampler: new AlwaysOffSampler(),
      spanProcessors: [new SimpleSpanProcessor(exporter)],
    });
    const started: string[] = [];
    const counting = {
      getTracer(name: string) {
        const inner = off.getTracer(name);
        return Object.assign(Object.create(inner) as typeof inner, {
          startSpan: (...args: Parameters<typeof inner.startSpan>) => {
            started.push(args[0]);
            return inner.startSpan(...args);
          },
        });
      },
    };
    const tracer = createRunTracer({ tracerProvider: counting });
    const run = playRun(tracer.listener);
    run.state({ streaming: { attempt: 'requesting' } });
    run.tool('get_weather');
    run.request('It is sunny.');
    run.complete();
    expect(started).toEqual(['invoke_agent Story Writer Agent']);
    expect(takeSpans().size).toBe(0);
  });
});
