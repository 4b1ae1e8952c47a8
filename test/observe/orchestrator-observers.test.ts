/**
 * The observers subscribed to a real orchestrator, its run machine and a fake model: what the unit
 * tests play by hand (states, retries, cancels in pending) is what the orchestrator notifies.
 */
import { SpanStatusCode } from '@opentelemetry/api';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-node';
import { afterAll, describe, expect, it } from 'vitest';
import { RunstateError } from '../../src/errors.js';
import { createPrometheusMetrics, createRunTracer } from '../../src/observe/index.js';
import { z } from 'zod';
import { createOrchestrator } from '../../src/runtime/create-orchestrator.js';
import { tool } from '../../src/index.js';
import { createFakeModel } from '../../src/testing/index.js';
import { sample } from '../support/notices.js';

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
afterAll(() => provider.shutdown());

const add = tool({
  name: 'add',
  description: 'Adds two numbers',
  parameters: z.object({ a: z.number(), b: z.number() }),
  execute: ({ a, b }) => ({ sum: a + b }),
});
const broken = tool({
  name: 'broken',
  description: 'Always throws',
  parameters: z.object({}),
  execute: () => {
    throw new Error('out of order');
  },
});

function setup(options: Parameters<typeof createOrchestrator>[0] = {}) {
  exporter.reset();
  const model = createFakeModel();
  // No backoff: the retry starts as soon as the machine schedules it.
  const orchestrator = createOrchestrator({
    limits: { retry: { baseDelayMs: 0, maxDelayMs: 0 } },
    ...options,
  });
  const metrics = createPrometheusMetrics();
  // As createApp subscribes them: neither needs the causes of state changes, so runs go uninspected.
  orchestrator.subscribe(metrics.listener, { causes: false });
  orchestrator.subscribe(createRunTracer({ tracerProvider: provider }).listener, { causes: false });
  const start = (input = 'Tell me a story') =>
    orchestrator.startRun({ agentId: 'writer', agentName: 'Writer', model, input, tools: [add, broken] });
  return { model, orchestrator, metrics, start };
}

describe('observers of a real orchestrator', () => {
  it('see a retried request as two chat spans and one retry, then the run complete', async () => {
    const { model, metrics, start } = setup();
    const run = start();
    (await model.nextCall()).fail(
      new RunstateError('MODEL_REQUEST_FAILED', 'upstream 503', { status: 503, retryable: true }),
    );
    const second = await model.nextCall();
    second.emit('Once');
    second.end({ usage: { input_tokens: 3, output_tokens: 1, total_tokens: 4 } });
    expect((await run.result).status).toBe('completed');

    const text = await metrics.registry.metrics();
    expect(sample(text, 'runstate_model_retries_total', { agent: 'writer' })).toBe(1);
    expect(sample(text, 'runstate_runs_finished_total', { agent: 'writer', status: 'completed' })).toBe(1);
    expect(sample(text, 'runstate_tokens_total', { agent: 'writer', type: 'input' })).toBe(3);
    const chats = exporter.getFinishedSpans().filter((span) => span.name === 'chat fake-model');
    expect(chats.map((chat) => [chat.status.code, chat.attributes['error.type']])).toEqual([
      [SpanStatusCode.ERROR, 'MODEL_REQUEST_FAILED'],
      [SpanStatusCode.UNSET, undefined],
    ]);
    expect(chats[1]!.attributes['gen_ai.response.time_to_first_chunk']).toBeGreaterThanOrEqual(0);
  });

  it('see a run cancelled while pending: no chat span, no time to first token, counted as cancelled', async () => {
    const { model, orchestrator, metrics, start } = setup({ maxConcurrentRuns: 1 });
    const first = start();
    const call = await model.nextCall();
    const waiting = start('Wait your turn');
    let text = await metrics.registry.metrics();
    expect(sample(text, 'runstate_runs_active', { state: 'pending' })).toBe(1);
    expect(orchestrator.cancelRun(waiting.runId, 'code')).toBe(true);
    call.end();
    await Promise.all([first.result, waiting.result]);

    text = await metrics.registry.metrics();
    expect(sample(text, 'runstate_runs_active', { state: 'pending' })).toBe(0);
    expect(sample(text, 'runstate_run_cancels_total', { agent: 'writer', reason: 'code' })).toBe(1);
    // Neither run had output: no time to first token was observed at all.
    expect(sample(text, 'runstate_time_to_first_token_seconds_count', { agent: 'writer' })).toBeUndefined();
    const spans = exporter.getFinishedSpans();
    expect(spans.filter((span) => span.name === 'invoke_agent Writer')).toHaveLength(2);
    expect(spans.filter((span) => span.name === 'chat fake-model')).toHaveLength(1);
  });

  it('see the tool calls of a turn between two model requests: execute_tool spans and counts', async () => {
    const { model, metrics, start } = setup();
    const run = start('Add 1 and 2');
    (await model.nextCall()).callTools([
      { id: 'call_a', name: 'add', arguments: { a: 1, b: 2 } },
      { id: 'call_b', name: 'broken', arguments: {} },
    ]);
    const second = await model.nextCall();
    second.emit('3');
    second.end();
    expect((await run.result).status).toBe('completed');

    const spans = exporter.getFinishedSpans();
    const [agent] = spans.filter((span) => span.name === 'invoke_agent Writer');
    expect(spans.filter((span) => span.name === 'chat fake-model')).toHaveLength(2);
    const [added] = spans.filter((span) => span.name === 'execute_tool add');
    expect(added?.parentSpanContext?.spanId).toBe(agent?.spanContext().spanId);
    expect(added?.attributes).toMatchObject({ 'gen_ai.tool.name': 'add', 'gen_ai.tool.call.id': 'call_a' });
    const [failed] = spans.filter((span) => span.name === 'execute_tool broken');
    expect(failed?.status.code).toBe(SpanStatusCode.ERROR);

    const text = await metrics.registry.metrics();
    expect(
      sample(text, 'runstate_tool_calls_total', { agent: 'writer', tool: 'add', status: 'completed' }),
    ).toBe(1);
    expect(
      sample(text, 'runstate_tool_calls_total', { agent: 'writer', tool: 'broken', status: 'failed' }),
    ).toBe(1);
  });
});
