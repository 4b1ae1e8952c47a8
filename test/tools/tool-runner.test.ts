import { afterEach, describe, expect, it, vi } from 'vitest';
import { assign, createActor, setup } from 'xstate';
import { z } from 'zod';
import type { ToolRunnerEvent, ToolRunnerInput } from '../../machines/run-types.js';
import { tool, type Tool, type ToolExecuteContext } from '../../src/index.js';
import { createToolRunner, MAX_TOOL_RESULT_CHARS, type ToolRun } from '../../src/runtime/tool-runner.js';
import { nextTurn } from '../../src/testing/index.js';

/** A promise with its resolve and reject, so a test decides when a tool returns. */
function deferred<T = unknown>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

/** A tool whose calls the test holds and releases, recording each call's arguments and context. */
function heldTool(name: string, options: { timeoutMs?: number } = {}) {
  const calls: { args: { n: number }; context: ToolExecuteContext; result: ReturnType<typeof deferred> }[] =
    [];
  const held = tool({
    name,
    description: 'held by the test',
    parameters: z.object({ n: z.number().default(7) }),
    execute: (args, context) => {
      const result = deferred();
      calls.push({ args, context, result });
      return result.promise;
    },
    ...options,
  });
  return { tool: held, calls };
}

/** Runs the tool runner as a child of a small machine, as the run machine does; `STOP` leaves its state. */
function startRunner(tools: Tool[], calls: ToolRunnerInput['calls'], options: Partial<ToolRun> = {}) {
  const controller = new AbortController();
  const run: ToolRun = {
    tools: new Map(tools.map((t) => [t.name, t])),
    sessionId: 's1',
    maxConcurrentTools: 8,
    runSignal: controller.signal,
    ...options,
  };
  const parent = setup({
    types: { context: {} as { events: ToolRunnerEvent[] }, events: {} as ToolRunnerEvent | { type: 'STOP' } },
    actors: { tools: createToolRunner((runId) => (runId === 'r1' ? run : undefined)) },
  }).createMachine({
    context: { events: [] },
    initial: 'running',
    states: {
      running: {
        invoke: { src: 'tools', input: { runId: 'r1', calls } },
        on: {
          TOOL_STARTED: { actions: assign({ events: ({ context, event }) => [...context.events, event] }) },
          TOOL_DONE: { actions: assign({ events: ({ context, event }) => [...context.events, event] }) },
          STOP: 'stopped',
        },
      },
      stopped: {},
    },
  });
  const actor = createActor(parent).start();
  return { actor, controller, events: () => actor.getSnapshot().context.events };
}

const call = (id: string, name: string, args = '{}') => ({ id, name, arguments: args });

afterEach(() => {
  vi.useRealTimers();
});

