import { afterEach, describe, expect, it, vi } from 'vitest';
import type { InspectionEvent } from 'xstate';
import { RunstateError } from '../src/errors.js';
import type { ChatModel, ModelStreamReceiver } from '../src/model/chat-model.js';
import {
  createMemoryCancelBus,
  createMemoryEventBus,
  createMemoryRunStore,
  createOrchestrator,
  type OrchestratorOptions,
  type RunNotice,
} from '../src/runtime/index.js';
import { MAX_DELTAS_PER_CHUNK } from '../src/runtime/model-service.js';
import type { RunEvent, RunOutput } from '../src/runtime/run-events.js';
import { checkRunEvents, createFakeModel, nextTurn, type FakeModel } from '../src/testing/index.js';
import { collect } from './support/collect.js';
import { confirmingTool } from './support/confirming-tool.js';
import { counterIds } from './support/runs.js';

function setup(options: OrchestratorOptions = {}, model: FakeModel = createFakeModel()) {
  const orchestrator = createOrchestrator({ ...options, idGenerator: counterIds() });
  const start = (input = 'hello', extra: { sessionId?: string; limits?: object } = {}) =>
    orchestrator.startRun({ agentId: 'writer', agentName: 'Writer', model, input, ...extra });
  return { orchestrator, model, start };
}

afterEach(() => {
  vi.useRealTimers();
});

/** The `CHUNK`s the run machines get (the model service's actor gets none), through `inspect`. */
function machineChunks(): {
  chunks: { delta: string; reasoning?: string }[];
  inspect: NonNullable<OrchestratorOptions['inspect']>;
} {
  const chunks: { delta: string; reasoning?: string }[] = [];
  const inspect = (event: InspectionEvent): void => {
    if (event.type !== '@xstate.event' || event.event.type !== 'CHUNK') return;
    const { delta, reasoning } = event.event as unknown as { delta: string; reasoning?: string };
    chunks.push(reasoning ? { delta, reasoning } : { delta });
  };
  return { chunks, inspect };
}

/** The text a run's readers got, its `RunContent` deltas joined. */
const streamedText = (events: readonly RunEvent[]): string =>
  events.flatMap((e) => (e.event === 'RunContent' ? [e.content] : [])).join('');

/** Answers the model's next call with `a`, then in a later turn `b`, and ends it. */
async function twoChunksInTwoTurns(model: FakeModel): Promise<void> {
  const call = await model.nextCall();
  call.emit('a');
  await nextTurn();
  call.emit('b');
  call.end();
}

describe('a run that streams to the end', () => {
  it('emits RunStarted, one RunContent per delivery of deltas and RunCompleted with the whole content', async () => {
    const { orchestrator, model, start } = setup();
    const run = start();
    const call = await model.nextCall();
    const reader = run.events()[Symbol.asyncIterator]();
    expect((await reader.next()).value).toMatchObject({ event: 'RunStarted' });
    call.emit('Once ');
    expect((await reader.next()).value).toMatchObject({ event: 'RunContent', content: 'Once ' });
    // Deltas that arrive together (one socket read) go through the machine as one chunk.
    call.emit('upon ');
    call.emit('a time.');
    expect((await reader.next()).value).toMatchObject({ event: 'RunContent', content: 'upon a time.' });
    call.end({ usage: { input_tokens: 3, output_tokens: 3, total_tokens: 6 } });
    expect((await reader.next()).value).toMatchObject({
      event: 'RunCompleted',
      content: 'Once upon a time.',
    });
    expect((await reader.next()).done).toBe(true);
    const events = await collect(run.events());
    checkRunEvents(events, 'completed');
    expect(events.map((e) => e.event)).toEqual(['RunStarted', 'RunContent', 'RunContent', 'RunCompleted']);
    const output = await run.result;
    expect(output).toMatchObject({ status: 'completed', content: 'Once upon a time.', error: null });
    expect(output.metrics).toMatchObject({ input_tokens: 3, output_tokens: 3, total_tokens: 6 });
    expect(output.metrics.time_to_first_token).not.toBeNull();
    expect((await orchestrator.getRun(run.runId))?.status).toBe('completed');
  });

  it('lets a late subscriber replay from any seq and then stop at the terminal event', async () => {
    const { model, start } = setup();
    const run = start();
    const call = await model.nextCall();
    call.emit('a');
    call.emit('b');
    call.end();
    await run.result;
    const all = await collect(run.events());
    const rest = await collect(run.events(2));
    expect(rest).toEqual(all.slice(2));
    expect(await collect(run.events(all.length))).toEqual([]);
  });

  it('gives the same replay and follow through subscribe(runId, seq), live and after the end', async () => {
    const { model, start, orchestrator } = setup();
    const run = start();
    const live = collect(orchestrator.subscribe(run.runId, 1));
    await twoChunksInTwoTurns(model);
    const all = await collect(run.events());
    expect(await live).toEqual(all.slice(1));
    expect(await collect(orchestrator.subscribe(run.runId, 2))).toEqual(all.slice(2));
    expect(await collect(orchestrator.subscribe(run.runId))).toEqual(all);
  });

  it('reads every event in each loop over one iterable: two at once, and one after the other', async () => {
    const { model, start, orchestrator } = setup();
    const run = start();
    const fromHandle = run.events(1);
    const fromEvents = await orchestrator.events(run.runId, 1);
    const fromSubscribe = orchestrator.subscribe(run.runId, 1);
    const iterables = [fromHandle, fromEvents, fromSubscribe];
    const together = iterables.flatMap((events) => [collect(events), collect(events)]);
    await twoChunksInTwoTurns(model);
    const all = await collect(run.events());
    checkRunEvents(all, 'completed');
    for (const events of await Promise.all(together)) expect(events).toEqual(all.slice(1));
    // Once more after the end: replayed.
    for (const events of iterables) expect(await collect(events)).toEqual(all.slice(1));
  });

  it('follows live: a subscriber attached before the chunks sees all of them', async () => {
    const { model, start } = setup();
    const run = start();
    const seen = collect(run.events());
    const call = await model.nextCall();
    call.emit('x');
    call.emit('y');
    call.end();
    checkRunEvents(await seen, 'completed');
  });
});

describe('deltas that arrive together', () => {
  it('go through the machine as one chunk, at most MAX_DELTAS_PER_CHUNK of them', async () => {
    const { model, start } = setup();
    const run = start();
    const call = await model.nextCall();
    for (let i = 0; i < 2 * MAX_DELTAS_PER_CHUNK + 2; i++) call.emit('w ');
    call.end();
    const contents = (await collect(run.events()))
      .filter((event) => event.event === 'RunContent')
      .map((event) => event.content.length / 2);
    expect(contents).toEqual([MAX_DELTAS_PER_CHUNK, MAX_DELTAS_PER_CHUNK, 2]);
    expect((await run.result).content).toBe('w '.repeat(2 * MAX_DELTAS_PER_CHUNK + 2));
  });

  it('reach the run before the error that followed them: a failed run keeps them', async () => {
    const { model, start } = setup();
    const run = start();
    const call = await model.nextCall();
    call.emit('half ');
    call.emit('an answer');
    call.fail(new RunstateError('MODEL_STREAM_INCOMPLETE', 'the body broke'));
    const events = await collect(run.events());
    checkRunEvents(events, 'failed');
    expect(events.map((event) => event.event)).toEqual(['RunStarted', 'RunContent', 'RunError']);
    expect(await run.result).toMatchObject({
      content: 'half an answer',
      error: { code: 'MODEL_STREAM_INCOMPLETE' },
    });
  });

  it('are dropped when a cancel comes first: the cancelled content is what was streamed', async () => {
    const { orchestrator, model, start } = setup();
    const run = start();
    const call = await model.nextCall();
    call.emit('seen');
    await nextTurn();
    call.emit(' unseen');
    expect(orchestrator.cancelRun(run.runId)).toBe(true);
    const events = await collect(run.events());
    checkRunEvents(events, 'cancelled');
    expect(events.at(-1)).toMatchObject({ event: 'RunCancelled', content: 'seen' });
    expect(events.filter((event) => event.event === 'RunContent').map((event) => event.content)).toEqual([
      'seen',
    ]);
  });
});

