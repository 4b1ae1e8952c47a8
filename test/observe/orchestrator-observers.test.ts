/**
 * The observers subscribed to a real orchestrator, its run machine and a fake model: what the unit
 * tests play by hand (states, retries, cancels in pending) is what the orchestrator notifies.
 */
import { readFileSync } from 'node:fs';
import { SpanStatusCode } from '@opentelemetry/api';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
  type ReadableSpan,
} from '@opentelemetry/sdk-trace-node';
import { afterAll, describe, expect, it } from 'vitest';
import { RunstateError } from '../../src/errors.js';
import { createPrometheusMetrics, createRunTracer } from '../../src/observe/index.js';
import { z } from 'zod';
import { createOrchestrator } from '../../src/runtime/create-orchestrator.js';
import { tool, type Tool } from '../../src/index.js';
import { createFakeModel, type FakeModelOptions } from '../../src/testing/index.js';
import { collect } from '../support/collect.js';
import { confirmingTool } from '../support/confirming-tool.js';
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

const publish = confirmingTool();

/** A tool whose call runs until its run is cancelled; `running` resolves once it runs. */
function untilCancelled(name: string) {
  let started = () => {};
  const running = new Promise<void>((resolve) => (started = resolve));
  const held = tool({
    name,
    description: `${name}, runs until cancelled`,
    parameters: z.object({}),
    execute: (_args, { signal }) => {
      started();
      return new Promise((_resolve, reject) =>
        signal.addEventListener('abort', () => reject(new Error(`${name} aborted`)), { once: true }),
      );
    },
  });
  return { tool: held, running };
}

function setup(options: Parameters<typeof createOrchestrator>[0] = {}, modelOptions: FakeModelOptions = {}) {
  exporter.reset();
  const model = createFakeModel(modelOptions);
  // No backoff: the retry starts as soon as the machine schedules it.
  const orchestrator = createOrchestrator({
    limits: { retry: { baseDelayMs: 0, maxDelayMs: 0 } },
    ...options,
  });
  const metrics = createPrometheusMetrics();
  // As createApp subscribes them: neither needs the causes of state changes, so runs go uninspected.
  orchestrator.subscribe(metrics.listener, { causes: false });
  orchestrator.subscribe(createRunTracer({ tracerProvider: provider }).listener, { causes: false });
  const start = (input = 'Tell me a story', tools: Tool[] = [add, broken]) =>
    orchestrator.startRun({ agentId: 'writer', agentName: 'Writer', model, input, tools });
  return { model, orchestrator, metrics, start };
}