describe('the tool runner', () => {
  it('runs each call with its parsed arguments and context, and reports its result as text', async () => {
    const held = heldTool('held');
    const json = tool({
      name: 'json',
      description: '',
      parameters: z.object({}),
      execute: () => ({ ok: true }),
    });
    const runner = startRunner(
      [held.tool, json],
      [call('c1', 'held', '{"n":3}'), call('c2', 'held'), call('c3', 'json')],
    );
    await nextTurn();
    expect(held.calls.map(({ args }) => args)).toEqual([{ n: 3 }, { n: 7 }]);
    expect(held.calls[0]?.context).toMatchObject({ toolCallId: 'c1', runId: 'r1', sessionId: 's1' });
    held.calls[0]?.result.resolve('three');
    held.calls[1]?.result.resolve(undefined);
    await nextTurn();
    const done = runner.events().filter((e) => e.type === 'TOOL_DONE');
    expect(done).toEqual(
      expect.arrayContaining([
        { type: 'TOOL_DONE', toolCallId: 'c1', result: 'three', error: false },
        { type: 'TOOL_DONE', toolCallId: 'c2', result: '', error: false },
        { type: 'TOOL_DONE', toolCallId: 'c3', result: '{"ok":true}', error: false },
      ]),
    );
    expect(runner.events().filter((e) => e.type === 'TOOL_STARTED')).toHaveLength(3);
  });

  it('turns a throw or a rejection into an error for the model', async () => {
    const sync = tool({
      name: 'sync',
      description: '',
      parameters: z.object({}),
      execute: () => {
        throw new Error('disk full');
      },
    });
    const held = heldTool('held');
    const runner = startRunner([sync, held.tool], [call('c1', 'sync'), call('c2', 'held')]);
    await nextTurn();
    held.calls[0]?.result.reject('not an Error');
    await nextTurn();
    expect(runner.events().filter((e) => e.type === 'TOOL_DONE')).toEqual([
      { type: 'TOOL_DONE', toolCallId: 'c1', result: 'Error: disk full', error: true },
      { type: 'TOOL_DONE', toolCallId: 'c2', result: 'Error: not an Error', error: true },
    ]);
  });

  it(`tells the model a result over ${MAX_TOOL_RESULT_CHARS} characters is too long, instead of sending it`, async () => {
    const held = heldTool('held');
    const runner = startRunner([held.tool], [call('c1', 'held'), call('c2', 'held')]);
    await nextTurn();
    held.calls[0]?.result.resolve('x'.repeat(MAX_TOOL_RESULT_CHARS));
    held.calls[1]?.result.resolve({ text: 'x'.repeat(MAX_TOOL_RESULT_CHARS) });
    await nextTurn();
    const done = runner.events().filter((e) => e.type === 'TOOL_DONE');
    expect(done.map((e) => [e.toolCallId, e.result.length, e.error])).toEqual([
      ['c1', MAX_TOOL_RESULT_CHARS, false],
      ['c2', expect.any(Number), true],
    ]);
    expect(done[1]?.result).toBe(
      `Error: the result of held is ${MAX_TOOL_RESULT_CHARS + 11} characters, over the limit of ${MAX_TOOL_RESULT_CHARS}`,
    );
  });

  it('runs at most maxConcurrentTools calls at once and starts the next as one ends', async () => {
    const held = heldTool('held');
    const calls = ['c1', 'c2', 'c3', 'c4', 'c5'].map((id) => call(id, 'held'));
    const runner = startRunner([held.tool], calls, { maxConcurrentTools: 2 });
    await nextTurn();
    expect(held.calls.map(({ context }) => context.toolCallId)).toEqual(['c1', 'c2']);
    held.calls[1]?.result.resolve('two');
    await nextTurn();
    expect(held.calls.map(({ context }) => context.toolCallId)).toEqual(['c1', 'c2', 'c3']);
    for (const c of held.calls) c.result.resolve('ok');
    await nextTurn();
    for (const c of held.calls) c.result.resolve('ok');
    await nextTurn();
    expect(held.calls).toHaveLength(5);
    expect(runner.events().filter((e) => e.type === 'TOOL_DONE')).toHaveLength(5);
  });

  it('aborts a call past its timeout, tells the model, frees the slot and drops the late result', async () => {
    vi.useFakeTimers();
    const slow = heldTool('slow', { timeoutMs: 50 });
    const runner = startRunner([slow.tool], [call('c1', 'slow'), call('c2', 'slow')], {
      maxConcurrentTools: 1,
    });
    await nextTurn();
    const first = slow.calls[0]!;
    vi.advanceTimersByTime(50);
    expect(first.context.signal.aborted).toBe(true);
    expect((first.context.signal.reason as DOMException).name).toBe('TimeoutError');
    expect(runner.events().at(-1)).toEqual({
      type: 'TOOL_DONE',
      toolCallId: 'c1',
      result: 'Error: slow timed out after 50 ms',
      error: true,
    });
    await nextTurn();
    expect(slow.calls).toHaveLength(2); // the slot went to the next call
    first.result.resolve('too late');
    slow.calls[1]?.result.resolve('in time');
    await nextTurn();
    const done = runner.events().filter((e) => e.type === 'TOOL_DONE');
    expect(done.map((e) => e.type === 'TOOL_DONE' && e.result)).toEqual([
      'Error: slow timed out after 50 ms',
      'in time',
    ]);
  });

  it('aborts every running call in the same tick when stopped, starts no other, and drops late results', async () => {
    const held = heldTool('held');
    const runner = startRunner(
      [held.tool],
      ['c1', 'c2', 'c3'].map((id) => call(id, 'held')),
      {
        maxConcurrentTools: 2,
      },
    );
    await nextTurn();
    runner.actor.send({ type: 'STOP' });
    expect(held.calls.map(({ context }) => context.signal.aborted)).toEqual([true, true]);
    // A tool that ignores its signal still returns: nobody hears it, and the waiting call never starts.
    for (const c of held.calls) c.result.resolve('late');
    await nextTurn();
    expect(held.calls).toHaveLength(2);
    expect(runner.events().filter((e) => e.type === 'TOOL_DONE')).toEqual([]);
  });

  it('stops when the run signal aborts, even if the machine kept it running', async () => {
    const held = heldTool('held');
    const runner = startRunner([held.tool], [call('c1', 'held')]);
    await nextTurn();
    runner.controller.abort();
    expect(held.calls[0]?.context.signal.aborted).toBe(true);
    held.calls[0]?.result.resolve('late');
    await nextTurn();
    expect(runner.events().filter((e) => e.type === 'TOOL_DONE')).toEqual([]);
  });

  it('never starts a call cancelled in the tick it was invoked', async () => {
    const held = heldTool('held');
    const runner = startRunner([held.tool], [call('c1', 'held')]);
    runner.actor.send({ type: 'STOP' });
    await nextTurn();
    expect(held.calls).toEqual([]);
  });

  it('answers every call with an error for a run it does not know', () => {
    const parent = setup({
      types: { context: {} as { events: ToolRunnerEvent[] }, events: {} as ToolRunnerEvent },
      actors: { tools: createToolRunner(() => undefined) },
    }).createMachine({
      context: { events: [] },
      invoke: { src: 'tools', input: { runId: 'gone', calls: [call('c1', 'x')] } },
      on: { TOOL_DONE: { actions: assign({ events: ({ context, event }) => [...context.events, event] }) } },
    });
    const actor = createActor(parent).start();
    expect(actor.getSnapshot().context.events).toEqual([
      { type: 'TOOL_DONE', toolCallId: 'c1', result: 'Error: the run is gone', error: true },
    ]);
  });
});