describe('cancelRun', () => {
  it('cancels a streaming run at once, keeps the partial content and aborts the model signal in the same tick', async () => {
    const { orchestrator, model, start } = setup();
    const run = start();
    const call = await model.nextCall();
    call.emit('partial ');
    await waitForContent(orchestrator, run.runId, 'partial ');
    expect(orchestrator.cancelRun(run.runId, 'api')).toBe(true);
    expect(call.signal.aborted).toBe(true);
    expect((await orchestrator.getRun(run.runId))?.status).toBe('cancelled');
    call.emit('late'); // after the cancel: must never show up
    const events = await collect(run.events());
    checkRunEvents(events, 'cancelled');
    expect(events.at(-1)).toMatchObject({ event: 'RunCancelled', reason: 'api', content: 'partial ' });
    expect((await run.result).cancel_reason).toBe('api');
  });

  it('answers false the second time and emits one RunCancelled', async () => {
    const { orchestrator, model, start } = setup();
    const run = start();
    await model.nextCall();
    expect(orchestrator.cancelRun(run.runId)).toBe(true);
    expect(orchestrator.cancelRun(run.runId)).toBe(false);
    const events = await collect(run.events());
    expect(events.filter((e) => e.event === 'RunCancelled')).toHaveLength(1);
    checkRunEvents(events, 'cancelled');
  });

  it('answers false after completion and leaves the run completed', async () => {
    const { orchestrator, model, start } = setup();
    const run = start();
    const call = await model.nextCall();
    call.emit('done');
    call.end();
    await run.result;
    expect(orchestrator.cancelRun(run.runId)).toBe(false);
    expect((await orchestrator.getRun(run.runId))?.status).toBe('completed');
    checkRunEvents(await collect(run.events()), 'completed');
  });

  it('answers false for an unknown run', () => {
    const { orchestrator } = setup();
    expect(orchestrator.cancelRun('nope')).toBe(false);
  });

  it('cancels a pending run without ever calling the model', async () => {
    const { orchestrator, model, start } = setup({ maxConcurrentRuns: 1 });
    const first = start();
    const second = start();
    expect((await orchestrator.getRun(second.runId))?.status).toBe('pending');
    expect(orchestrator.cancelRun(second.runId)).toBe(true);
    const firstCall = await model.nextCall();
    firstCall.end();
    await first.result;
    expect(model.calls).toHaveLength(1);
    checkRunEvents(await collect(second.events()), 'cancelled');
    expect(orchestrator.activeCount).toBe(0);
  });

  it('racing a completion ends in exactly one terminal state, and the answer says which', async () => {
    const { orchestrator, model, start } = setup();
    // The end is queued first, but the cancel lands before the model service delivers it.
    const run = start();
    const call = await model.nextCall();
    call.emit('a');
    call.end();
    const cancelled = orchestrator.cancelRun(run.runId);
    const output = await run.result;
    expect(output.status).toBe(cancelled ? 'cancelled' : 'completed');
    const events = await collect(run.events());
    checkRunEvents(events, output.status);

    // And the other way round: the completion wins, so the cancel is refused.
    const second = start();
    const secondCall = await model.nextCall();
    secondCall.end();
    await second.result;
    expect(orchestrator.cancelRun(second.runId)).toBe(false);
    checkRunEvents(await collect(second.events()), 'completed');
  });
});