/** A chat span's token usage: input and output. */
const tokensOf = (chat: ReadableSpan) => [
  chat.attributes['gen_ai.usage.input_tokens'],
  chat.attributes['gen_ai.usage.output_tokens'],
];

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
    expect(chats.map((chat) => [chat.status, chat.attributes['error.type']])).toEqual([
      [{ code: SpanStatusCode.ERROR, message: 'upstream 503' }, 'MODEL_REQUEST_FAILED'],
      [{ code: SpanStatusCode.UNSET }, undefined],
    ]);
    // The scope names runstate and its version.
    expect(chats[0]!.instrumentationScope).toEqual({
      name: 'runstate',
      version: (
        JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
          version: string;
        }
      ).version,
    });
    expect(chats[1]!.attributes['gen_ai.response.time_to_first_chunk']).toBeGreaterThanOrEqual(0);
  });

  it('see each request’s own token usage on its chat span', async () => {
    const { model, start } = setup();
    const run = start('Add 1 and 2');
    const usage = (input: number, output: number) => ({
      input_tokens: input,
      output_tokens: output,
      total_tokens: input + output,
    });
    (await model.nextCall()).callTools([{ id: 'call_a', name: 'add', arguments: { a: 1, b: 2 } }], {
      usage: usage(5, 3),
    });
    const second = await model.nextCall();
    second.emit('3');
    second.end({ usage: usage(7, 1) });
    expect((await run.result).metrics).toMatchObject({ input_tokens: 12, output_tokens: 4 });

    const chats = exporter.getFinishedSpans().filter((span) => span.name === 'chat fake-model');
    expect(chats.map(tokensOf)).toEqual([
      [5, 3],
      [7, 1],
    ]);
    expect(chats[1]!.attributes['gen_ai.response.time_to_first_chunk']).toBeGreaterThanOrEqual(0);
  });

  it('see a request’s own token usage after an earlier request of the run reported none', async () => {
    const { model, start } = setup();
    const run = start('Add 1 and 2');
    (await model.nextCall()).callTools([{ id: 'call_a', name: 'add', arguments: { a: 1, b: 2 } }]);
    const second = await model.nextCall();
    second.emit('3');
    second.end({ usage: { input_tokens: 10, output_tokens: 7, total_tokens: 17 } });
    // The run's total is unknown (one request did not say), each request's is what it said.
    expect((await run.result).metrics).toMatchObject({ input_tokens: null, output_tokens: null });
    const chats = exporter.getFinishedSpans().filter((span) => span.name === 'chat fake-model');
    expect(chats.map(tokensOf)).toEqual([
      [undefined, undefined],
      [10, 7],
    ]);
  });

  it('see the request that asked for tools once too often end well, and the run fail TOOL_ROUNDS_EXCEEDED', async () => {
    const { model, start } = setup({
      limits: { retry: { baseDelayMs: 0, maxDelayMs: 0 }, maxToolRounds: 0 },
    });
    const run = start('Add 1 and 2');
    (await model.nextCall()).callTools([{ id: 'call_a', name: 'add', arguments: { a: 1, b: 2 } }]);
    expect((await run.result).error?.code).toBe('TOOL_ROUNDS_EXCEEDED');
    const [chat] = exporter.getFinishedSpans().filter((span) => span.name === 'chat fake-model');
    expect(chat!.status.code).toBe(SpanStatusCode.UNSET);
    expect(chat!.attributes['gen_ai.response.finish_reasons']).toEqual(['tool_calls']);
    const [agentSpan] = exporter.getFinishedSpans().filter((span) => span.name.startsWith('invoke_agent'));
    expect(agentSpan!.status.code).toBe(SpanStatusCode.ERROR);
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
    expect(added?.attributes['runstate.tool.status']).toBe('completed');
    const [failed] = spans.filter((span) => span.name === 'execute_tool broken');
    expect(failed?.status.code).toBe(SpanStatusCode.ERROR);
    expect(failed?.attributes['runstate.tool.status']).toBe('failed');

    const text = await metrics.registry.metrics();
    expect(
      sample(text, 'runstate_tool_calls_total', { agent: 'writer', tool: 'add', status: 'completed' }),
    ).toBe(1);
    expect(
      sample(text, 'runstate_tool_calls_total', { agent: 'writer', tool: 'broken', status: 'failed' }),
    ).toBe(1);
  });

  it('see a turn whose calls came whole in its last chunk (no argument deltas) as output: its chat span has a time to first chunk, as the run has a time to first token', async () => {
    const { model, metrics, start } = setup();
    const run = start('Add', [add]);
    (await model.nextCall()).callTools([{ id: 'call_a', name: 'add', arguments: { a: 1, b: 2 } }]);
    (await model.nextCall()).end();
    const output = await run.result;
    expect(output.metrics.time_to_first_token).not.toBeNull();
    expect(
      sample(await metrics.registry.metrics(), 'runstate_time_to_first_token_seconds_count', {
        agent: 'writer',
      }),
    ).toBe(1);
    const [toolTurn] = exporter.getFinishedSpans().filter((span) => span.name === 'chat fake-model');
    expect(toolTurn!.attributes['gen_ai.response.finish_reasons']).toEqual(['tool_calls']);
    expect(toolTurn!.attributes['gen_ai.response.time_to_first_chunk']).toBeGreaterThanOrEqual(0);
  });

  it('see a turn whose calls all name no tool as its own chat span, ended asking for tools, then the next request', async () => {
    const { model, start } = setup();
    const run = start('Add 1 and 2');
    // Refused before it could run: the machine goes from the tools to the next request in one step.
    (await model.nextCall()).callTools([{ id: 'call_x', name: 'nope', arguments: {} }]);
    const second = await model.nextCall();
    second.emit('Sorry');
    second.end();
    expect((await run.result).status).toBe('completed');

    const spans = exporter.getFinishedSpans();
    const chats = spans.filter((span) => span.name === 'chat fake-model');
    expect(chats.map((chat) => chat.attributes['gen_ai.response.finish_reasons'])).toEqual([
      ['tool_calls'],
      ['stop'],
    ]);
    // The second request has its own time to first chunk, from its own start.
    expect(chats[1]!.attributes['gen_ai.response.time_to_first_chunk']).toBeGreaterThanOrEqual(0);
    const [nope] = spans.filter((span) => span.name === 'execute_tool nope');
    expect(nope?.status.code).toBe(SpanStatusCode.ERROR);
  });

  it('see a tool call cancelled with its run (only RunCancelled comes): counted cancelled once, its span an error', async () => {
    const { model, orchestrator, metrics, start } = setup();
    const slow = untilCancelled('slow');
    const run = start('Search slowly', [slow.tool]);
    (await model.nextCall()).callTools([{ id: 'call_s', name: 'slow' }]);
    await slow.running;
    expect(orchestrator.cancelRun(run.runId, 'api')).toBe(true);
    expect((await run.result).tools.map((call) => call.status)).toEqual(['cancelled']);

    const text = await metrics.registry.metrics();
    const labels = { agent: 'writer', tool: 'slow' };
    expect(sample(text, 'runstate_tool_calls_total', { ...labels, status: 'cancelled' })).toBe(1);
    expect(sample(text, 'runstate_tool_calls_total', { ...labels, status: 'failed' })).toBeUndefined();
    const spans = exporter.getFinishedSpans();
    const [call] = spans.filter((span) => span.name === 'execute_tool slow');
    expect([call?.status.code, call?.attributes['error.type']]).toEqual([SpanStatusCode.ERROR, 'cancelled']);
    // The run's cancel is no error: only the call that it cut short is.
    const [agent] = spans.filter((span) => span.name === 'invoke_agent Writer');
    expect(agent?.status.code).toBe(SpanStatusCode.UNSET);
  });

  it('see a paused run cancelled: the calls it waited with are counted cancelled, each with its span', async () => {
    const { model, orchestrator, metrics, start } = setup();
    const run = start('Add, then publish', [add, publish]);
    (await model.nextCall()).callTools([
      { id: 'call_a', name: 'add', arguments: { a: 1, b: 2 } },
      { id: 'call_p', name: 'publish' },
    ]);
    // Its stream ends at RunPaused.
    expect((await collect(run.events())).at(-1)?.event).toBe('RunPaused');
    let text = await metrics.registry.metrics();
    expect(sample(text, 'runstate_runs_active', { state: 'paused' })).toBe(1);
    expect(orchestrator.cancelRun(run.runId, 'api')).toBe(true);
    const output = await orchestrator.result(run.runId);
    expect(output.tools.map((call) => call.status)).toEqual(['cancelled', 'cancelled']);

    text = await metrics.registry.metrics();
    expect(sample(text, 'runstate_runs_active', { state: 'paused' })).toBe(0);
    for (const name of ['add', 'publish']) {
      expect(
        sample(text, 'runstate_tool_calls_total', { agent: 'writer', tool: name, status: 'cancelled' }),
      ).toBe(1);
    }
    // Neither call ever ran; each still has its execute_tool span, an error `cancelled`.
    const spans = exporter.getFinishedSpans().filter((span) => span.name.startsWith('execute_tool'));
    expect(
      spans.map((span) => [span.name, span.attributes['gen_ai.tool.call.id'], span.attributes['error.type']]),
    ).toEqual([
      ['execute_tool add', 'call_a', 'cancelled'],
      ['execute_tool publish', 'call_p', 'cancelled'],
    ]);
  });

  it('see a call a person rejected counted `rejected`', async () => {
    const { model, orchestrator, metrics, start } = setup();
    const run = start('Publish it', [publish]);
    (await model.nextCall()).callTools([{ id: 'call_p', name: 'publish' }]);
    await collect(run.events());
    const agent = { agentId: 'writer', agentName: 'Writer', model, tools: [publish] };
    await orchestrator.continueRun(run.runId, [{ tool_call_id: 'call_p', confirmed: false }], agent);
    (await model.nextCall()).end();
    expect((await orchestrator.result(run.runId)).status).toBe('completed');

    const text = await metrics.registry.metrics();
    const labels = { agent: 'writer', tool: 'publish' };
    expect(sample(text, 'runstate_tool_calls_total', { ...labels, status: 'rejected' })).toBe(1);
    expect(sample(text, 'runstate_tool_calls_total', { ...labels, status: 'cancelled' })).toBeUndefined();
    // In a trace too: no error (a person chose), and told apart from a call that ran.
    const [span] = exporter.getFinishedSpans().filter((span) => span.name === 'execute_tool publish');
    expect(span?.status).toEqual({ code: SpanStatusCode.UNSET });
    expect(span?.attributes['runstate.tool.status']).toBe('rejected');
  });

  it("name an OpenAI model's provider as the GenAI conventions do: openai", async () => {
    const { model, start } = setup({}, { id: 'gpt-5-mini', provider: 'OpenAI' });
    const run = start();
    (await model.nextCall()).end();
    // On the wire it stays Agno's name.
    expect((await run.result).model_provider).toBe('OpenAI');
    const spans = exporter.getFinishedSpans();
    expect(spans.map((span) => [span.name, span.attributes['gen_ai.provider.name']])).toEqual([
      ['chat gpt-5-mini', 'openai'],
      ['invoke_agent Writer', 'openai'],
    ]);
  });
});
