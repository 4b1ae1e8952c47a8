import { afterEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { createOrchestrator } from '../../src/runtime/create-orchestrator.js';
import { createMemoryRunStore } from '../../src/runtime/memory-run-store.js';
import type { RunEvent } from '../../src/runtime/run-events.js';
import type { RunListener, RunNotice } from '../../src/runtime/storage.js';
import {
  createFakeModel,
  nextTurn,
  type FakeModel,
  type FakeModelCall,
} from '../../src/testing/fake-model.js';
import { createInspector, type FeedMessage, type InspectorOptions } from '../../src/inspect/index.js';
import { OfflineModel } from '../../src/model/offline-model.js';
import { tool } from '../../src/tools/tool.js';
import { playRun } from '../support/notices.js';
import { collect } from '../support/collect.js';
import { confirmingTool } from '../support/confirming-tool.js';

function setup(options: InspectorOptions = {}) {
  const model = createFakeModel();
  const inspector = createInspector(options);
  const orchestrator = createOrchestrator();
  inspector.attach(orchestrator);
  const start = (input = 'Tell me a story') =>
    orchestrator.startRun({ agentId: 'writer', agentName: 'Writer', model, input });
  return { model, inspector, orchestrator, start };
}

/** Records feed messages; `until` resolves when one matches, without polling. */
function record(subscribe: (listener: (message: FeedMessage) => void) => () => void) {
  const messages: FeedMessage[] = [];
  let waiters: Array<{ test: (message: FeedMessage) => boolean; resolve: (message: FeedMessage) => void }> =
    [];
  const unsubscribe = subscribe((message) => {
    messages.push(message);
    const ready = waiters.filter((waiter) => waiter.test(message));
    waiters = waiters.filter((waiter) => !ready.includes(waiter));
    for (const waiter of ready) waiter.resolve(message);
  });
  return {
    messages,
    unsubscribe,
    until(test: (message: FeedMessage) => boolean): Promise<FeedMessage> {
      const found = messages.find(test);
      if (found) return Promise.resolve(found);
      return new Promise((resolve) => waiters.push({ test, resolve }));
    },
  };
}

/** An inspector attached to notices the test plays itself (as another instance's runs would come). */
function attachToNotices() {
  const inspector = createInspector();
  let notify!: RunListener;
  inspector.attach({
    subscribe: (listener) => {
      notify = listener;
      return () => undefined;
    },
    requestCancel: () => Promise.reject(new Error('not used')),
  });
  return { inspector, listener: (notice: RunNotice) => notify(notice) };
}

const statusIs = (runId: string, status: string) => (message: FeedMessage) =>
  message.type === 'runs' && message.runs.some((run) => run.run_id === runId && run.status === status);

/** Waits until the run's log holds `count` RunContent events: the machine took every chunk. */
async function contentEvents(events: AsyncIterable<RunEvent>, count: number): Promise<void> {
  let seen = 0;
  for await (const event of events) if (event.event === 'RunContent' && ++seen === count) return;
}

/** Emits each chunk in a turn of its own, so that each is one CHUNK of the machine. */
async function emitApart(call: FakeModelCall, words: string[]): Promise<void> {
  for (const word of words) {
    call.emit(word);
    await nextTurn();
  }
}

async function emitAll(model: FakeModel, events: AsyncIterable<RunEvent>, chunks: number) {
  const call = await model.nextCall();
  await emitApart(call, Array<string>(chunks).fill('word '));
  await contentEvents(events, chunks);
  return call;
}

afterEach(() => {
  vi.useRealTimers();
});

describe('createInspector: the feed', () => {
  it('holds chunk progress for a flush interval past what a timer holds (Infinity): never sent every millisecond', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const warned = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    try {
      for (const flushIntervalMs of [Infinity, 3e9]) {
        const { model, inspector, start } = setup({ flushIntervalMs });
        const feed = record((listener) => inspector.subscribe(listener));
        const run = start();
        const call = await emitAll(model, run.events(), 3);
        vi.advanceTimersByTime(60_000);
        expect(feed.messages.filter((m) => m.type === 'progress')).toEqual([]);
        call.end();
        await run.result;
        // A state change still goes out at once, with the counts.
        expect(await feed.until(statusIs(run.runId, 'completed'))).toMatchObject({
          runs: [{ run_id: run.runId, chunks: 3 }],
        });
      }
      expect(warned).not.toHaveBeenCalled();
    } finally {
      warned.mockRestore();
    }
  });

  it('sends state changes, never chunks one by one: 1,000 chunks make no message until the flush', async () => {
    // Only the flush timer is faked: state changes go out on setImmediate, chunk progress waits for it.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const { model, inspector, start } = setup({ flushIntervalMs: 100 });
    const feed = record((listener) => inspector.subscribe(listener));
    const run = start();
    const call = await emitAll(model, run.events(), 1);
    await feed.until((m) => m.type === 'runs' && m.runs[0]!.chunks === 1);
    await emitApart(call, Array<string>(999).fill('word '));
    await contentEvents(run.events(), 1000);
    await nextTurn(); // a state change would have gone out by now

    const ofType = (type: FeedMessage['type']) => feed.messages.filter((m) => m.type === type);
    // pending → requesting → receiving: at most one message per state change, none per chunk.
    expect(ofType('runs').length).toBeLessThanOrEqual(3);
    expect(ofType('runs').at(-1)).toMatchObject({
      runs: [{ run_id: run.runId, status: 'streaming', value: { streaming: { attempt: 'receiving' } } }],
    });
    expect(ofType('progress')).toEqual([]);

    vi.advanceTimersByTime(100); // the chunk flush: one message with the counts
    expect(ofType('progress')).toEqual([
      { type: 'progress', runs: [{ run_id: run.runId, chunks: 1000, content_length: 5000 }] },
    ]);
    const runsMessages = () => ofType('runs');
    const before = runsMessages().length;

    call.end();
    await run.result;
    await feed.until(statusIs(run.runId, 'completed'));
    expect(runsMessages().length).toBe(before + 1);
    const final = runsMessages().at(-1);
    expect(final?.type === 'runs' && final.runs[0]!.finished_at).toBeGreaterThanOrEqual(
      final?.type === 'runs' ? final.runs[0]!.created_at : 0,
    );
    expect(runsMessages().at(-1)).toMatchObject({
      runs: [
        {
          run_id: run.runId,
          agent_id: 'writer',
          agent_name: 'Writer',
          run_input: 'Tell me a story',
          model: 'fake-model',
          status: 'completed',
          value: 'completed',
          chunks: 1000,
          error: null,
          cancel_reason: null,
        },
      ],
    });
  });

  it('starts every subscription with a snapshot of the runs and the cancel URL of the page', async () => {
    const { inspector, start, model } = setup();
    const first = start('first');
    await model.nextCall();
    const feed = record((listener) => inspector.subscribe(listener));
    expect(feed.messages[0]).toEqual({
      type: 'snapshot',
      runs: [expect.objectContaining({ run_id: first.runId, run_input: 'first', status: 'streaming' })],
      cancel_url: '../agents/{agent_id}/runs/{run_id}/cancel',
    });
    const own = createInspector({ cancelRoute: 'inspector' });
    const ownFeed = record((listener) => own.subscribe(listener));
    expect(ownFeed.messages[0]).toMatchObject({ cancel_url: 'runs/{run_id}/cancel' });
  });

  it('lists a long input cut to 200 characters, between two characters, and a short one whole', async () => {
    const { inspector, start, model } = setup();
    const long = start(`${'x'.repeat(198)}🇫🇷 and the rest`);
    // 200 characters, 400 code units, and 200 letters: not cut, no ellipsis.
    const emoji = start('🐉'.repeat(200));
    const letters = start('x'.repeat(200));
    await model.nextCall();
    await model.nextCall();
    await model.nextCall();
    const feed = record((listener) => inspector.subscribe(listener));
    const runs = feed.messages[0]!.type === 'snapshot' ? feed.messages[0]!.runs : [];
    const inputOf = (runId: string) => runs.find((run) => run.run_id === runId)?.run_input;
    // The flag would be the 199th and 200th code points: left out whole, then the ellipsis.
    expect(inputOf(long.runId)).toBe(`${'x'.repeat(198)}…`);
    expect(inputOf(emoji.runId)).toBe('🐉'.repeat(200));
    expect(inputOf(letters.runId)).toBe('x'.repeat(200));
  });

  it('gives a follower of one run its content and log, then what they add, in order', async () => {
    const { model, inspector, orchestrator, start } = setup({ flushIntervalMs: 5 });
    const run = start();
    const call = await model.nextCall();
    call.emit('Once ');
    await contentEvents(run.events(), 1);
    const feed = record((listener) => inspector.subscribe(listener, { runId: run.runId }));
    const detail = feed.messages[1];
    expect(detail).toMatchObject({ type: 'detail', run_id: run.runId, found: true, content: 'Once ' });
    await emitApart(call, ['upon ', 'a ', 'time']);
    await contentEvents(run.events(), 4);
    orchestrator.cancelRun(run.runId, 'api');
    await feed.until((m) => m.type === 'append' && m.log.some((entry) => entry.kind === 'end'));

    let content = detail?.type === 'detail' ? detail.content : '';
    const log = detail?.type === 'detail' ? [...detail.log] : [];
    for (const message of feed.messages) {
      if (message.type !== 'append') continue;
      expect(message.offset).toBe(content.length);
      content += message.content;
      log.push(...message.log);
    }
    expect(content).toBe('Once upon a time');
    expect(log.map((entry) => `${entry.kind} ${entry.text}`)).toEqual([
      'state pending',
      'event START',
      'state streaming.attempt.requesting',
      'chunks RunContent ×1',
      'event CHUNK',
      'state streaming.attempt.receiving',
      'chunks RunContent ×3',
      'event CANCEL',
      'state cancelled',
      'end cancelled (reason: api)',
    ]);
    expect(log.find((entry) => entry.text === 'CANCEL')?.detail).toBe('{"reason":"api"}');
  });

  it('logs the next request after a turn whose tool calls all failed their checks, and counts it', async () => {
    const { inspector, model, start } = setup();
    const run = start();
    // The call names no tool: the machine goes through the tools to the next request in one step.
    (await model.nextCall()).callTools([{ id: 'call_x', name: 'nope', arguments: {} }]);
    const second = await model.nextCall();
    second.emit('Sorry');
    second.end();
    await run.result;

    const detail = record((listener) => inspector.subscribe(listener, { runId: run.runId })).messages[1];
    const log = detail?.type === 'detail' ? detail.log.map((entry) => `${entry.kind} ${entry.text}`) : [];
    expect(log.filter((line) => line === 'state streaming.attempt.requesting')).toHaveLength(2);
    expect(log).toContain('event DONE');
    expect(inspector.listRuns()).toMatchObject([{ run_id: run.runId, status: 'completed', attempt: 2 }]);
  });

  it('logs the CHUNK that moves a turn of tool calls to `receiving`: its deltas are no RunContent', async () => {
    const inspector = createInspector();
    const orchestrator = createOrchestrator();
    inspector.attach(orchestrator);
    const add = tool({
      name: 'add',
      description: 'Adds two numbers.',
      parameters: z.object({ a: z.number(), b: z.number() }),
      execute: ({ a, b }) => ({ sum: a + b }),
    });
    const run = orchestrator.startRun({
      agentId: 'calc',
      agentName: 'Calc',
      model: new OfflineModel({ tokensPerSecond: Infinity }),
      input: 'add 2 and 3',
      tools: [add],
    });
    await run.result;

    const detail = record((listener) => inspector.subscribe(listener, { runId: run.runId })).messages[1];
    const log = detail?.type === 'detail' ? detail.log.map((entry) => `${entry.kind} ${entry.text}`) : [];
    // The first turn: its calls streamed, no text.
    expect(log.slice(0, 6)).toEqual([
      'state pending',
      'event START',
      'state streaming.attempt.requesting',
      'event CHUNK',
      'state streaming.attempt.receiving',
      'event DONE',
    ]);
  });

  it('logs a paused run once in `paused` when it is taken back from its park and cancelled', async () => {
    const model = createFakeModel();
    const inspector = createInspector();
    const orchestrator = createOrchestrator();
    inspector.attach(orchestrator);
    const run = orchestrator.startRun({
      agentId: 'writer',
      agentName: 'Writer',
      model,
      input: 'publish it',
      tools: [confirmingTool()],
    });
    (await model.nextCall()).callTools([{ id: 'c1', name: 'publish' }]);
    expect((await collect(run.events())).at(-1)?.event).toBe('RunPaused');
    await orchestrator.requestCancel(run.runId);

    const detail = record((listener) => inspector.subscribe(listener, { runId: run.runId })).messages[1];
    const log = detail?.type === 'detail' ? detail.log.map((entry) => `${entry.kind} ${entry.text}`) : [];
    expect(log.filter((line) => line === 'state paused')).toEqual(['state paused']);
    expect(log.slice(-3)).toEqual(['event CANCEL', 'state cancelled', 'end cancelled (reason: api)']);
  });

  it('answers a follower of a run it does not know yet, then sends the run once it starts', async () => {
    const { inspector, model } = setup({ flushIntervalMs: 5 });
    const feed = record((listener) => inspector.subscribe(listener, { runId: 'later' }));
    expect(feed.messages[1]).toEqual({ type: 'detail', run_id: 'later', found: false, content: '', log: [] });
    const orchestrator = createOrchestrator({ idGenerator: () => 'later' });
    inspector.attach(orchestrator);
    const run = orchestrator.startRun({ agentId: 'a', agentName: 'A', model, input: 'x' });
    (await model.nextCall()).emit('hello');
    await contentEvents(run.events(), 1);
    await feed.until((m) => m.type === 'append' && m.content === 'hello');
  });

  it('keeps at most maxLogEntries log lines of a run, the final one always among them', async () => {
    const { inspector, model, start, orchestrator } = setup({ maxLogEntries: 5 });
    const feed = record((listener) => inspector.subscribe(listener));
    const run = start();
    await emitApart(await model.nextCall(), ['Once ', 'upon ', 'a ', 'time']);
    await contentEvents(run.events(), 4);
    orchestrator.cancelRun(run.runId, 'api');
    await feed.until(statusIs(run.runId, 'cancelled'));

    const detail = record((listener) => inspector.subscribe(listener, { runId: run.runId })).messages[1];
    expect(detail?.type === 'detail' && detail.log.map((entry) => `${entry.kind} ${entry.text}`)).toEqual([
      'state pending',
      'event START',
      'state streaming.attempt.requesting',
      'chunks RunContent ×4',
      'end cancelled (reason: api)',
    ]);
  });

  it('follows an orchestrator attached twice once (agents that share it), until its last detach', async () => {
    const { inspector, model, start, orchestrator } = setup();
    const detachSecond = inspector.attach(orchestrator);
    const run = start();
    await emitApart(await model.nextCall(), ['Hello', ' world']);
    await contentEvents(run.events(), 2);
    orchestrator.cancelRun(run.runId, 'api');
    await collect(run.events());
    const detail = record((listener) => inspector.subscribe(listener, { runId: run.runId })).messages[1];
    expect(detail).toMatchObject({ type: 'detail', content: 'Hello world' });
    const log = detail?.type === 'detail' ? detail.log.map((entry) => `${entry.kind} ${entry.text}`) : [];
    expect(log.filter((line) => line === 'event START')).toHaveLength(1);
    expect(inspector.listRuns()).toMatchObject([
      { run_id: run.runId, status: 'cancelled', chunks: 2, attempt: 1 },
    ]);

    detachSecond();
    detachSecond(); // a detach called twice counts once
    expect(inspector.listRuns()).toHaveLength(1);
    const next = start('Again');
    (await model.nextCall()).emit('Hi');
    await contentEvents(next.events(), 1);
    expect(inspector.listRuns().map((summary) => summary.run_id)).toEqual([run.runId, next.runId]);
  });

  it('shows the runs already going when it is attached, from their state and content then', async () => {
    const model = createFakeModel();
    const orchestrator = createOrchestrator();
    const run = orchestrator.startRun({ agentId: 'writer', agentName: 'Writer', model, input: 'x' });
    const call = await model.nextCall();
    await emitApart(call, ['Once ', 'upon']);
    await contentEvents(run.events(), 2);

    // Attached a minute later: the run was created then, not at the attach.
    const inspector = createInspector({ now: () => Date.now() + 60_000 });
    inspector.attach(orchestrator);
    const createdAt = (await orchestrator.getRun(run.runId))!.created_at * 1000;
    expect(inspector.listRuns()).toMatchObject([
      {
        run_id: run.runId,
        status: 'streaming',
        value: { streaming: { attempt: 'receiving' } },
        content_length: 9,
        created_at: createdAt,
        attempt: 1,
      },
    ]);
    call.emit(' a time');
    call.end();
    await run.result;
    expect(inspector.listRuns()).toMatchObject([
      { run_id: run.runId, status: 'completed', content_length: 16 },
    ]);
  });

  it('keeps a bounded number of finished runs and tells the page which it dropped', async () => {
    const { inspector, start, orchestrator } = setup({ maxFinishedRuns: 2 });
    const feed = record((listener) => inspector.subscribe(listener));
    const ids = [start('1'), start('2'), start('3')].map((run) => run.runId);
    for (const id of ids) orchestrator.cancelRun(id, 'code');
    await feed.until((m) => m.type === 'removed');
    expect(feed.messages.find((m) => m.type === 'removed')).toEqual({ type: 'removed', run_ids: [ids[0]] });
    expect(inspector.listRuns().map((run) => run.run_id)).toEqual(ids.slice(1));
  });

  it('drops a paused run that another instance took (a `left` notice), and tells the page', async () => {
    const { inspector, listener } = attachToNotices();
    const feed = record((subscriber) => inspector.subscribe(subscriber));
    const run = playRun(listener);
    run.state('paused');
    await feed.until(statusIs(run.record.run_id, 'paused'));
    listener({ type: 'left', runId: run.record.run_id });
    await feed.until((m) => m.type === 'removed');
    expect(feed.messages.at(-1)).toEqual({ type: 'removed', run_ids: [run.record.run_id] });
    expect(inspector.listRuns()).toEqual([]);
  });

  it('shows a run taken here from the store (a `taken` notice) from where it was paused', () => {
    const { inspector, listener } = attachToNotices();
    let here = false;
    const run = playRun((notice) => here && listener(notice));
    here = true;
    listener({ type: 'taken', run: { ...run.record, status: 'paused' } });
    run.state('paused');
    expect(inspector.listRuns()).toMatchObject([{ run_id: run.record.run_id, status: 'paused' }]);
    run.request();
    run.complete();
    expect(inspector.listRuns()).toMatchObject([{ run_id: run.record.run_id, status: 'completed' }]);
  });

  it('reports a failed run with its error code', async () => {
    const { inspector, start, model } = setup();
    const run = start();
    (await model.nextCall()).close(); // a stream with no finish reason
    await run.result;
    expect(inspector.listRuns()[0]).toMatchObject({
      status: 'failed',
      error: { code: 'MODEL_STREAM_INCOMPLETE' },
    });
  });

  it('reports a machine that threw as failed, as the orchestrator ends it', async () => {
    let broken = false;
    // The machine reads the clock when the first chunk arrives: breaking it makes the machine throw.
    const clock = () => {
      if (!broken) return Date.now();
      broken = false;
      throw new Error('clock broke');
    };
    const inspector = createInspector();
    // The store keeps its own clock: only the machine's breaks.
    const orchestrator = createOrchestrator({ now: clock, store: createMemoryRunStore() });
    inspector.attach(orchestrator);
    const model = createFakeModel();
    const run = orchestrator.startRun({ agentId: 'a', agentName: 'A', model, input: 'x' });
    const call = await model.nextCall();
    broken = true;
    call.emit('boom');
    await run.result;
    expect(inspector.listRuns()).toEqual([
      expect.objectContaining({
        run_id: run.runId,
        status: 'failed',
        error: { code: 'INTERNAL', message: 'clock broke' },
      }),
    ]);
    expect(inspector.listRuns()[0]!.finished_at).not.toBeNull();
  });

  it('shows only the orchestrators it is attached to, and drops a listener that throws', async () => {
    const error = vi.spyOn(console, 'error').mockImplementation(() => {});
    const { inspector, start } = setup();
    const other = createOrchestrator();
    other.startRun({ agentId: 'a', agentName: 'A', model: createFakeModel(), input: 'elsewhere' });
    expect(inspector.listRuns()).toEqual([]);

    const calls: string[] = [];
    inspector.subscribe(() => {
      calls.push('x');
      throw new Error('listener bug');
    });
    const feed = record((listener) => inspector.subscribe(listener));
    const run = start();
    await feed.until((m) => m.type === 'runs' && m.runs.some((r) => r.run_id === run.runId));
    expect(calls).toEqual(['x']);
    expect(error).toHaveBeenCalledTimes(1);
    error.mockRestore();
    await other.shutdown();
  });

  it('stops following an orchestrator it was detached from, and drops its runs (they would stay active for good)', () => {
    const inspector = createInspector();
    const orchestrator = createOrchestrator();
    const kept = createOrchestrator();
    const detach = inspector.attach(orchestrator);
    inspector.attach(kept);
    orchestrator.startRun({ agentId: 'a', agentName: 'A', model: createFakeModel(), input: 'x' });
    const other = kept.startRun({ agentId: 'b', agentName: 'B', model: createFakeModel(), input: 'z' });
    expect(inspector.listRuns()).toHaveLength(2);
    detach();
    orchestrator.startRun({ agentId: 'a', agentName: 'A', model: createFakeModel(), input: 'y' });
    expect(inspector.listRuns()).toEqual([
      expect.objectContaining({ run_id: other.runId, status: 'streaming' }),
    ]);
  });
});