describe('limits', () => {
  it('queues past the concurrency limit and starts the next run when a slot frees up', async () => {
    const { orchestrator, model, start } = setup({ maxConcurrentRuns: 2 });
    const runs = [start('a'), start('b'), start('c')];
    const records = await Promise.all(runs.map((r) => orchestrator.getRun(r.runId)));
    expect(records.map((record) => record?.status)).toEqual(['streaming', 'streaming', 'pending']);
    const first = await model.nextCall();
    first.end();
    await runs[0]!.result;
    expect((await orchestrator.getRun(runs[2]!.runId))?.status).toBe('streaming');
    await model.nextCall(); // b
    const third = await model.nextCall();
    expect(third.messages.at(-1)).toEqual({ role: 'user', content: 'c' });
  });

  it('fails a stalled run with RUN_TIMEOUT after the idle timeout and aborts the model', async () => {
    const { model, start } = setup({ limits: { idleTimeoutMs: 20 } });
    const run = start();
    const call = await model.nextCall();
    const output = await run.result;
    expect(output).toMatchObject({ status: 'failed', error: { code: 'RUN_TIMEOUT' } });
    expect(call.signal.aborted).toBe(true);
    checkRunEvents(await collect(run.events()), 'failed');
  });

  it('restarts the idle timer on every chunk: only a silence of idleTimeoutMs fails the run', async () => {
    // The clock too: the timer, armed once, measures the silence from the last chunk's time.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const { orchestrator, model, start } = setup({ limits: { idleTimeoutMs: 1_000 } });
    const run = start();
    const call = await model.nextCall();
    call.emit('a');
    await vi.advanceTimersByTimeAsync(600);
    call.emit('b');
    await vi.advanceTimersByTimeAsync(600); // 1,200 ms after the first chunk, 600 after the last
    expect((await orchestrator.getRun(run.runId))?.status).toBe('streaming');
    await vi.advanceTimersByTimeAsync(399);
    expect((await orchestrator.getRun(run.runId))?.status).toBe('streaming');
    await vi.advanceTimersByTimeAsync(1);
    expect(await run.result).toMatchObject({
      status: 'failed',
      content: 'ab',
      error: { code: 'RUN_TIMEOUT', message: 'the model sent nothing within the idle timeout' },
    });
  });

  it('counts the silence from the last delta, also one the machine has not been sent yet', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const { orchestrator, model, start } = setup({ limits: { idleTimeoutMs: 1_000 } });
    const run = start();
    const call = await model.nextCall();
    call.emit('a'); // the attempt's first delta: sent to the machine at once
    await vi.advanceTimersByTimeAsync(50);
    call.emit('b'); // within CHUNK_INTERVAL_MS of it: held
    await vi.advanceTimersByTimeAsync(1_049 - 50); // the timer armed at 'a' fires at 1,000 and is armed again
    expect((await orchestrator.getRun(run.runId))?.status).toBe('streaming');
    await vi.advanceTimersByTimeAsync(1); // 1,000 ms after 'b'
    expect(await run.result).toMatchObject({
      status: 'failed',
      content: 'ab',
      error: { code: 'RUN_TIMEOUT' },
    });
  });

  it('sends the machine a paced stream at most every CHUNK_INTERVAL_MS; the events get every read at once', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const { chunks, inspect } = machineChunks();
    const { orchestrator, model, start } = setup({ inspect });
    const run = start();
    const reader = run.events()[Symbol.asyncIterator]();
    await reader.next(); // RunStarted
    const call = await model.nextCall();
    const deltas = Array.from({ length: 250 }, (_, i) => `${i} `);
    for (const delta of deltas) {
      call.emit(delta);
      expect((await reader.next()).value).toMatchObject({ event: 'RunContent', content: delta });
      // What a reader of the run sees is exact while the machine has not been sent the last deltas.
      expect((await orchestrator.getRun(run.runId))?.content).toBe(
        deltas.slice(0, deltas.indexOf(delta) + 1).join(''),
      );
      await vi.advanceTimersByTimeAsync(10);
    }
    call.end();
    expect(await run.result).toMatchObject({ status: 'completed', content: deltas.join('') });
    // The first delta at once, then one CHUNK per second of the 2.5 s stream, then the rest before DONE.
    expect(chunks.map((chunk) => chunk.delta).join('')).toBe(deltas.join(''));
    expect(chunks.length).toBeGreaterThanOrEqual(3);
    expect(chunks.length).toBeLessThanOrEqual(4);
    expect(chunks[0]).toEqual({ delta: '0 ' });
  });

  it('never sends the machine reasoning after content in one CHUNK, however long it held them', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const { chunks, inspect } = machineChunks();
    const { model, start } = setup({ inspect });
    const run = start();
    const call = await model.nextCall();
    call.emit('a');
    await vi.advanceTimersByTimeAsync(10);
    call.emit('b');
    await vi.advanceTimersByTimeAsync(10);
    call.emitReasoning('r');
    await vi.advanceTimersByTimeAsync(10);
    call.emit('c');
    await vi.advanceTimersByTimeAsync(10);
    call.end();
    expect(await run.result).toMatchObject({ content: 'abc', reasoning_content: 'r' });
    expect(chunks).toEqual([{ delta: 'a' }, { delta: 'b' }, { delta: 'c', reasoning: 'r' }]);
  });

  it('gives the machine the deltas it was not sent yet before a cancel, so the output has them all', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const { orchestrator, model, start } = setup();
    const run = start();
    const call = await model.nextCall();
    call.emit('a');
    await vi.advanceTimersByTimeAsync(10);
    call.emit('b');
    call.emit('c');
    await vi.advanceTimersByTimeAsync(0);
    expect(orchestrator.cancelRun(run.runId)).toBe(true);
    const output = await run.result;
    expect(output).toMatchObject({ status: 'cancelled', content: 'abc' });
    const events = await collect(run.events());
    checkRunEvents(events, 'cancelled');
    expect(streamedText(events)).toBe('abc');
    expect(call.signal.aborted).toBe(true);
  });

  it('cancels a run from a listener of its `created` notice: RunStarted, then RunCancelled, and startRun returns', async () => {
    const { orchestrator, model, start } = setup();
    const answers: boolean[] = [];
    orchestrator.subscribe((notice) => {
      if (notice.type === 'created') answers.push(orchestrator.cancelRun(notice.run.run_id, 'api'));
    });
    const run = start();
    expect(answers).toEqual([true]);
    expect(await run.result).toMatchObject({ status: 'cancelled', cancel_reason: 'api' });
    const events = await collect(run.events());
    checkRunEvents(events, 'cancelled');
    expect(events.map((event) => event.event)).toEqual(['RunStarted', 'RunCancelled']);
    expect(model.calls).toHaveLength(0);
  });

  it('gives back the slot of a run a listener cancelled as it started: the next run starts', async () => {
    for (const at of ['created', 'state', 'RunStarted'] as const) {
      const { orchestrator, model, start } = setup({ maxConcurrentRuns: 1 });
      let first = true;
      orchestrator.subscribe((notice) => {
        const cancelNow = notice.type === at || (notice.type === 'event' && notice.event.event === at);
        if (cancelNow && first) {
          first = false;
          orchestrator.cancelRun(notice.type === 'created' ? notice.run.run_id : notice.runId, 'api');
        }
      });
      const doomed = start();
      expect(await doomed.result, at).toMatchObject({ status: 'cancelled' });
      const next = start();
      const call = await model.nextCall();
      call.emit('Hi');
      call.end();
      expect(await next.result, at).toMatchObject({ status: 'completed', content: 'Hi' });
      await orchestrator.shutdown();
    }
  });

  it('ends with the shutdown a paused run whose continue began just before it, however close', async () => {
    // The continue takes the run from the store in a few steps: the shutdown comes at each of them.
    for (let gap = 0; gap < 12; gap++) {
      const { orchestrator, model } = setup({ maxConcurrentRuns: 1 });
      const request = { agentId: 'writer', agentName: 'Writer', model, tools: [confirmingTool()] };
      const paused = orchestrator.startRun({ ...request, input: 'publish' });
      (await model.nextCall()).callTools([{ id: 'c1', name: 'publish' }]);
      expect((await collect(paused.events())).at(-1)?.event).toBe('RunPaused');
      const continued = orchestrator
        .continueRun(paused.runId, [{ tool_call_id: 'c1', confirmed: true }], request)
        .then(
          () => 'continued',
          (error: RunstateError) => error.code,
        );
      for (let i = 0; i < gap; i++) await Promise.resolve();
      await orchestrator.shutdown();
      // Shut down: nothing of it goes on (no request open, no slot), its record final. (Refused,
      // or continued before the shutdown began: then cancelled with it.)
      expect(orchestrator.activeCount, `gap ${gap}`).toBe(0);
      for (const call of model.calls) expect(call.signal.aborted, `gap ${gap}`).toBe(true);
      expect(['SHUTTING_DOWN', 'continued']).toContain(await continued);
      expect(await paused.result, `gap ${gap}`).toMatchObject({
        status: 'cancelled',
        cancel_reason: 'shutdown',
      });
      expect(await orchestrator.getRun(paused.runId)).toMatchObject({ status: 'cancelled' });
    }
  });

  it('admits a run a listener started as another one started after that one: first in, first out', async () => {
    for (const at of ['created', 'RunStarted'] as const) {
      const { orchestrator, model, start } = setup({ maxConcurrentRuns: 1 });
      let nested: ReturnType<typeof start> | undefined;
      let started = false;
      orchestrator.subscribe((notice) => {
        const now = notice.type === at || (notice.type === 'event' && notice.event.event === at);
        if (now && !started) {
          started = true;
          nested = start('second');
        }
      });
      const first = start('first');
      expect(await orchestrator.getRun(nested!.runId), at).toMatchObject({ status: 'pending' });
      const firstCall = await model.nextCall();
      expect(firstCall.messages.at(-1), at).toEqual({ role: 'user', content: 'first' });
      firstCall.end();
      await first.result;
      (await model.nextCall()).end();
      expect(await nested!.result, at).toMatchObject({ status: 'completed' });
      await orchestrator.shutdown();
    }
  });

  it('admits a run a listener started as an earlier one was admitted after the runs created before it', async () => {
    const { orchestrator, model, start } = setup({ maxConcurrentRuns: 1 });
    const started: string[] = [];
    orchestrator.subscribe((notice) => {
      if (notice.type === 'created' && notice.run.run_input === 'A') started.push(start('B').runId);
      if (notice.type === 'state' && notice.status === 'streaming' && started.length === 1)
        started.push(start('C').runId);
    });
    start('A');
    const inputs: unknown[] = [];
    for (let i = 0; i < 3; i++) {
      const call = await model.nextCall();
      inputs.push(call.messages.at(-1)?.content);
      call.end();
    }
    expect(inputs).toEqual(['A', 'B', 'C']);
    await orchestrator.shutdown();
  });

  it('gives back the slot of a paused run a listener cancelled as it continued: the next run starts', async () => {
    const { orchestrator, model, start } = setup({ maxConcurrentRuns: 1 });
    const tools = [confirmingTool()];
    const paused = orchestrator.startRun({
      agentId: 'writer',
      agentName: 'Writer',
      model,
      input: 'publish',
      tools,
    });
    (await model.nextCall()).callTools([{ id: 'c1', name: 'publish' }]);
    expect((await collect(paused.events())).at(-1)?.event).toBe('RunPaused');
    orchestrator.subscribe((notice) => {
      if (notice.type === 'event' && notice.event.event === 'RunContinued')
        orchestrator.cancelRun(notice.runId);
    });
    const request = { agentId: 'writer', agentName: 'Writer', model, tools };
    await orchestrator.continueRun(paused.runId, [{ tool_call_id: 'c1', confirmed: true }], request);
    expect(await paused.result).toMatchObject({ status: 'cancelled' });
    const next = start();
    const call = await model.nextCall();
    call.end();
    expect(await next.result).toMatchObject({ status: 'completed' });
    await orchestrator.shutdown();
  });

  it('shuts down from a listener of a run’s `created` notice: the run is cancelled, and startRun returns', async () => {
    const { orchestrator, start } = setup();
    let shutdown: Promise<void> | undefined;
    orchestrator.subscribe((notice) => {
      if (notice.type === 'created') shutdown ??= orchestrator.shutdown();
    });
    const run = start();
    expect(await run.result).toMatchObject({ status: 'cancelled', cancel_reason: 'shutdown' });
    checkRunEvents(await collect(run.events()), 'cancelled');
    await shutdown;
  });

  it('keeps in the output a delta whose event a listener answered with a cancel in the same call', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const { orchestrator, model, start } = setup();
    orchestrator.subscribe((notice) => {
      if (notice.type === 'event' && notice.event.event === 'RunContent' && notice.event.content === 'b')
        orchestrator.cancelRun(notice.runId);
    });
    const run = start();
    const call = await model.nextCall();
    call.emit('a');
    await vi.advanceTimersByTimeAsync(10);
    call.emit('b'); // held, not sent to the machine yet, when its event is read
    await vi.advanceTimersByTimeAsync(0);
    expect(await run.result).toMatchObject({ status: 'cancelled', content: 'ab' });
    const events = await collect(run.events());
    checkRunEvents(events, 'cancelled');
    expect(streamedText(events)).toBe('ab');
  });

  it('gives the machine the deltas it was not sent yet before a cut stream fails the run', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const { model, start } = setup();
    const run = start();
    const call = await model.nextCall();
    call.emit('a');
    await vi.advanceTimersByTimeAsync(10);
    call.emit('b');
    await vi.advanceTimersByTimeAsync(0);
    call.close(); // no finish reason: the stream was cut
    expect(await run.result).toMatchObject({
      status: 'failed',
      content: 'ab',
      error: { code: 'MODEL_STREAM_INCOMPLETE' },
    });
  });

  it('fails a run past its total time limit even while chunks keep coming', async () => {
    const { model, start } = setup({ limits: { timeoutMs: 30, idleTimeoutMs: 60_000 } });
    const run = start();
    const call = await model.nextCall();
    let chunks = 0;
    const ticker = setInterval(() => call.emit(`${chunks++} `), 2);
    const output = await run.result;
    clearInterval(ticker);
    expect(output.error).toMatchObject({ code: 'RUN_TIMEOUT', message: 'the run exceeded its time limit' });
    // The deltas the machine was not sent yet when its timer fired are in the output too.
    expect(output.content).toBe(streamedText(await collect(run.events())));
  });

  it('keeps a limit past what timers can hold for as long as they can hold, never firing at once', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    // Node fires a setTimeout of more than 2^31 - 1 ms at once; the machine clamps the delay.
    const { orchestrator, model, start } = setup({
      limits: { timeoutMs: 2 ** 40, idleTimeoutMs: 2 ** 40 },
    });
    const run = start();
    await model.nextCall();
    await vi.advanceTimersByTimeAsync(2 ** 31 - 2);
    expect((await orchestrator.getRun(run.runId))?.status).toBe('streaming');
    await vi.advanceTimersByTimeAsync(1);
    expect((await run.result).error).toMatchObject({ code: 'RUN_TIMEOUT' });
  });

  it('keeps finished runs for an hour by default, and times in records are unix seconds', async () => {
    let now = 1_700_000_000_500;
    const model = createFakeModel({ onCall: (call) => call.end() });
    const { orchestrator, start } = setup({ now: () => now }, model);
    const run = start();
    now += 2_000;
    const output = await run.result;
    expect(output).toMatchObject({ created_at: 1_700_000_000, finished_at: 1_700_000_002 });
    expect(output.metrics.duration).toBe(2);
    now += 60 * 60_000;
    expect((await orchestrator.getRun(run.runId))?.status).toBe('completed');
    now += 1;
    expect(await orchestrator.getRun(run.runId)).toBeUndefined();
  });

  it('refuses to follow a run from past its last event', async () => {
    const { orchestrator, start } = setup();
    const run = start();
    await expect(orchestrator.events(run.runId, 2)).rejects.toThrow(/has no event 2 yet \(its last is 1\)/);
    const rest = await orchestrator.events(run.runId, 1); // at the last event: allowed
    orchestrator.cancelRun(run.runId);
    expect((await collect(rest)).map((event) => event.event)).toEqual(['RunCancelled']);
    // Cancelled, and stored so by its owner: past its end there is nothing (a store with leases would
    // give a reader past it the end another instance wrote for a lost owner; this one has none).
    await run.result;
    await expect(orchestrator.events(run.runId, 10)).rejects.toThrow(/has no event 10 \(its last is 2\)$/);
    expect(await collect(await orchestrator.events(run.runId, 2))).toEqual([]);
  });

  it('forgets the oldest finished runs past the retention count', async () => {
    const store = createMemoryRunStore({ retention: { maxFinishedRuns: 2 } });
    const { orchestrator, model, start } = setup({ store });
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const run = start();
      ids.push(run.runId);
      (await model.nextCall()).end();
      await run.result;
    }
    expect(await orchestrator.getRun(ids[0]!)).toBeUndefined();
    expect((await orchestrator.getRun(ids[2]!))?.status).toBe('completed');
    expect(await orchestrator.listRuns()).toHaveLength(2);
    await expect(orchestrator.events(ids[0]!)).rejects.toThrow(RunstateError);
  });

  it('forgets finished runs older than the retention age', async () => {
    let clock = 1_000_000;
    const now = () => clock;
    const store = createMemoryRunStore({ retention: { maxAgeMs: 1_000 }, now });
    const { orchestrator, model, start } = setup({ store, now });
    const run = start();
    (await model.nextCall()).end();
    await run.result;
    expect(await orchestrator.getRun(run.runId)).toBeDefined();
    clock += 5_000;
    expect(await orchestrator.getRun(run.runId)).toBeUndefined();
    expect(await orchestrator.listRuns()).toEqual([]);
  });
});

