import { afterEach, describe, expect, it, vi } from 'vitest';
import { RunstateError } from '../src/errors.js';
import { createOrchestrator, type RunEvent } from '../src/runtime/index.js';
import { checkRunEvents, createFakeModel, nextTurn } from '../src/testing/index.js';
import { collect } from './support/collect.js';

function setup(limits: { idleTimeoutMs?: number } = {}) {
  let n = 0;
  const model = createFakeModel();
  const orchestrator = createOrchestrator({ idGenerator: () => `id-${++n}`, limits });
  const start = () =>
    orchestrator.startRun({ agentId: 'thinker', agentName: 'Thinker', model, input: 'Why?' });
  return { orchestrator, model, start };
}

/** The events without the fields every event carries, to compare whole sequences. */
function bodies(events: RunEvent[]) {
  return events.map(
    ({ run_id: _r, agent_id: _a, agent_name: _n, session_id: _s, created_at: _c, seq: _q, ...body }) => body,
  );
}

afterEach(() => {
  vi.useRealTimers();
});

describe('a reasoning model', () => {
  it('streams its reasoning between ReasoningStarted and ReasoningCompleted, then the answer', async () => {
    const { orchestrator, model, start } = setup();
    const run = start();
    const call = await model.nextCall();
    call.emitReasoning('The user asks why.\n');
    await nextTurn();
    expect(await orchestrator.getRun(run.runId)).toMatchObject({
      status: 'streaming',
      content: '',
      reasoning_content: 'The user asks why.\n',
      reasoning_steps: [{ title: 'The user asks why.', reasoning: 'The user asks why.\n' }],
      extra_data: { reasoning_steps: [{ title: 'The user asks why.', reasoning: 'The user asks why.\n' }] },
      finish_reason: null,
    });
    call.emitReasoning('Because.');
    await nextTurn();
    call.emit('Because');
    await nextTurn();
    call.emit(' it is.');
    call.end({ finishReason: 'stop' });
    const output = await run.result;
    const events = await collect(run.events());
    checkRunEvents(events, 'completed');
    const steps = [{ title: 'The user asks why.', reasoning: 'The user asks why.\nBecause.' }];
    expect(bodies(events).slice(1)).toEqual([
      { event: 'ReasoningStarted' },
      { event: 'RunContent', content: '', reasoning_content: 'The user asks why.\n' },
      { event: 'RunContent', content: '', reasoning_content: 'Because.' },
      {
        event: 'ReasoningCompleted',
        // Agno's client reads the steps in `content` (`ReasoningSteps`), the Agent UI in `extra_data`.
        content: { reasoning_steps: steps },
        content_type: 'ReasoningSteps',
        reasoning_content: 'The user asks why.\nBecause.',
        extra_data: { reasoning_steps: steps },
      },
      { event: 'RunContent', content: 'Because' },
      { event: 'RunContent', content: ' it is.' },
      {
        event: 'RunCompleted',
        content: 'Because it is.',
        reasoning_content: 'The user asks why.\nBecause.',
        finish_reason: 'stop',
        status: 'completed',
        metrics: output.metrics,
        tools: [],
        reasoning_steps: steps,
        extra_data: { reasoning_steps: steps },
      },
    ]);
    expect(output).toMatchObject({
      input: { input_content: 'Why?' },
      content: 'Because it is.',
      reasoning_content: 'The user asks why.\nBecause.',
      finish_reason: 'stop',
      reasoning_steps: steps,
      extra_data: { reasoning_steps: steps },
    });
    // The reasoning was the first output.
    expect(output.metrics.time_to_first_token).not.toBeNull();
    expect(await orchestrator.getRun(run.runId)).toEqual(output);
  });

  it('keeps reasoning and content in order when one read brings both, interleaved', async () => {
    const { model, start } = setup();
    const run = start();
    const call = await model.nextCall();
    // One turn of the event loop: the model service merges what it can without reordering.
    call.emitReasoning('a1 ');
    call.emitReasoning('a2');
    call.emit('b');
    call.emitReasoning('c');
    call.emit('d');
    call.end({ finishReason: 'stop' });
    const output = await run.result;
    const events = await collect(run.events());
    checkRunEvents(events, 'completed');
    const sequence = bodies(events)
      .slice(1, -1)
      .map((e) =>
        'reasoning_content' in e
          ? `${e.event}(${e.reasoning_content})`
          : e.event === 'RunContent'
            ? e.content
            : e.event,
      );
    expect(sequence).toEqual([
      'ReasoningStarted',
      'RunContent(a1 a2)',
      'ReasoningCompleted(a1 a2)',
      'b',
      'ReasoningStarted',
      'RunContent(c)',
      'ReasoningCompleted(c)',
      'd',
    ]);
    expect(output.reasoning_content).toBe('a1 a2c');
    expect(output.extra_data?.reasoning_steps.map((step) => step.reasoning)).toEqual(['a1 a2', 'c']);
  });

  it('stays alive while it reasons for longer than the idle timeout, with shorter gaps', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const { orchestrator, model, start } = setup({ idleTimeoutMs: 1_000 });
    const run = start();
    const call = await model.nextCall();
    for (let i = 0; i < 5; i++) {
      await vi.advanceTimersByTimeAsync(900);
      call.emitReasoning(`step ${i}. `);
    }
    // 4.5 s of reasoning in all, never a second of silence.
    await vi.advanceTimersByTimeAsync(900);
    expect((await orchestrator.getRun(run.runId))?.status).toBe('streaming');
    call.emit('Done.');
    call.end({ finishReason: 'stop' });
    expect(await run.result).toMatchObject({ status: 'completed', content: 'Done.' });
  });

  it('closes an open reasoning phase before the terminal event of a run cancelled while it reasons', async () => {
    const { orchestrator, model, start } = setup();
    const run = start();
    const call = await model.nextCall();
    call.emitReasoning('Hmm');
    await nextTurn();
    orchestrator.cancelRun(run.runId, 'api');
    const events = await collect(run.events());
    checkRunEvents(events, 'cancelled');
    expect(events.map((e) => e.event)).toEqual([
      'RunStarted',
      'ReasoningStarted',
      'RunContent',
      'ReasoningCompleted',
      'RunCancelled',
    ]);
    expect(await run.result).toMatchObject({
      status: 'cancelled',
      content: '',
      reasoning_content: 'Hmm',
      finish_reason: null,
      extra_data: { reasoning_steps: [{ title: 'Hmm', reasoning: 'Hmm' }] },
    });
  });

  it.each(['ReasoningStarted', 'ReasoningCompleted'])(
    'keeps every event of a read whole when a listener cancels the run at its %s',
    async (at) => {
      const { orchestrator, model, start } = setup();
      orchestrator.subscribe((notice) => {
        if (notice.type === 'event' && notice.event.event === at) orchestrator.cancelRun(notice.runId);
      });
      const run = start();
      const call = await model.nextCall();
      call.emit('A');
      await nextTurn();
      call.emitReasoning('think');
      await nextTurn();
      call.emit('B');
      const events = await collect(run.events());
      // The read's other events come before the end, and the end holds what they streamed.
      checkRunEvents(events, 'cancelled');
      expect(await run.result).toMatchObject({
        status: 'cancelled',
        cancel_reason: 'code',
        reasoning_content: 'think',
      });
    },
  );

  it('is not retried after its reasoning was delivered', async () => {
    const { model, start } = setup();
    const run = start();
    const call = await model.nextCall();
    call.emitReasoning('Thinking');
    await nextTurn();
    call.fail(new RunstateError('MODEL_REQUEST_FAILED', 'upstream 503', { status: 503, retryable: true }));
    const output = await run.result;
    expect(output).toMatchObject({ status: 'failed', reasoning_content: 'Thinking' });
    expect(output.error).toMatchObject({ code: 'MODEL_REQUEST_FAILED', status: 503 });
    expect(model.calls).toHaveLength(1);
  });
});

describe('a run of a model that reports no usage', () => {
  it('has unknown (null) token counts, not zero', async () => {
    const { model, start } = setup();
    const run = start();
    const call = await model.nextCall();
    call.emit('Hi');
    call.end({ finishReason: 'length' });
    const output = await run.result;
    expect(output).toMatchObject({ status: 'completed', finish_reason: 'length' });
    expect(output.metrics).toMatchObject({ input_tokens: null, output_tokens: null, total_tokens: null });
    const events = await collect(run.events());
    expect(events.at(-1)).toMatchObject({ event: 'RunCompleted', finish_reason: 'length' });
  });
});
