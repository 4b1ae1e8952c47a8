/**
 * The tracer's spans as the active context of what runs inside them: a tool's `execute` and the
 * start of a model request (where an HTTP client instrumentation makes its span), on a real
 * orchestrator with the tracer subscribed as `createApp` subscribes it.
 */
import { context, trace, type Span } from '@opentelemetry/api';
import { type ReadableSpan } from '@opentelemetry/sdk-trace-node';
import { describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { tool, type ChatModel, type RunAround, type RunStep } from '../../src/index.js';
import { createRunTracer } from '../../src/observe/index.js';
import { createOrchestrator } from '../../src/runtime/create-orchestrator.js';
import { createFakeModel } from '../../src/testing/index.js';
import { collect } from '../support/collect.js';
import { useInMemoryTracing } from '../support/in-memory-tracing.js';

const { exporter, provider } = useInMemoryTracing();
const app = provider.getTracer('app');

/** A tool that makes a span, as an HTTP or database client instrumentation would inside it. */
function spanMakingTool(name: string, requiresConfirmation = false) {
  return tool({
    name,
    description: `${name}, makes a span`,
    parameters: z.object({}),
    requiresConfirmation,
    execute: () => {
      app.startSpan(`inside ${name}`).end();
      return 'done';
    },
  });
}

/**
 * A fake model whose `stream` makes a span as it starts, as an HTTP client instrumentation does for
 * the request.
 */
function requestSpanningModel() {
  const fake = createFakeModel({ id: 'gpt-x' });
  const model: ChatModel = {
    ...fake,
    stream(request) {
      app.startSpan('POST /v1/chat/completions').end();
      return fake.stream(request);
    },
  };
  return { fake, model };
}

function setup() {
  exporter.reset();
  const orchestrator = createOrchestrator();
  const tracer = createRunTracer({ tracerProvider: provider });
  orchestrator.subscribe(tracer.listener, { causes: false, around: tracer.around });
  return orchestrator;
}

const named = (name: string) => {
  const found = exporter.getFinishedSpans().filter((span) => span.name === name);
  expect(found.length, name).toBeGreaterThan(0);
  return found;
};
const idOf = (span: ReadableSpan) => span.spanContext().spanId;

describe('the tracer’s spans as the active context', () => {
  it('makes a span created in a tool a child of its execute_tool span, and the model request’s of its chat span', async () => {
    const orchestrator = setup();
    const { fake, model } = requestSpanningModel();
    // The application's span around the run, as an HTTP server instrumentation makes one.
    await app.startActiveSpan('POST /ask', async (request: Span) => {
      const run = orchestrator.startRun({
        agentId: 'helper',
        agentName: 'Helper',
        model,
        input: 'look it up',
        tools: [spanMakingTool('lookup')],
      });
      (await fake.nextCall()).callTools([{ id: 'call_1', name: 'lookup' }]);
      (await fake.nextCall()).end();
      expect((await run.result).status).toBe('completed');
      request.end();
    });

    const [inTool] = named('inside lookup');
    const [executeTool] = named('execute_tool lookup');
    expect(inTool!.parentSpanContext?.spanId).toBe(idOf(executeTool!));
    const chats = named('chat gpt-x');
    const requests = named('POST /v1/chat/completions');
    expect(requests.map((span) => span.parentSpanContext?.spanId)).toEqual(chats.map(idOf));
    // All in the application's trace.
    const [ask] = named('POST /ask');
    for (const span of [inTool!, ...requests])
      expect(span.spanContext().traceId).toBe(ask!.spanContext().traceId);
  });

  it('keeps a confirmed call’s inner span with its execute_tool span when the run continues under another context', async () => {
    const orchestrator = setup();
    const fake = createFakeModel({ id: 'gpt-x' });
    const agent = {
      agentId: 'helper',
      agentName: 'Helper',
      model: fake,
      tools: [spanMakingTool('publish', true)],
    };
    const first = app.startSpan('first request');
    const run = context.with(trace.setSpan(context.active(), first), () =>
      orchestrator.startRun({ ...agent, input: 'publish it' }),
    );
    (await fake.nextCall()).callTools([{ id: 'call_p', name: 'publish' }]);
    expect((await collect(run.events())).at(-1)?.event).toBe('RunPaused');
    first.end();

    // The continue comes in another trace (another HTTP request).
    const second = app.startSpan('continue request');
    const continued = await context.with(trace.setSpan(context.active(), second), () =>
      orchestrator.continueRun(run.runId, [{ tool_call_id: 'call_p', confirmed: true }], agent),
    );
    (await fake.nextCall()).end();
    expect((await continued.result).status).toBe('completed');
    second.end();

    const [inTool] = named('inside publish');
    const [executeTool] = named('execute_tool publish');
    expect(inTool!.parentSpanContext?.spanId).toBe(idOf(executeTool!));
    expect(inTool!.spanContext().traceId).toBe(executeTool!.spanContext().traceId);
  });

  it('lets what a tool throws inside the tracer’s `around` fail that call, as without it, reporting no observer', async () => {
    const orchestrator = setup();
    const throwing = tool({
      name: 'broken',
      description: 'throws at once',
      parameters: z.object({}),
      execute: () => {
        throw new Error('the tool is broken');
      },
    });
    const error = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      const fake = createFakeModel({ id: 'gpt-x' });
      const run = orchestrator.startRun({
        agentId: 'helper',
        agentName: 'Helper',
        model: fake,
        input: 'try it',
        tools: [throwing],
      });
      (await fake.nextCall()).callTools([{ id: 'call_b', name: 'broken' }]);
      (await fake.nextCall()).end();
      const output = await run.result;
      expect(output.status).toBe('completed');
      expect(output.tools.map((call) => [call.status, call.result])).toEqual([
        ['failed', 'Error: the tool is broken'],
      ]);
      expect(error).not.toHaveBeenCalledWith("runstate: a subscriber's around threw", expect.anything());
      expect(named('execute_tool broken')).toHaveLength(1);
    } finally {
      error.mockRestore();
    }
  });

  it('runs the model requests and tool calls as they are when a subscriber’s `around` throws before running them', async () => {
    const orchestrator = createOrchestrator();
    expect(() => orchestrator.subscribe(() => undefined, { around: 5 as never })).toThrow(
      'subscribe: `around` must be a function',
    );
    const steps: RunStep[] = [];
    const failing: RunAround = (step) => {
      steps.push(step);
      throw new Error('around is broken');
    };
    const error = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      orchestrator.subscribe(() => undefined, { causes: false, around: failing });
      const fake = createFakeModel({ id: 'gpt-x' });
      const run = orchestrator.startRun({
        agentId: 'helper',
        agentName: 'Helper',
        model: fake,
        input: 'look it up',
        tools: [spanMakingTool('lookup')],
      });
      (await fake.nextCall()).callTools([{ id: 'call_1', name: 'lookup' }]);
      (await fake.nextCall()).end();
      const output = await run.result;
      expect(output.status).toBe('completed');
      expect(output.tools.map((call) => [call.status, call.result])).toEqual([['completed', 'done']]);
      // Once per model request and once for the tool call.
      expect(steps.map((step) => step.type)).toEqual(['model', 'tool', 'model']);
      expect(error).toHaveBeenCalledWith("runstate: a subscriber's around threw", expect.any(Error));
    } finally {
      error.mockRestore();
    }
  });
});