describe('model failures', () => {
  const retryable = (status: number) =>
    new RunstateError('MODEL_REQUEST_FAILED', `upstream ${status}`, {
      status,
      retryable: true,
      retryAfterMs: 1,
    });

  it('retries a retryable failure before the first chunk, then succeeds', async () => {
    const { model, start } = setup();
    const run = start();
    (await model.nextCall()).fail(retryable(503));
    const second = await model.nextCall();
    second.emit('ok');
    second.end();
    const output = await run.result;
    expect(output).toMatchObject({ status: 'completed', content: 'ok' });
  });

  it('fails after the attempt limit with the last error', async () => {
    const { model, start } = setup({ limits: { retry: { maxAttempts: 2 } } });
    const run = start();
    (await model.nextCall()).fail(retryable(500));
    (await model.nextCall()).fail(retryable(500));
    const output = await run.result;
    expect(output).toMatchObject({ status: 'failed', error: { code: 'MODEL_REQUEST_FAILED', status: 500 } });
    expect(model.calls).toHaveLength(2);
  });

  it("keeps the orchestrator's retry fields a run's retry does not set", async () => {
    const { model, start } = setup({ limits: { retry: { maxAttempts: 1 } } });
    // Only the backoff: the orchestrator's one attempt still holds.
    const run = start('hello', { limits: { retry: { baseDelayMs: 1, maxDelayMs: 2 } } });
    (await model.nextCall()).fail(retryable(500));
    expect(await run.result).toMatchObject({ status: 'failed', error: { status: 500 } });
    expect(model.calls).toHaveLength(1);
  });

  it("refuses a run's backoff base over the orchestrator's cap, or a cap under its base", () => {
    const { start } = setup({ limits: { retry: { baseDelayMs: 100, maxDelayMs: 1_000 } } });
    expect(() => start('hello', { limits: { retry: { baseDelayMs: 5_000 } } })).toThrow(
      expect.objectContaining({
        code: 'INVALID_INPUT',
        message: "limits.retry.baseDelayMs: 5000 is over the orchestrator's limits.retry.maxDelayMs (1000)",
        details: { field: 'limits.retry.baseDelayMs' },
      }) as Error,
    );
    expect(() => start('hello', { limits: { retry: { maxDelayMs: 50 } } })).toThrow(
      expect.objectContaining({ details: { field: 'limits.retry.maxDelayMs' } }) as Error,
    );
  });

  it('refuses a backoff base over the default cap where no side sets a cap', () => {
    const overDefault = expect.objectContaining({
      code: 'INVALID_INPUT',
      message: 'limits.retry.baseDelayMs: 20000 is over the default maxDelayMs (8000)',
      details: { field: 'limits.retry.baseDelayMs' },
    }) as Error;
    expect(() => createOrchestrator({ limits: { retry: { baseDelayMs: 20_000 } } })).toThrow(overDefault);
    const { start } = setup();
    expect(() => start('hello', { limits: { retry: { baseDelayMs: 20_000 } } })).toThrow(overDefault);
    // A cap alone lowers every delay to it; a base under the orchestrator's own cap is fine.
    expect(() => start('hello', { limits: { retry: { maxDelayMs: 50 } } })).not.toThrow();
    const capped = setup({ limits: { retry: { maxDelayMs: 30_000 } } });
    expect(() => capped.start('hello', { limits: { retry: { baseDelayMs: 20_000 } } })).not.toThrow();
  });

  it('does not retry after the first chunk: the partial output would repeat', async () => {
    const { model, start } = setup();
    const run = start();
    const call = await model.nextCall();
    call.emit('half');
    call.fail(retryable(502));
    const output = await run.result;
    expect(output).toMatchObject({ status: 'failed', content: 'half', error: { status: 502 } });
    expect(model.calls).toHaveLength(1);
  });

  it('does not retry a non-retryable failure', async () => {
    const { model, start } = setup();
    const run = start();
    (await model.nextCall()).fail(new RunstateError('MODEL_REQUEST_FAILED', 'bad request', { status: 400 }));
    const events = await collect(run.events());
    checkRunEvents(events, 'failed');
    expect(events.at(-1)).toMatchObject({
      event: 'RunError',
      code: 'MODEL_REQUEST_FAILED',
      content: 'bad request',
    });
  });

  it('fails with MODEL_STREAM_INCOMPLETE when the stream stops without an end', async () => {
    const { model, start } = setup();
    const run = start();
    const call = await model.nextCall();
    call.emit('cut');
    call.close();
    expect(await run.result).toMatchObject({ status: 'failed', error: { code: 'MODEL_STREAM_INCOMPLETE' } });
  });

  it('maps a plain thrown error to MODEL_REQUEST_FAILED', async () => {
    const { model, start } = setup();
    const run = start();
    (await model.nextCall()).fail(new TypeError('boom'));
    expect(await run.result).toMatchObject({
      status: 'failed',
      error: { code: 'MODEL_REQUEST_FAILED', message: 'boom' },
    });
  });
});

describe('sessions', () => {
  it('sends a turn that waited for a slot the turns of its session that ended meanwhile', async () => {
    const { model, start } = setup({ maxConcurrentRuns: 1 });
    const first = start('My name is Ada.', { sessionId: 's-queued' });
    // Sent at once, behind the first: it waits for its slot.
    const second = start('What is my name?', { sessionId: 's-queued' });
    const call = await model.nextCall();
    call.emit('Hello Ada.');
    call.end();
    await first.result;
    const asked = await model.nextCall();
    expect(asked.messages).toEqual([
      { role: 'user', content: 'My name is Ada.' },
      { role: 'assistant', content: 'Hello Ada.' },
      { role: 'user', content: 'What is my name?' },
    ]);
    asked.emit('Ada.');
    asked.end();
    expect(await second.result).toMatchObject({ status: 'completed' });
  });

  it('sends the earlier turns of a session to the model', async () => {
    const { orchestrator, model, start } = setup();
    const first = start('My name is Ada.', { sessionId: 's1' });
    const call = await model.nextCall();
    call.emit('Hello Ada.');
    call.end();
    await first.result;
    start('What is my name?', { sessionId: 's1' });
    const second = await model.nextCall();
    expect(second.messages).toEqual([
      { role: 'user', content: 'My name is Ada.' },
      { role: 'assistant', content: 'Hello Ada.' },
      { role: 'user', content: 'What is my name?' },
    ]);
    expect(await orchestrator.getSession('s1')).toMatchObject({
      session_name: 'My name is Ada.',
      agent_id: 'writer',
    });
    expect((await orchestrator.sessionRuns('s1')).map((r) => r.run_input)).toEqual([
      'My name is Ada.',
      'What is my name?',
    ]);
  });

  it("sends the last maxHistoryRuns runs with an answer (the orchestrator's, or the run's own), none with 0", async () => {
    const { model, start } = setup({ limits: { maxHistoryRuns: 2 } });
    const turn = async (input: string, answer: string | undefined, limits?: object) => {
      const run = start(input, { sessionId: 's1', ...(limits && { limits }) });
      const call = await model.nextCall();
      if (answer === undefined) call.fail(new Error('down'));
      else call.emit(answer);
      call.end();
      await run.result;
      return call.messages;
    };
    await turn('One', 'A1');
    await turn('Two', 'A2');
    // A failed run is no turn: not counted.
    await turn('Broken', undefined);
    const third = await turn('Three', 'A3');
    expect(third).toEqual([
      { role: 'user', content: 'One' },
      { role: 'assistant', content: 'A1' },
      { role: 'user', content: 'Two' },
      { role: 'assistant', content: 'A2' },
      { role: 'user', content: 'Three' },
    ]);
    const fourth = await turn('Four', 'A4');
    expect(fourth.map((message) => message.content)).toEqual(['Two', 'A2', 'Three', 'A3', 'Four']);
    expect((await turn('Five', 'A5', { maxHistoryRuns: 0 })).map((m) => m.content)).toEqual(['Five']);
    expect((await turn('Six', 'A6', { maxHistoryRuns: Infinity })).length).toBe(11);
    expect(() => start('x', { limits: { maxHistoryRuns: -1 } })).toThrow(/maxHistoryRuns/);
  });

  it('sends a turn to the next run of its session started as soon as its terminal event was read', async () => {
    // The first run's final record reaches the store only when the test lets it.
    const memory = createMemoryRunStore();
    let storeFinal!: () => void;
    const finalHeld = new Promise<void>((resolve) => (storeFinal = resolve));
    const store = {
      ...memory,
      finishRun: async (record: RunOutput) => (await finalHeld, memory.finishRun(record)),
    };
    const { model, start } = setup({ store });
    const first = start('My name is Ada.', { sessionId: 's1' });
    const call = await model.nextCall();
    call.emit('Hello Ada.');
    call.end();
    const events = await collect(first.events());
    expect(events.at(-1)?.event).toBe('RunCompleted');
    const second = start('What is my name?', { sessionId: 's1' });
    const asked = model.nextCall();
    storeFinal();
    expect((await asked).messages).toEqual([
      { role: 'user', content: 'My name is Ada.' },
      { role: 'assistant', content: 'Hello Ada.' },
      { role: 'user', content: 'What is my name?' },
    ]);
    (await asked).end();
    await second.result;
  });

  it('lists and remembers only the retained runs of a session: a forgotten run is gone from both', async () => {
    const model = createFakeModel({ onCall: (call) => (call.emit('Hi.'), call.end()) });
    const store = createMemoryRunStore({ retention: { maxFinishedRuns: 1 } });
    const { orchestrator, start } = setup({ store }, model);
    const first = await start('one', { sessionId: 's1' }).result;
    await start('two', { sessionId: 's1' }).result;
    expect(await orchestrator.getRun(first.run_id)).toBeUndefined(); // pushed out by the second
    const runs = await orchestrator.sessionRuns('s1');
    expect(runs).toHaveLength(1);
    expect((await orchestrator.getSession('s1'))?.run_ids).toEqual([runs[0]!.run_id]);
    await start('three', { sessionId: 's1' }).result;
    // The history sent with the third run holds the second turn only.
    expect(model.calls.at(-1)!.messages).toEqual([
      { role: 'user', content: 'two' },
      { role: 'assistant', content: 'Hi.' },
      { role: 'user', content: 'three' },
    ]);
    expect(runs[0]).toMatchObject({
      run_input: 'two',
      status: 'completed',
      agent_name: 'Writer',
      model: 'fake-model',
    });
  });

  it('creates a new session when none is given', async () => {
    const { orchestrator, start } = setup();
    const run = start();
    expect(run.sessionId).toBeTruthy();
    expect((await orchestrator.listSessions()).map((s) => s.session_id)).toEqual([run.sessionId]);
  });

  it('refuses a session of another agent: the store does not record the run, which fails before the model', async () => {
    const { orchestrator, model, start } = setup();
    start('hi', { sessionId: 'shared' });
    const other = orchestrator.startRun({
      agentId: 'other',
      agentName: 'Other',
      model,
      input: 'hi',
      sessionId: 'shared',
    });
    await expect(other.recorded).rejects.toThrow(/belongs to agent writer/);
    expect(await other.result).toMatchObject({ status: 'failed', error: { code: 'INVALID_INPUT' } });
    checkRunEvents(await collect(other.events()), 'failed');
    expect(model.calls).toHaveLength(1);
    expect(await orchestrator.getRun(other.runId)).toBeUndefined();
    expect((await orchestrator.getSession('shared'))?.agent_id).toBe('writer');
  });

  it('deleting a session cancels its active runs and forgets them', async () => {
    const { orchestrator, model, start } = setup();
    const run = start('hi', { sessionId: 's' });
    const call = await model.nextCall();
    expect(await orchestrator.deleteSession('s')).toBe(true);
    expect(call.signal.aborted).toBe(true);
    expect((await run.result).status).toBe('cancelled');
    expect(await orchestrator.getRun(run.runId)).toBeUndefined();
    expect(await orchestrator.deleteSession('s')).toBe(false);
  });
});

describe('shutdown', () => {
  it('cancels every active run with reason shutdown, resolves when all are final, then refuses runs', async () => {
    const { orchestrator, model, start } = setup({ maxConcurrentRuns: 2 });
    const runs = [start(), start(), start()];
    const calls = [await model.nextCall(), await model.nextCall()];
    calls[0]!.emit('some');
    await orchestrator.shutdown();
    for (const run of runs) {
      const events = await collect(run.events());
      checkRunEvents(events, 'cancelled');
      expect(events.at(-1)).toMatchObject({ reason: 'shutdown' });
    }
    expect(calls.every((c) => c.signal.aborted)).toBe(true);
    expect(model.calls).toHaveLength(2);
    expect(orchestrator.activeCount).toBe(0);
    expect(() => start()).toThrow(expect.objectContaining({ code: 'SHUTTING_DOWN' }));
  });

  it('waits 30 s at most for a store that takes no final record (no timeouts of its own), and says so', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const store = createMemoryRunStore();
    const { orchestrator, model, start } = setup({
      store: { ...store, finishRun: () => new Promise<boolean>(() => undefined) },
    });
    const errors = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      const run = start();
      (await model.nextCall()).end();
      // Its readers are not held by the store: the run's end settles after 5 s without it.
      const ended = run.result;
      await vi.advanceTimersByTimeAsync(5_000);
      expect(await ended).toMatchObject({ status: 'completed' });
      await expectShutdownAfter30s(
        orchestrator,
        errors,
        'runstate: shutdown: the run store took no final record of 1 of 1 runs in 30 s; not waiting longer',
      );
    } finally {
      errors.mockRestore();
    }
  });

  it('waits 30 s at most for a store that never answers the take of a paused run a continue asked for', async () => {
    const store = createMemoryRunStore();
    let answering = true;
    const { orchestrator, model } = setup({
      store: {
        ...store,
        // The continue's claim is never answered; the shutdown's own (a memory store's runs are
        // cancelled, not left parked) is.
        claimParked: (...args) => {
          if (answering) return store.claimParked(...args);
          answering = true;
          return new Promise<undefined>(() => undefined);
        },
      },
    });
    const errors = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      const request = { agentId: 'writer', agentName: 'Writer', model, tools: [confirmingTool()] };
      const paused = orchestrator.startRun({ ...request, input: 'publish' });
      (await model.nextCall()).callTools([{ id: 'c1', name: 'publish' }]);
      expect((await collect(paused.events())).at(-1)?.event).toBe('RunPaused');
      answering = false;
      void orchestrator.continueRun(paused.runId, [{ tool_call_id: 'c1', confirmed: true }], request);
      await nextTurn();
      vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
      await expectShutdownAfter30s(
        orchestrator,
        errors,
        'runstate: shutdown: the run store finished no park or take of a paused run in 30 s; not waiting longer',
      );
    } finally {
      errors.mockRestore();
    }
  });
});

/** Shuts `orchestrator` down under fake timers: it resolves at 30 s, not before, having said `said`. */
async function expectShutdownAfter30s(
  orchestrator: ReturnType<typeof createOrchestrator>,
  errors: { mock: { calls: unknown[][] } },
  said: string,
): Promise<void> {
  let over = false;
  const shutdown = orchestrator.shutdown().then(() => (over = true));
  await vi.advanceTimersByTimeAsync(29_999);
  expect(over).toBe(false);
  await vi.advanceTimersByTimeAsync(1);
  await shutdown;
  expect(errors.mock.calls).toContainEqual([said]);
}

async function waitForContent(
  orchestrator: ReturnType<typeof createOrchestrator>,
  runId: string,
  content: string,
): Promise<void> {
  for await (const event of await orchestrator.events(runId)) {
    if (event.event === 'RunContent' && event.content === content) return;
  }
}

describe('subscribe: one source of run lifecycle', () => {
  it('reports created inside startRun, every state and event in order, and finished once after the terminal event', async () => {
    const { orchestrator, model, start } = setup();
    const notices: RunNotice[] = [];
    const unsubscribe = orchestrator.subscribe((notice) => notices.push(notice));
    const run = start('hi');
    // Synchronous: a listener's context (an OpenTelemetry span's parent) is the caller's.
    expect(notices[0]).toMatchObject({ type: 'created', run: { run_id: run.runId, status: 'pending' } });
    const call = await model.nextCall();
    call.emit('Hello');
    await nextTurn();
    call.end();
    const output = await run.result;

    const summary = notices.map((notice) =>
      notice.type === 'state'
        ? `state ${JSON.stringify(notice.value)} (${notice.event.type})`
        : notice.type === 'event'
          ? `event ${notice.event.seq} ${notice.event.event}`
          : notice.type,
    );
    expect(summary).toEqual([
      'created',
      'state "pending" (xstate.init)',
      'event 1 RunStarted',
      'state {"streaming":{"attempt":"requesting"}} (START)',
      'event 2 RunContent',
      'state {"streaming":{"attempt":"receiving"}} (CHUNK)',
      'state "completed" (DONE)',
      'event 3 RunCompleted',
      'finished',
    ]);
    expect(notices.at(-1)).toEqual({ type: 'finished', run: output });
    const events = notices.flatMap((notice) => (notice.type === 'event' ? [notice.event] : []));
    expect(events).toEqual(await collect(run.events()));

    unsubscribe();
    start('again');
    expect(notices.at(-1)).toMatchObject({ type: 'finished' });
  });

  it('leaves causes out, and the runs uninspected, while no listener asks for them; the error is there', async () => {
    const { orchestrator, model, start } = setup({ limits: { retry: { baseDelayMs: 0, maxDelayMs: 0 } } });
    const states = (notices: RunNotice[]) =>
      notices.flatMap((notice) =>
        notice.type === 'state'
          ? [`${JSON.stringify(notice.value)} (${notice.event.type}) ${notice.error?.code ?? '-'}`]
          : [],
      );
    const quiet: RunNotice[] = [];
    orchestrator.subscribe((notice) => quiet.push(notice), { causes: false });
    const run = start();
    (await model.nextCall()).fail(
      new RunstateError('MODEL_REQUEST_FAILED', 'upstream 503', { status: 503, retryable: true }),
    );
    (await model.nextCall()).end();
    expect((await run.result).status).toBe('completed');
    expect(states(quiet)).toEqual([
      '"pending" (unknown) -',
      '{"streaming":{"attempt":"requesting"}} (unknown) -',
      '{"streaming":"retrying"} (unknown) MODEL_REQUEST_FAILED',
      '{"streaming":{"attempt":"requesting"}} (unknown) -',
      '"completed" (unknown) -',
    ]);

    // A listener that wants causes gets them for the runs started while it listens, and only those.
    const curious: RunNotice[] = [];
    const unsubscribe = orchestrator.subscribe((notice) => curious.push(notice));
    const second = start();
    (await model.nextCall()).end();
    await second.result;
    expect(states(curious)).toEqual([
      '"pending" (xstate.init) -',
      '{"streaming":{"attempt":"requesting"}} (START) -',
      '"completed" (DONE) -',
    ]);
    unsubscribe();
    unsubscribe(); // twice: still one subscription gone
    quiet.length = 0;
    const third = start();
    (await model.nextCall()).end();
    await third.result;
    expect(states(quiet)).toEqual([
      '"pending" (unknown) -',
      '{"streaming":{"attempt":"requesting"}} (unknown) -',
      '"completed" (unknown) -',
    ]);
  });

  it('gives a state notice no error but while a retry waits or once the run failed (a cancel while it waited keeps none)', async () => {
    const { orchestrator, model, start } = setup({
      limits: { retry: { baseDelayMs: 60_000, maxDelayMs: 60_000 } },
    });
    const states: string[] = [];
    orchestrator.subscribe((notice) => {
      if (notice.type === 'state')
        states.push(`${JSON.stringify(notice.value)} ${notice.error?.code ?? '-'}`);
    });
    const run = start();
    (await model.nextCall()).fail(
      new RunstateError('MODEL_REQUEST_FAILED', 'upstream 503', { status: 503, retryable: true }),
    );
    await nextTurn();
    orchestrator.cancelRun(run.runId, 'code');
    expect(await run.result).toMatchObject({ status: 'cancelled', error: null });
    expect(states).toEqual([
      '"pending" -',
      '{"streaming":{"attempt":"requesting"}} -',
      '{"streaming":"retrying"} MODEL_REQUEST_FAILED',
      '"cancelled" -',
    ]);
  });

  it('keeps a throwing listener from breaking the run or the other listeners', async () => {
    const error = vi.spyOn(console, 'error').mockImplementation(() => {});
    const { orchestrator, model, start } = setup();
    orchestrator.subscribe(() => {
      throw new Error('listener bug');
    });
    const seen: string[] = [];
    orchestrator.subscribe((notice) => seen.push(notice.type));
    const run = start();
    (await model.nextCall()).end();
    expect((await run.result).status).toBe('completed');
    expect(seen.at(-1)).toBe('finished');
    expect(error).toHaveBeenCalled();
    error.mockRestore();
  });
});

describe('two orchestrators sharing one store and buses, as two instances', () => {
  function instances() {
    const shared = {
      store: createMemoryRunStore(),
      cancelBus: createMemoryCancelBus(),
      eventBus: createMemoryEventBus(),
    };
    const model = createFakeModel();
    const owner = createOrchestrator({ ...shared, idGenerator: counterIds() });
    const other = createOrchestrator(shared);
    const start = (input = 'hello') =>
      owner.startRun({ agentId: 'writer', agentName: 'Writer', model, input });
    return { owner, other, model, start };
  }

  it("deletes a session whose run the other owns once that run's end, RunCancelled api, is in", async () => {
    const { other, model, start } = instances();
    const run = start();
    await run.recorded;
    await model.nextCall();
    let ended = false;
    void run.result.then(() => (ended = true));
    expect(await other.deleteSession(run.sessionId)).toBe(true);
    // Ended before the delete answered, not merely asked to.
    expect(ended).toBe(true);
    expect(await run.result).toMatchObject({ status: 'cancelled', cancel_reason: 'api' });
    expect(await other.getSession(run.sessionId)).toBeUndefined();
  });

  it('follows a run the other owns, from any seq, gap-free, to its terminal event', async () => {
    const { other, model, start } = instances();
    const run = start();
    await run.recorded;
    const call = await model.nextCall();
    call.emit('a');
    await nextTurn(); // stored and published
    const followed = collect(await other.events(run.runId));
    const resumed = collect(await other.events(run.runId, 1));
    call.emit('b');
    await nextTurn();
    call.emit('c');
    call.end();
    const own = await collect(run.events());
    checkRunEvents(own, 'completed');
    expect(await followed).toEqual(own);
    expect(await resumed).toEqual(own.slice(1));
    expect(await other.result(run.runId)).toEqual(await run.result);
    expect(await other.getRun(run.runId)).toEqual(await run.result);
    await expect(other.events(run.runId, own.length + 1)).rejects.toThrow(/has no event/);
  });

  it('follows a run the other owns with many readers at once, and warns of no leak', async () => {
    const { other, model, start } = instances();
    const warnings: Error[] = [];
    const warned = (warning: Error) => warnings.push(warning);
    process.on('warning', warned);
    try {
      const run = start();
      await run.recorded;
      const call = await model.nextCall();
      // Each reader waits for the run's next event on the bus: its listener is on while it waits.
      const readers = Array.from({ length: 20 }, async () => collect(await other.events(run.runId)));
      await nextTurn(); // (the store in memory answers in promise jobs: all of them wait now)
      call.emit('a');
      call.end();
      const own = await collect(run.events());
      for (const read of await Promise.all(readers)) expect(read).toEqual(own);
      expect(warnings.map((warning) => warning.name)).toEqual([]);
    } finally {
      process.off('warning', warned);
    }
  });

  it('cancels a run the other owns: the owner aborts the model, both answer the same', async () => {
    const { owner, other, model, start } = instances();
    const run = start();
    await run.recorded;
    const call = await model.nextCall();
    const answer = await other.requestCancel(run.runId, 'api', { agentId: 'writer' });
    expect(answer).toMatchObject({ run_id: run.runId, status: 'cancelled', cancel_reason: 'api' });
    expect(call.signal.aborted).toBe(true);
    // A repeat is still a 200-like answer, on either instance.
    expect((await other.requestCancel(run.runId)).status).toBe('cancelled');
    expect((await owner.requestCancel(run.runId)).status).toBe('cancelled');
  });

  /**
   * A run streaming on `owner`, and `other` sharing its store and buses, except that each cancel
   * `other` publishes goes through `through` (given the publish to the shared bus).
   */
  async function runWithOtherPublishing(through: (publish: () => Promise<void>) => Promise<void>) {
    const store = createMemoryRunStore();
    const eventBus = createMemoryEventBus();
    const cancelBus = createMemoryCancelBus();
    const owner = createOrchestrator({ store, eventBus, cancelBus });
    const other = createOrchestrator({
      store,
      eventBus,
      cancelBus: {
        ...cancelBus,
        publish: (...args: Parameters<typeof cancelBus.publish>) => through(() => cancelBus.publish(...args)),
      },
    });
    const model = createFakeModel();
    const run = owner.startRun({ agentId: 'writer', agentName: 'Writer', model, input: 'hello' });
    await run.recorded;
    return { owner, other, run, call: await model.nextCall() };
  }

  it('sends a cancel again each second until the owner hears it (its link to the bus was down)', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    // What the other instance publishes reaches the bus, but nobody hears it while `deaf`.
    let deaf = true;
    const { owner, other, run, call } = await runWithOtherPublishing((publish) =>
      deaf ? Promise.resolve() : publish(),
    );

    const answer = other.requestCancel(run.runId, 'api');
    await nextTurn();
    expect(call.signal.aborted).toBe(false);
    deaf = false;
    await vi.advanceTimersByTimeAsync(1_000);
    expect(call.signal.aborted).toBe(true);
    expect(await answer).toMatchObject({ status: 'cancelled', cancel_reason: 'api' });
    await Promise.all([owner.shutdown(), other.shutdown()]);
  });

  it('forgets nothing of a session when the bus cannot reach the owner of its run: a retry deletes it', async () => {
    let down = true;
    const { owner, other, run, call } = await runWithOtherPublishing((publish) =>
      down ? Promise.reject(new RunstateError('STORE_UNAVAILABLE', 'Redis is unavailable')) : publish(),
    );

    await expect(other.deleteSession(run.sessionId)).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    expect(await other.getSession(run.sessionId)).toBeDefined();
    expect(call.signal.aborted).toBe(false);

    down = false;
    expect(await other.deleteSession(run.sessionId)).toBe(true);
    expect(call.signal.aborted).toBe(true);
    expect(await other.getSession(run.sessionId)).toBeUndefined();
    await Promise.all([owner.shutdown(), other.shutdown()]);
  });

  it("tells the owner before it reads the store, and the owner cancels only the named agent's run", async () => {
    const store = createMemoryRunStore();
    const buses = { cancelBus: createMemoryCancelBus(), eventBus: createMemoryEventBus() };
    // The other instance's reads of a run wait until the test lets them through (a database round trip).
    let gate = Promise.resolve();
    const hold = () => {
      let release!: () => void;
      gate = new Promise((resolve) => (release = resolve));
      return release;
    };
    const slowReads = { ...store, getRun: async (runId: string) => (await gate, store.getRun(runId)) };
    const owner = createOrchestrator({ store, ...buses });
    const other = createOrchestrator({ store: slowReads, ...buses });
    const model = createFakeModel();
    const run = owner.startRun({ agentId: 'writer', agentName: 'Writer', model, input: 'hello' });
    await run.recorded;
    const call = await model.nextCall();

    // Another agent's run: the owner leaves it alone, and the answer is a 404.
    let release = hold();
    const refused = other.requestCancel(run.runId, 'api', { agentId: 'critic' });
    await nextTurn();
    expect(call.signal.aborted).toBe(false);
    release();
    await expect(refused).rejects.toMatchObject({ code: 'RUN_NOT_FOUND' });
    expect(call.signal.aborted).toBe(false);

    // Its own: aborted while the read is still on its way.
    release = hold();
    const answer = other.requestCancel(run.runId, 'api', { agentId: 'writer' });
    await nextTurn();
    expect(call.signal.aborted).toBe(true);
    release();
    expect(await answer).toMatchObject({ status: 'cancelled', cancel_reason: 'api' });
  });

  it('answers a cancel of a run paused elsewhere, at its shutdown, that the cancel was sent to the instance that paused it', async () => {
    const store = createMemoryRunStore();
    const buses = { cancelBus: createMemoryCancelBus(), eventBus: createMemoryEventBus() };
    const model = createFakeModel();
    const request = { agentId: 'writer', agentName: 'Writer', model, tools: [confirmingTool()] };
    const parker = createOrchestrator({ store, ...buses });
    const run = parker.startRun({ ...request, input: 'publish it' });
    (await model.nextCall()).callTools([{ id: 'c1', name: 'publish', arguments: {} }]);
    expect((await collect(run.events())).at(-1)?.event).toBe('RunPaused');
    const closing = createOrchestrator({ store, ...buses });
    // Shut down as the cancel reads the store: it takes no run back, but what it sent goes on.
    const answer = closing.requestCancel(run.runId, 'api');
    const shutdown = closing.shutdown();
    await expect(answer).rejects.toMatchObject({
      code: 'SHUTTING_DOWN',
      message: `this instance is shutting down: the cancel of run ${run.runId} was sent, to the instance that paused it, which cancels it if it still runs; ask another instance for its answer`,
    });
    await shutdown;
    expect(await run.result).toMatchObject({ status: 'cancelled', cancel_reason: 'api' });
    await parker.shutdown();
  });

  /**
   * A run paused by an instance that is gone (it hears no cancel; the run waits in the store), an
   * instance whose reads of a run wait until `release` (a database round trip), and one that takes it.
   */
  async function runParkedByGoneInstance() {
    const store = createMemoryRunStore();
    const buses = { cancelBus: createMemoryCancelBus(), eventBus: createMemoryEventBus() };
    const model = createFakeModel();
    const request = { agentId: 'writer', agentName: 'Writer', model, tools: [confirmingTool()] };
    const parker = createOrchestrator({
      store,
      ...buses,
      cancelBus: { ...buses.cancelBus, subscribe: () => Promise.resolve(() => Promise.resolve()) },
    });
    const run = parker.startRun({ ...request, input: 'publish it' });
    (await model.nextCall()).callTools([{ id: 'c1', name: 'publish', arguments: {} }]);
    expect((await collect(run.events())).at(-1)?.event).toBe('RunPaused');
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const canceller = createOrchestrator({
      ...buses,
      store: { ...store, getRun: async (runId: string) => (await gate, store.getRun(runId)) },
    });
    const taker = createOrchestrator({ store, ...buses });
    const shutdown = () => Promise.all([parker.shutdown(), canceller.shutdown(), taker.shutdown()]);
    const takeIt = () => taker.continueRun(run.runId, [{ tool_call_id: 'c1', confirmed: true }], request);
    return { model, runId: run.runId, canceller, taker, release, takeIt, shutdown };
  }

  it('cancels a paused run that another instance takes just after the cancel went by', async () => {
    const { model, runId, canceller, taker, release, takeIt, shutdown } = await runParkedByGoneInstance();
    const answer = canceller.requestCancel(runId, 'api');
    await nextTurn();
    await expect(takeIt()).rejects.toMatchObject({ code: 'RUN_NOT_PAUSED' });
    release();
    expect(await answer).toMatchObject({ status: 'cancelled', cancel_reason: 'api' });
    expect(model.calls).toHaveLength(1);
    checkRunEvents(await collect(await taker.events(runId)), 'cancelled');
    await shutdown();
  });

  it("leaves a paused run taken after a cancel went by for another agent's run of that id", async () => {
    const { model, runId, canceller, taker, release, takeIt, shutdown } = await runParkedByGoneInstance();
    const refused = canceller.requestCancel(runId, 'api', { agentId: 'critic' });
    await nextTurn();
    const continued = await takeIt();
    release();
    await expect(refused).rejects.toMatchObject({ code: 'RUN_NOT_FOUND' });
    const turn = await model.nextCall();
    turn.emit('Done.');
    turn.end();
    expect(await continued.result).toMatchObject({ status: 'completed', content: 'Done.' });
    checkRunEvents(await collect(await taker.events(runId)), 'completed');
    await shutdown();
  });

  it('answers RUN_NOT_FOUND and RUN_ALREADY_FINISHED the same on both', async () => {
    const { owner, other, model, start } = instances();
    const run = start();
    (await model.nextCall()).end();
    await run.result;
    for (const orchestrator of [owner, other]) {
      await expect(orchestrator.requestCancel('nope')).rejects.toMatchObject({ code: 'RUN_NOT_FOUND' });
      await expect(orchestrator.requestCancel(run.runId, 'api', { agentId: 'critic' })).rejects.toMatchObject(
        {
          code: 'RUN_NOT_FOUND',
        },
      );
      await expect(orchestrator.requestCancel(run.runId)).rejects.toMatchObject({
        code: 'RUN_ALREADY_FINISHED',
        details: { run_id: run.runId, status: 'completed' },
      });
    }
  });

  it('lists runs and sessions the same from both', async () => {
    const { owner, other, model, start } = instances();
    const run = start();
    await run.recorded;
    const call = await model.nextCall();
    call.emit('so far');
    await nextTurn();
    // The owner knows the content so far; the other reads what the store has.
    expect((await owner.getRun(run.runId))?.content).toBe('so far');
    expect((await other.getRun(run.runId))?.status).toBe('streaming');
    call.end();
    await run.result;
    expect(await other.listRuns()).toEqual(await owner.listRuns());
    expect(await other.listSessions()).toEqual(await owner.listSessions());
    expect(await other.sessionRuns(run.sessionId)).toEqual([await run.result]);
  });
});

describe('subscribe, for runs that started before anybody listened', () => {
  it('still reports their states and events; the causes are unknown (inspection was off for them)', async () => {
    const { orchestrator, model, start } = setup();
    const run = start();
    const call = await model.nextCall();
    const notices: RunNotice[] = [];
    orchestrator.subscribe((notice) => notices.push(notice));
    call.emit('late');
    await nextTurn();
    call.end();
    await run.result;
    expect(
      notices.map((notice) => (notice.type === 'state' ? `state ${notice.event.type}` : notice.type)),
    ).toEqual(['event', 'state unknown', 'state unknown', 'event', 'finished']);
  });
});

describe('a model with streamTo', () => {
  function pushedModel() {
    const requests: { receiver: ModelStreamReceiver; signal: AbortSignal }[] = [];
    let arrived: (() => void) | undefined;
    const model: ChatModel = {
      id: 'pushed',
      provider: 'test',
      stream: () => {
        throw new Error('a run reads a model with streamTo through it');
      },
      streamTo: (request, receiver) => {
        requests.push({ receiver, signal: request.signal });
        arrived?.();
      },
    };
    const nextRequest = async () => {
      if (requests.length === 0) await new Promise<void>((resolve) => (arrived = resolve));
      return requests.shift()!;
    };
    const orchestrator = createOrchestrator({ idGenerator: counterIds() });
    const start = () => orchestrator.startRun({ agentId: 'writer', agentName: 'Writer', model, input: 'hi' });
    return { orchestrator, start, nextRequest };
  }

  it('is read pushed: each push reaches the run, and the end completes it', async () => {
    const { start, nextRequest } = pushedModel();
    const run = start();
    const { receiver, signal } = await nextRequest();
    receiver.chunk({ type: 'delta', content: 'a' });
    await nextTurn();
    receiver.chunk({ type: 'delta', content: 'b' });
    receiver.chunk({ type: 'end', finishReason: 'stop' });
    receiver.close();
    // What still comes after the end is ignored.
    receiver.chunk({ type: 'delta', content: 'late' });
    receiver.close(new Error('late'));

    const events = await collect(run.events());
    checkRunEvents(events, 'completed');
    expect(events.filter((event) => event.event === 'RunContent').map((event) => event.content)).toEqual([
      'a',
      'b',
    ]);
    expect(await run.result).toMatchObject({ status: 'completed', content: 'ab' });
    // The run is over: its request is let go of.
    expect(signal.aborted).toBe(true);
  });

  it('fails the run with the error close() brings, after the deltas before it', async () => {
    const { start, nextRequest } = pushedModel();
    const run = start();
    const { receiver } = await nextRequest();
    receiver.chunk({ type: 'delta', content: 'half' });
    receiver.close(new RunstateError('MODEL_STREAM_INCOMPLETE', 'the body broke'));

    expect(await run.result).toMatchObject({
      status: 'failed',
      content: 'half',
      error: { code: 'MODEL_STREAM_INCOMPLETE', message: 'the body broke' },
    });
  });

  it('fails the run MODEL_STREAM_INCOMPLETE when close() comes without an end', async () => {
    const { start, nextRequest } = pushedModel();
    const run = start();
    const { receiver } = await nextRequest();
    receiver.chunk({ type: 'delta', content: 'half' });
    receiver.close();

    expect(await run.result).toMatchObject({ status: 'failed', error: { code: 'MODEL_STREAM_INCOMPLETE' } });
  });

  it('aborts the signal at once on a cancel, and drops what is pushed after it', async () => {
    const { orchestrator, start, nextRequest } = pushedModel();
    const run = start();
    const { receiver, signal } = await nextRequest();
    receiver.chunk({ type: 'delta', content: 'seen' });
    await nextTurn();

    expect(orchestrator.cancelRun(run.runId)).toBe(true);
    expect(signal.aborted).toBe(true);
    receiver.chunk({ type: 'delta', content: ' unseen' });
    receiver.close();
    expect(await run.result).toMatchObject({ status: 'cancelled', content: 'seen' });
  });
});

describe('a store that refuses a run', () => {
  it('fails it INTERNAL with a message of its own: the store’s text goes to the log, not to the run’s readers', async () => {
    const memory = createMemoryRunStore();
    const secret = 'permission denied for table runstate_runs (role app_rw, password hunter2)';
    const store = { ...memory, createRun: () => Promise.reject(new Error(secret)) };
    const logged = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      const { start, model } = setup({ store });
      const run = start();
      await expect(run.recorded).rejects.toThrow(secret);
      const events = await collect(run.events());
      checkRunEvents(events, 'failed');
      expect(events.at(-1)).toMatchObject({ event: 'RunError', code: 'INTERNAL' });
      expect(JSON.stringify(events)).not.toContain('hunter2');
      expect(JSON.stringify(await run.result)).not.toContain('hunter2');
      expect(model.calls).toHaveLength(0);
      expect(logged.mock.calls.some((call) => call.some((arg) => String(arg).includes('hunter2')))).toBe(
        true,
      );
    } finally {
      logged.mockRestore();
    }
  });
});

describe('an inspect observer that throws', () => {
  /** An observer that throws at its `at`-th call (every call from there on with `always`). */
  function throwingAt(at: number, always = false) {
    let calls = 0;
    return (_event: InspectionEvent): void => {
      calls += 1;
      if (calls === at || (always && calls > at)) throw new Error(`observer broke at call ${calls}`);
    };
  }

  it('has no say in a run: whichever of its calls throws, the run ends once, the model is let go, shutdown resolves', async () => {
    const errors = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    /** A run of two chunks with `inspect`; how many times it was called. */
    const play = async (inspect: (event: InspectionEvent) => void) => {
      let calls = 0;
      const { orchestrator, model, start } = setup({
        inspect: (event) => {
          calls += 1;
          inspect(event);
        },
      });
      const run = start();
      const events = collect(run.events());
      const call = await model.nextCall();
      call.emit('Hello');
      call.emit(' world');
      call.end();
      expect(await run.result).toMatchObject({ status: 'completed', content: 'Hello world' });
      checkRunEvents(await events, 'completed');
      expect(call.signal.aborted).toBe(true);
      await orchestrator.shutdown();
      return calls;
    };
    const calls = await play(() => undefined);
    // From the run actor's creation, its start and START, to its CHUNKs and its end.
    expect(calls).toBeGreaterThan(10);
    for (let at = 1; at <= calls; at++) await play(throwingAt(at));
    // Reported once per orchestrator, whatever it throws after.
    expect(errors).toHaveBeenCalledTimes(calls);
    expect(String(errors.mock.calls[0]![0])).toContain('the inspect observer threw');
    errors.mockRestore();
  });

  it('throwing at every call, as an observer object: a cancel still cancels, at once, and reports once', async () => {
    const errors = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    const next = throwingAt(1, true);
    const { orchestrator, model, start } = setup({ inspect: { next } });
    const run = start();
    const events = collect(run.events());
    const call = await model.nextCall();
    call.emit('Hello');
    await nextTurn();
    expect(orchestrator.cancelRun(run.runId, 'code')).toBe(true);
    expect(call.signal.aborted).toBe(true);
    expect(await run.result).toMatchObject({ status: 'cancelled', content: 'Hello' });
    checkRunEvents(await events, 'cancelled');
    // A run that was pending at shutdown ends too.
    const second = start();
    await orchestrator.shutdown();
    expect(await second.result).toMatchObject({ status: 'cancelled', cancel_reason: 'shutdown' });
    expect(errors).toHaveBeenCalledTimes(1);
    errors.mockRestore();
  });
});
