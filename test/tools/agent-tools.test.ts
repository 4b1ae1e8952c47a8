/**
 * Tools through the Agent and the orchestrator, with the controllable fake model: a round of calls
 * and what the next request carries, calls that never run, a cancel while tools run (also a tool
 * that ignores its signal), timeouts, throws, the rounds limit, the concurrency limit, and pausing
 * for a person.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import {
  Agent,
  createMemoryEventBus,
  createMemoryRunStore,
  createOrchestrator,
  RunstateError,
  tool,
  type RunEvent,
  type ToolExecuteContext,
} from '../../src/index.js';
import { checkRunEvents, createFakeModel, nextTurn, type FakeModelCall } from '../../src/testing/index.js';
import { collect } from '../support/collect.js';
import { confirmingTool } from '../support/confirming-tool.js';

/** A promise with its resolve, so a test decides when a tool returns. */
function deferred<T = unknown>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((res) => (resolve = res));
  return { promise, resolve };
}

/** A tool whose calls the test holds: each call waits for `release` (or ignores its signal). */
function heldTool(name: string, options: { timeoutMs?: number; requiresConfirmation?: boolean } = {}) {
  const calls: {
    args: Record<string, unknown>;
    context: ToolExecuteContext;
    release: (value: unknown) => void;
  }[] = [];
  const waiters: Array<() => void> = [];
  const held = tool({
    name,
    description: `${name}, held by the test`,
    parameters: z.object({ q: z.string().optional() }),
    execute: (args, context) => {
      const { promise, resolve } = deferred();
      calls.push({ args, context, release: resolve });
      for (const wake of waiters.splice(0)) wake();
      return promise;
    },
    ...options,
  });
  return {
    tool: held,
    calls,
    /** Resolves once `count` calls have started. */
    async started(count = 1) {
      while (calls.length < count) await new Promise<void>((resolve) => waiters.push(resolve));
      return calls[count - 1]!;
    },
  };
}

const add = tool({
  name: 'add',
  description: 'Adds two numbers',
  parameters: z.object({ a: z.number(), b: z.number() }),
  execute: ({ a, b }) => ({ sum: a + b }),
});

function setup(tools: Parameters<typeof tool>[0][] | ReturnType<typeof tool>[], agentOptions = {}) {
  const model = createFakeModel();
  const orchestrator = createOrchestrator();
  const agent = new Agent({
    name: 'Tooler',
    model,
    orchestrator,
    tools: tools as ReturnType<typeof tool>[],
    ...agentOptions,
  });
  return { model, orchestrator, agent };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('a run with tools', () => {
  it('sums the usage of the turns, and reports it unknown (null) when a turn had none', async () => {
    const { model, agent } = setup([add]);
    const usage = { input_tokens: 100, output_tokens: 20, total_tokens: 120 };
    const known = agent.run('add 1 and 2');
    (await model.nextCall()).callTools([{ id: 'c1', name: 'add', arguments: { a: 1, b: 2 } }], { usage });
    const answer = await model.nextCall();
    answer.emit('3.');
    answer.end({ usage });
    expect((await known).metrics).toMatchObject({ input_tokens: 200, output_tokens: 40, total_tokens: 240 });

    // The answer's server sent no usage: the run's total is not the first turn's alone.
    const unknown = agent.run('add 1 and 2');
    (await model.nextCall()).callTools([{ id: 'c1', name: 'add', arguments: { a: 1, b: 2 } }], { usage });
    const silent = await model.nextCall();
    silent.emit('3.');
    silent.end();
    expect((await unknown).metrics).toMatchObject({
      input_tokens: null,
      output_tokens: null,
      total_tokens: null,
    });
  });

  it('refuses an agent with two tools of one name when it is made, not at each run', () => {
    const other = tool({ ...add, execute: () => 0 });
    expect(() => new Agent({ name: 'Twice', tools: [add, other] })).toThrow(
      new RunstateError('INVALID_INPUT', 'two tools of agent twice have the same name'),
    );
  });

  it('runs the calls of a turn and sends the assistant turn and one tool message per call, ids matching', async () => {
    const lookup = heldTool('lookup');
    const { model, agent } = setup([add, lookup.tool]);
    const run = agent.run('Add 1 and 2, and look up foxes', { stream: true });
    const first = await model.nextCall();
    expect(first.tools.map((t) => t.name)).toEqual(['add', 'lookup']);
    expect(first.tools[0]?.parameters).toMatchObject({ type: 'object', required: ['a', 'b'] });
    first.emit('Working on it. ');
    first.callTools([
      { id: 'call_a', name: 'add', arguments: { a: 1, b: 2 } },
      { id: 'call_b', name: 'lookup', arguments: { q: 'foxes' } },
    ]);
    (await lookup.started()).release('Foxes are canids.');
    const second = await model.nextCall();
    expect(second.messages).toEqual([
      { role: 'user', content: 'Add 1 and 2, and look up foxes' },
      {
        role: 'assistant',
        content: 'Working on it. ',
        tool_calls: [
          { id: 'call_a', type: 'function', function: { name: 'add', arguments: '{"a":1,"b":2}' } },
          { id: 'call_b', type: 'function', function: { name: 'lookup', arguments: '{"q":"foxes"}' } },
        ],
      },
      { role: 'tool', tool_call_id: 'call_a', content: '{"sum":3}' },
      { role: 'tool', tool_call_id: 'call_b', content: 'Foxes are canids.' },
    ]);
    second.emit('3, and foxes are canids.');
    second.end();
    const events = await collect(run);
    checkRunEvents(events, 'completed');
    expect(events.map((e) => e.event)).toEqual([
      'RunStarted',
      'RunContent',
      'ToolCallStarted',
      'ToolCallStarted',
      'ToolCallCompleted',
      'ToolCallCompleted',
      'RunContent',
      'RunCompleted',
    ]);
    const completed = events.filter((e) => e.event === 'ToolCallCompleted').map((e) => e.tool);
    expect(
      completed.map((t) => [t.tool_call_id, t.tool_name, t.tool_args, t.result, t.tool_call_error]),
    ).toEqual([
      ['call_a', 'add', { a: 1, b: 2 }, '{"sum":3}', false],
      ['call_b', 'lookup', { q: 'foxes' }, 'Foxes are canids.', false],
    ]);
    for (const t of completed) {
      // To the millisecond, without the float noise of a difference of two times in seconds.
      const { start_time, end_time, duration } = t.metrics!;
      expect(duration).toBe(Math.round((end_time! - start_time) * 1000) / 1000);
      expect(t.content).toBe(t.result);
    }
    const last = events.at(-1)!;
    expect(last.event === 'RunCompleted' && last.tools.map((t) => t.status)).toEqual([
      'completed',
      'completed',
    ]);
    expect((await agent.getRun(run.runId))?.tools).toEqual(last.event === 'RunCompleted' ? last.tools : []);
  });

  it('never runs a call with arguments that are not JSON or do not match the schema; the model is told why', async () => {
    const execute = vi.fn(() => 0);
    const strict = tool({
      name: 'strict',
      description: '',
      parameters: z.object({ n: z.number() }),
      execute,
    });
    const { model, agent } = setup([strict]);
    const run = agent.run('go', { stream: true });
    const first = await model.nextCall();
    first.callTools([
      { id: 'c1', name: 'strict', arguments: '{"n":' },
      { id: 'c2', name: 'strict', arguments: { n: 'one' } },
      { id: 'c3', name: 'missing', arguments: {} },
    ]);
    const second = await model.nextCall();
    const results = second.messages.filter((m) => m.role === 'tool');
    expect(results.map((m) => m.tool_call_id)).toEqual(['c1', 'c2', 'c3']);
    expect(results[0]?.content).toMatch(/not valid JSON/);
    expect(results[1]?.content).toMatch(/do not match the parameters of strict/);
    expect(results[2]?.content).toMatch(/no tool named 'missing'/);
    second.end();
    const events = await collect(run);
    checkRunEvents(events, 'completed');
    expect(execute).not.toHaveBeenCalled();
    expect(events.filter((e) => e.event === 'ToolCallStarted')).toEqual([]);
    const errors = events.filter((e) => e.event === 'ToolCallError');
    expect(errors.map((e) => e.tool.tool_call_id)).toEqual(['c1', 'c2', 'c3']);
    expect(errors.every((e) => e.tool.tool_call_error && e.error === e.tool.result)).toBe(true);
  });

  it('tells the model of a throwing tool, and the run goes on', async () => {
    const broken = tool({
      name: 'broken',
      description: '',
      parameters: z.object({}),
      execute: () => Promise.reject(new Error('database down')),
    });
    const { model, agent } = setup([broken]);
    const run = agent.run('go', { stream: true });
    (await model.nextCall()).callTools([{ id: 'c1', name: 'broken' }]);
    const second = await model.nextCall();
    expect(second.messages.at(-1)).toEqual({
      role: 'tool',
      tool_call_id: 'c1',
      content: 'Error: database down',
    });
    second.emit('Sorry.');
    second.end();
    const events = await collect(run);
    checkRunEvents(events, 'completed');
    expect(events.map((e) => e.event).slice(1, 4)).toEqual([
      'ToolCallStarted',
      'ToolCallCompleted',
      'ToolCallError',
    ]);
    expect((await agent.getRun(run.runId))?.tools[0]).toMatchObject({
      status: 'failed',
      tool_call_error: true,
    });
  });

  it('tells the model of a throw of a value that has no text of its own, and the run goes on', async () => {
    const odd = [
      Object.create(null) as object,
      {
        toString: () => {
          throw new Error('no text');
        },
      },
    ];
    const broken = tool({
      name: 'broken',
      description: '',
      parameters: z.object({}),
      // What a tool may reject with, whatever its types say.
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors
      execute: () => Promise.reject(odd.shift()),
    });
    const { model, agent } = setup([broken]);
    const run = agent.run('go');
    (await model.nextCall()).callTools([
      { id: 'c1', name: 'broken' },
      { id: 'c2', name: 'broken' },
    ]);
    const second = await model.nextCall();
    expect(second.messages.slice(-2).map((message) => message.content)).toEqual([
      'Error: [Object: null prototype] {}',
      'Error: { toString: [Function: toString] }',
    ]);
    second.end();
    expect((await run).status).toBe('completed');
  });

  it('takes a tool timeout of Infinity, or one longer than a timer holds, as a very long one', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const endless = heldTool('endless', { timeoutMs: Infinity });
    const long = heldTool('long', { timeoutMs: 3e9 });
    const { model, agent } = setup([endless.tool, long.tool]);
    const run = agent.run('go');
    (await model.nextCall()).callTools([
      { id: 'c1', name: 'endless' },
      { id: 'c2', name: 'long' },
    ]);
    const [first, second] = [await endless.started(), await long.started()];
    // Node fires a delay it cannot hold after 1 ms: neither call may time out now.
    await vi.advanceTimersByTimeAsync(1_000);
    expect(first.context.signal.aborted).toBe(false);
    expect(second.context.signal.aborted).toBe(false);
    first.release('done');
    second.release('done too');
    (await model.nextCall()).end();
    expect((await run).tools.map((call) => call.status)).toEqual(['completed', 'completed']);
  });

  it('aborts a tool past its timeout and tells the model "timed out after N ms"', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const slow = heldTool('slow', { timeoutMs: 5_000 });
    const { model, agent } = setup([slow.tool]);
    const run = agent.run('go');
    (await model.nextCall()).callTools([{ id: 'c1', name: 'slow' }]);
    const call = await slow.started();
    await vi.advanceTimersByTimeAsync(5_000);
    expect(call.context.signal.aborted).toBe(true);
    const second = await model.nextCall();
    expect(second.messages.at(-1)?.content).toBe('Error: slow timed out after 5000 ms');
    call.release('too late');
    second.end();
    expect((await run).tools[0]).toMatchObject({
      status: 'failed',
      result: 'Error: slow timed out after 5000 ms',
    });
  });

  it('fails with TOOL_ROUNDS_EXCEEDED when the model asks for tools after maxToolRounds rounds', async () => {
    const { model, agent } = setup([add], { maxToolRounds: 2 });
    const run = agent.run('loop', { stream: true });
    for (let round = 1; round <= 3; round++) {
      (await model.nextCall()).callTools([{ id: `c${round}`, name: 'add', arguments: { a: round, b: 0 } }]);
    }
    const events = await collect(run);
    checkRunEvents(events, 'failed');
    expect(events.at(-1)).toMatchObject({ event: 'RunError', code: 'TOOL_ROUNDS_EXCEEDED' });
    expect(model.calls).toHaveLength(3);
    // The third round's call was never run.
    expect(events.filter((e) => e.event === 'ToolCallStarted')).toHaveLength(2);
  });

  it('runs at most maxConcurrentTools calls of a turn at once', async () => {
    const lookup = heldTool('lookup');
    const { model, agent } = setup([lookup.tool], { limits: { maxConcurrentTools: 1 } });
    const run = agent.run('go');
    (await model.nextCall()).callTools([
      { id: 'c1', name: 'lookup' },
      { id: 'c2', name: 'lookup' },
    ]);
    const first = await lookup.started(1);
    await nextTurn();
    expect(lookup.calls).toHaveLength(1);
    first.release('one');
    (await lookup.started(2)).release('two');
    (await model.nextCall()).end();
    expect((await run).tools.map((t) => t.result)).toEqual(['one', 'two']);
  });

  it("gives a call its own id when the model reuses one of an earlier turn's (call_0 in every turn)", async () => {
    const { model, agent } = setup([add]);
    const run = agent.run('add twice', { stream: true });
    (await model.nextCall()).callTools([{ id: 'call_0', name: 'add', arguments: { a: 1, b: 1 } }]);
    (await model.nextCall()).callTools([{ id: 'call_0', name: 'add', arguments: { a: 2, b: 2 } }]);
    const last = await model.nextCall();
    const calls = last.messages.flatMap((m) => (m.role === 'assistant' ? (m.tool_calls ?? []) : []));
    const results = last.messages.flatMap((m) => (m.role === 'tool' ? [m] : []));
    expect(calls[0]!.id).toBe('call_0');
    expect(calls[1]!.id).not.toBe('call_0');
    expect(results.map((m) => [m.tool_call_id, m.content])).toEqual([
      [calls[0]!.id, '{"sum":2}'],
      [calls[1]!.id, '{"sum":4}'],
    ]);
    last.end();
    const events = await collect(run);
    // Clients such as Agno's Agent UI merge a run's calls by id: two calls, two ids.
    const started = events.flatMap((e) => (e.event === 'ToolCallStarted' ? [e.tool.tool_call_id] : []));
    expect(new Set(started).size).toBe(2);
    checkRunEvents(events, 'completed');
  });

  it('sends the tool rounds of earlier runs of a session as history', async () => {
    const { model, agent } = setup([add]);
    const first = agent.run('add 2 and 2');
    (await model.nextCall()).callTools([{ id: 'c1', name: 'add', arguments: { a: 2, b: 2 } }]);
    const answer = await model.nextCall();
    answer.emit('4.');
    answer.end();
    const { session_id: sessionId } = await first;
    const second = agent.run('and again?', { sessionId });
    const call = await model.nextCall();
    expect(call.messages.map((m) => m.role)).toEqual(['user', 'assistant', 'tool', 'assistant', 'user']);
    expect(call.messages[1]).toMatchObject({ tool_calls: [{ id: 'c1' }] });
    expect(call.messages[3]).toEqual({ role: 'assistant', content: '4.' });
    call.end();
    await second;
  });
});

describe('a cancel while tools run', () => {
  /** Starts a run whose turn asks for two calls of a held tool, and waits until both run. */
  async function runningTools() {
    const lookup = heldTool('lookup');
    const { model, orchestrator, agent } = setup([lookup.tool]);
    const run = agent.run('go', { stream: true });
    const call: FakeModelCall = await model.nextCall();
    call.callTools([
      { id: 'c1', name: 'lookup' },
      { id: 'c2', name: 'lookup' },
    ]);
    await lookup.started(2);
    return { lookup, model, orchestrator, agent, run };
  }

  it('tells apart two calls a model sent with one id (or none): each gets its own id, result and abort', async () => {
    const lookup = heldTool('lookup');
    const { model, agent } = setup([lookup.tool]);
    const cancelled = agent.run('go', { stream: true });
    (await model.nextCall()).callTools([
      { id: 'dup', name: 'lookup' },
      { id: 'dup', name: 'lookup' },
      { id: '', name: 'lookup' },
    ]);
    await lookup.started(3);
    expect(agent.cancelRun(cancelled.runId)).toBe(true);
    expect(lookup.calls.map((c) => c.context.signal.aborted)).toEqual([true, true, true]);
    const ids = (await agent.getRun(cancelled.runId))!.tools.map((t) => t.tool_call_id);
    expect(ids[0]).toBe('dup');
    expect(new Set(ids).size).toBe(3);
    checkRunEvents(await collect(cancelled), 'cancelled');

    const completed = agent.run('again', { stream: true });
    (await model.nextCall()).callTools([
      { id: 'dup', name: 'lookup' },
      { id: 'dup', name: 'lookup' },
    ]);
    await lookup.started(5);
    lookup.calls[3]!.release('first');
    lookup.calls[4]!.release('second');
    const next = await model.nextCall();
    const results = next.messages.filter((m) => m.role === 'tool');
    expect(results.map((m) => m.content)).toEqual(['first', 'second']);
    const calls = next.messages.flatMap((m) => (m.role === 'assistant' ? (m.tool_calls ?? []) : []));
    expect(results.map((m) => (m as { tool_call_id: string }).tool_call_id)).toEqual(calls.map((c) => c.id));
    expect(calls[0]?.id).toBe('dup');
    expect(calls[1]?.id).not.toBe('dup');
    next.emit('Done.');
    next.end();
    const events = await collect(completed);
    checkRunEvents(events, 'completed');
    expect(events.filter((e) => e.event === 'ToolCallCompleted')).toHaveLength(2);
  });

  it("answers true to a cancelRun from a listener of the run's own tool events, and the run ends cancelled", async () => {
    for (const at of ['ToolCallStarted', 'ToolCallCompleted'] as const) {
      const { model, agent } = setup([add]);
      let answer: boolean | undefined;
      const off = agent.orchestrator.subscribe((notice) => {
        // Called while the run's machine handles the event that made this one (re-entrant).
        if (notice.type === 'event' && notice.event.event === at) answer ??= agent.cancelRun(notice.runId);
      });
      const run = agent.run('add', { stream: true });
      (await model.nextCall()).callTools([{ id: 'c1', name: 'add', arguments: { a: 1, b: 2 } }]);
      const events = await collect(run);
      off();
      expect(answer, at).toBe(true);
      checkRunEvents(events, 'cancelled');
      expect(model.calls).toHaveLength(1);
    }
  });

  it('is cancelled in the same tick, every tool signal aborted before cancelRun returns, no further request', async () => {
    const { lookup, model, agent, run } = await runningTools();
    expect((await agent.getRun(run.runId))?.status).toBe('streaming');
    expect(agent.cancelRun(run.runId)).toBe(true);
    expect((await agent.getRun(run.runId))?.status).toBe('cancelled');
    expect(lookup.calls.map((c) => c.context.signal.aborted)).toEqual([true, true]);
    // Tools that ignore their signal still return: their results are dropped.
    for (const c of lookup.calls) c.release('late');
    const events = await collect(run);
    checkRunEvents(events, 'cancelled');
    expect(events.filter((e) => e.event === 'RunCancelled')).toHaveLength(1);
    expect(events.filter((e) => e.event === 'ToolCallCompleted')).toEqual([]);
    await nextTurn();
    expect(model.calls).toHaveLength(1);
    expect((await agent.getRun(run.runId))?.tools.map((t) => [t.status, t.result])).toEqual([
      ['cancelled', null],
      ['cancelled', null],
    ]);
    expect((await agent.getRun(run.runId))?.tools[0]?.metrics?.end_time).not.toBeNull();
  });

  it('is cancelled by a shutdown the same way', async () => {
    const { lookup, orchestrator, run } = await runningTools();
    const done = orchestrator.shutdown();
    expect(lookup.calls.every((c) => c.context.signal.aborted)).toBe(true);
    await done;
    expect((await run.result).cancel_reason).toBe('shutdown');
  });
});

describe('pausing for a person', () => {
  async function pausedRun() {
    const publish = heldTool('publish', { requiresConfirmation: true });
    const { model, orchestrator, agent } = setup([add, publish.tool]);
    const run = agent.run('publish it', { stream: true });
    (await model.nextCall()).callTools([
      { id: 'c_add', name: 'add', arguments: { a: 1, b: 1 } },
      { id: 'c_pub', name: 'publish', arguments: { q: 'post' } },
    ]);
    const events = await collect(run);
    return { publish, model, orchestrator, agent, run, events };
  }

  it('pauses before any call of the turn runs; the stream ends at RunPaused', async () => {
    const { publish, agent, run, events } = await pausedRun();
    expect(events.map((e) => e.event)).toEqual(['RunStarted', 'RunPaused']);
    const paused = events[1]!;
    expect(paused).toMatchObject({ status: 'paused', seq: 2 });
    expect(paused.event === 'RunPaused' && paused.tools).toEqual([
      expect.objectContaining({
        tool_call_id: 'c_pub',
        tool_name: 'publish',
        tool_args: { q: 'post' },
        requires_confirmation: true,
      }),
    ]);
    expect((await agent.getRun(run.runId))?.status).toBe('paused');
    expect(publish.calls).toEqual([]);
  });

  it('is cancelled by a shutdown in memory once parked: a caller waiting for its result gets the cancelled run', async () => {
    // Parked (in the store, no longer live here) once its write is done and what follows it ran.
    const store = createMemoryRunStore();
    let parked!: () => void;
    const isParked = new Promise<void>((resolve) => (parked = resolve));
    // The caller follows the run from the store: waiting once it has subscribed and read.
    const bus = createMemoryEventBus();
    let following!: () => void;
    const isFollowing = new Promise<void>((resolve) => (following = resolve));
    const orchestrator = createOrchestrator({
      store: {
        ...store,
        async parkRun(...args) {
          await store.parkRun(...args);
          setImmediate(parked);
        },
      },
      eventBus: {
        ...bus,
        async subscribe(runId, listener) {
          const unsubscribe = await bus.subscribe(runId, listener);
          setImmediate(following);
          return unsubscribe;
        },
      },
    });
    const model = createFakeModel();
    const agent = new Agent({ name: 'Tooler', model, orchestrator, tools: [confirmingTool()] });
    const run = agent.run('publish it', { stream: true });
    (await model.nextCall()).callTools([{ id: 'c1', name: 'publish', arguments: {} }]);
    await collect(run);
    await isParked;
    const waiting = orchestrator.result(run.runId).catch((error: unknown) => error);
    await isFollowing;
    await orchestrator.shutdown();
    expect(await waiting).toMatchObject({ status: 'cancelled', cancel_reason: 'shutdown' });
  });

  it('ends a stream at its RunPaused also when the reader gets there after the run went on', async () => {
    const publish = heldTool('publish', { requiresConfirmation: true });
    const { model, agent } = setup([publish.tool]);
    const late = agent.run('publish it', { stream: true });
    (await model.nextCall()).callTools([{ id: 'c_pub', name: 'publish', arguments: { q: 'post' } }]);
    // Another reader sees the pause; the run is continued and cancelled before `late` reads anything.
    const watcher = await collect(await agent.orchestrator.events(late.runId));
    expect(watcher.map((e) => e.event)).toEqual(['RunStarted', 'RunPaused']);
    await agent.continueRun(late.runId, {
      tools: [{ tool_call_id: 'c_pub', confirmed: true }],
      stream: true,
    });
    agent.cancelRun(late.runId);
    expect((await collect(late)).map((e) => e.event)).toEqual(['RunStarted', 'RunPaused']);
    // A replay from the start reads through the pause the run left.
    checkRunEvents(await collect(await agent.orchestrator.events(late.runId)), 'cancelled');
  });

  it('continues on a confirmation: RunContinued first, seq without a gap, the call runs', async () => {
    const { publish, model, agent, run } = await pausedRun();
    const continued = await agent.continueRun(run.runId, {
      tools: [{ tool_call_id: 'c_pub', confirmed: true, confirmation_note: 'ok' }],
      stream: true,
    });
    (await publish.started()).release('published');
    const next = await model.nextCall();
    expect(next.messages.filter((m) => m.role === 'tool').map((m) => m.content)).toEqual([
      '{"sum":2}',
      'published',
    ]);
    next.emit('Done.');
    next.end();
    const events = await collect(continued);
    expect(events[0]).toMatchObject({ event: 'RunContinued', seq: 3 });
    expect(events[0]?.event === 'RunContinued' && events[0].tools).toEqual([
      expect.objectContaining({ tool_call_id: 'c_pub', confirmed: true, confirmation_note: 'ok' }),
    ]);
    checkRunEvents(await collect(await agent.orchestrator.events(run.runId)), 'completed');
    expect(events.at(-1)).toMatchObject({ event: 'RunCompleted' });
  });

  it('records a confirmed call whose arguments fail their check when it is about to run as failed, never run: no metrics', async () => {
    let checks = 0;
    const execute = vi.fn(() => 'published');
    // A schema that passes at the turn's end and fails at the call's run (the docs warn against it).
    const fickle = tool({
      name: 'publish',
      description: '',
      parameters: z.object({}).refine(() => checks++ === 0, 'changed its mind'),
      requiresConfirmation: true,
      execute,
    });
    const { model, agent } = setup([fickle]);
    const paused = agent.run('publish it', { stream: true });
    (await model.nextCall()).callTools([{ id: 'c_pub', name: 'publish', arguments: {} }]);
    await collect(paused);
    const continued = await agent.continueRun(paused.runId, {
      tools: [{ tool_call_id: 'c_pub', confirmed: true }],
      stream: true,
    });
    const next = await model.nextCall();
    next.end();
    const events = await collect(continued);
    expect(execute).not.toHaveBeenCalled();
    expect(events.filter((e) => e.event === 'ToolCallStarted')).toEqual([]);
    expect(events.find((e) => e.event === 'ToolCallCompleted')).toMatchObject({
      tool: { tool_call_id: 'c_pub', status: 'failed', tool_call_error: true, metrics: null },
    });
  });

  it('ends a paused run’s loop at its pause, without waiting for the run’s end (continued from inside the loop)', async () => {
    const execute = vi.fn(() => 'published');
    const publish = tool({
      name: 'publish',
      description: '',
      parameters: z.object({}),
      requiresConfirmation: true,
      execute,
    });
    const { model, agent } = setup([publish]);
    const stream = agent.run('publish it', { stream: true });
    (await model.nextCall()).callTools([{ id: 'c_pub', name: 'publish', arguments: {} }]);
    let continued: AsyncIterable<RunEvent> | undefined;
    for await (const event of stream) {
      if (event.event === 'RunPaused')
        continued = agent.continueRun(stream.runId, {
          tools: [{ tool_call_id: 'c_pub', confirmed: true }],
          stream: true,
        });
    }
    // The loop is over while the continued run waits for its model: it does not wait for the run's end.
    const reading = collect(continued!);
    (await model.nextCall()).end();
    expect((await reading).at(-1)).toMatchObject({ event: 'RunCompleted' });
    expect(execute).toHaveBeenCalledOnce();
  });

  it('streams a continue iterated as it is, without awaiting it first; a refusal rejects the loop', async () => {
    const { publish, model, agent, run } = await pausedRun();
    const stream = agent.continueRun(run.runId, {
      tools: [{ tool_call_id: 'c_pub', confirmed: true }],
      stream: true,
    });
    const reading = collect(stream);
    (await publish.started()).release('published');
    (await model.nextCall()).end();
    const events = await reading;
    expect(events[0]).toMatchObject({ event: 'RunContinued', seq: 3 });
    expect(events.at(-1)).toMatchObject({ event: 'RunCompleted' });
    expect(events.filter((e) => e.event === 'ToolCallCompleted')).toHaveLength(2);
    expect(events.map((e) => e.seq)).toEqual(events.map((_, index) => 3 + index));
    expect((await stream).runId).toBe(run.runId);
    // Continued already: the loop's first step rejects, as awaiting the call does.
    const again = agent.continueRun(run.runId, {
      tools: [{ tool_call_id: 'c_pub', confirmed: true }],
      stream: true,
    });
    await expect(collect(again)).rejects.toMatchObject({ code: 'RUN_NOT_PAUSED' });
    await expect(again).rejects.toMatchObject({ code: 'RUN_NOT_PAUSED' });
  });

  it("takes back the paused run's own calls (Agno's clients send every call): those that wait for nothing are ignored", async () => {
    const { publish, model, agent, run } = await pausedRun();
    const record = await agent.getRun(run.runId);
    // Every call of the run, as the record lists them: `confirmed` and `confirmation_note` are null.
    expect(record?.tools.map((t) => [t.tool_call_id, t.confirmed, t.confirmation_note])).toEqual([
      ['c_add', null, null],
      ['c_pub', null, null],
    ]);
    const tools = record!.tools.map((t) => ({
      ...t,
      confirmed: t.requires_confirmation ? true : t.confirmed,
    }));
    const output = agent.continueRun(run.runId, { tools });
    (await publish.started()).release('published');
    (await model.nextCall()).end();
    expect((await output).status).toBe('completed');
    // A call that waits for nothing answered anyway is refused, as before.
    const again = await pausedRun();
    await expect(
      again.agent.continueRun(again.run.runId, {
        tools: [
          { tool_call_id: 'c_add', confirmed: true },
          { tool_call_id: 'c_pub', confirmed: true },
        ],
      }),
    ).rejects.toThrow(/not waiting for c_add/);
    await expect(
      again.agent.continueRun(again.run.runId, { tools: [{ tool_call_id: 'c_pub', confirmed: null }] }),
    ).rejects.toMatchObject({ code: 'INVALID_INPUT', details: { field: 'tools.0.confirmed' } });
  });

  it.each(['completed', 'cancelled'] as const)(
    "resolves every handle of a run that pauses twice, %s: the first stream's result and the first continue's",
    async (end) => {
      const { model, agent } = setup([confirmingTool('confirm')]);
      const first = agent.run('go', { stream: true });
      (await model.nextCall()).callTools([{ id: 'c0', name: 'confirm', arguments: {} }]);
      await collect(first);
      const answer = (id: string) => ({ tools: [{ tool_call_id: id, confirmed: true }] });
      const second = await agent.continueRun(first.runId, { ...answer('c0'), stream: true });
      (await model.nextCall()).callTools([{ id: 'c1', name: 'confirm', arguments: {} }]);
      expect((await collect(second)).at(-1)?.event).toBe('RunPaused');
      if (end === 'cancelled') {
        expect(agent.cancelRun(first.runId)).toBe(true);
      } else {
        const last = agent.continueRun(first.runId, answer('c1'));
        (await model.nextCall()).end();
        expect((await last).status).toBe('completed');
      }
      expect((await first.result).status).toBe(end);
      expect((await second.result).status).toBe(end);
    },
  );

  it('does not run a rejected call, and tells the model', async () => {
    const { publish, model, agent, run } = await pausedRun();
    const output = agent.continueRun(run.runId, {
      tools: [{ tool_call_id: 'c_pub', confirmed: false, confirmation_note: 'not today' }],
    });
    const next = await model.nextCall();
    expect(next.messages.at(-1)).toEqual({
      role: 'tool',
      tool_call_id: 'c_pub',
      content: 'The user rejected this call: not today',
    });
    next.end();
    expect((await output).tools.find((t) => t.tool_call_id === 'c_pub')).toMatchObject({
      status: 'rejected',
      confirmed: false,
    });
    expect(publish.calls).toEqual([]);
  });

  it('is cancelled while paused, and refuses a second continue and answers that do not fit', async () => {
    const { agent, run, model } = await pausedRun();
    await expect(agent.continueRun(run.runId, { tools: [] })).rejects.toThrow(/no answer for c_pub/);
    await expect(
      agent.continueRun(run.runId, {
        tools: [
          { tool_call_id: 'c_pub', confirmed: true },
          { tool_call_id: 'c_other', confirmed: true },
        ],
      }),
    ).rejects.toThrow(/^tools\.1\.tool_call_id: run \S+ has no tool call c_other$/);
    // Two at once: exactly one takes the run.
    const outcomes = await Promise.allSettled([
      agent.continueRun(run.runId, { tools: [{ tool_call_id: 'c_pub', confirmed: false }], stream: true }),
      agent.continueRun(run.runId, { tools: [{ tool_call_id: 'c_pub', confirmed: false }], stream: true }),
    ]);
    const refused = outcomes.filter((outcome) => outcome.status === 'rejected');
    expect(refused).toHaveLength(1);
    expect((refused[0]!.reason as RunstateError).code).toBe('RUN_NOT_PAUSED');
    (await model.nextCall()).end();
    const won = outcomes.find((outcome) => outcome.status === 'fulfilled');
    expect((await won!.value.result).status).toBe('completed');
    // A run that ended is known: not paused (409 over HTTP), not "not found".
    await expect(
      agent.continueRun(run.runId, { tools: [{ tool_call_id: 'c_pub', confirmed: true }] }),
    ).rejects.toMatchObject({ code: 'RUN_NOT_PAUSED' });
    await expect(agent.continueRun('nope', { tools: [] })).rejects.toMatchObject({ code: 'RUN_NOT_FOUND' });

    // agent.cancelRun reaches a run this process paused (it waits in the store): true, and the
    // run reads cancelled at once; a second cancel is refused.
    const second = await pausedRun();
    expect(second.agent.cancelRun(second.run.runId)).toBe(true);
    expect(await second.agent.getRun(second.run.runId)).toMatchObject({ status: 'cancelled' });
    expect(second.agent.cancelRun(second.run.runId)).toBe(false);
    const all = await collect(await second.agent.orchestrator.events(second.run.runId));
    checkRunEvents(all, 'cancelled');
    expect(all.at(-1)).toMatchObject({ event: 'RunCancelled', reason: 'code' });
    expect((await second.agent.getRun(second.run.runId))?.tools.map((t) => t.status)).toEqual([
      'cancelled',
      'cancelled',
    ]);
    expect(second.model.calls).toHaveLength(1); // no model request after the cancel

    // requestCancel reaches it too (from any instance), and another agent's cancel does not.
    const third = await pausedRun();
    expect(third.agent.cancelRun('nope')).toBe(false);
    expect((await third.agent.orchestrator.requestCancel(third.run.runId, 'api')).status).toBe('cancelled');
  });

  it("leaves out of the session's history a turn whose calls never ran: cancelled while it waited for a person", async () => {
    const publish = heldTool('publish', { requiresConfirmation: true });
    const { model, agent } = setup([add, publish.tool]);
    // The first run paused at once (its first turn's calls never ran): no answer at all, left out.
    const first = agent.run('publish it', { stream: true, sessionId: 's' });
    (await model.nextCall()).callTools([{ id: 'c_pub', name: 'publish', arguments: { q: 'post' } }]);
    await collect(first);
    expect(agent.cancelRun(first.runId)).toBe(true);
    // The second: a round that ran, then a pause. Its round is kept, the turn that paused is not.
    const second = agent.run('add, then publish', { stream: true, sessionId: 's' });
    (await model.nextCall()).callTools([{ id: 'c_add', name: 'add', arguments: { a: 1, b: 2 } }]);
    const paused = await model.nextCall();
    paused.emit('Publishing. ');
    paused.callTools([{ id: 'c_pub2', name: 'publish', arguments: { q: 'sum' } }]);
    await collect(second);
    // Cancelled, and the next run started at once: it reads the session once the cancel is stored
    // (the paused run was parked in the store, and is taken back from there to be cancelled).
    expect(agent.cancelRun(second.runId)).toBe(true);
    const third = agent.run('and now?', { sessionId: 's' });
    const call = await model.nextCall();
    expect(call.messages).toEqual([
      { role: 'user', content: 'add, then publish' },
      {
        role: 'assistant',
        content: '',
        tool_calls: [
          { id: 'c_add', type: 'function', function: { name: 'add', arguments: '{"a":1,"b":2}' } },
        ],
      },
      { role: 'tool', tool_call_id: 'c_add', content: '{"sum":3}' },
      { role: 'assistant', content: 'Publishing. ' },
      { role: 'user', content: 'and now?' },
    ]);
    call.end();
    await third;
    for (const run of [first, second]) expect((await agent.getRun(run.runId))?.status).toBe('cancelled');
  });

  it('resolves a non-streamed run at its pause, and a non-streamed continue at the next pause or the end', async () => {
    const publish = heldTool('publish', { requiresConfirmation: true });
    const { model, agent } = setup([publish.tool]);
    const running = agent.run('publish twice');
    (await model.nextCall()).callTools([{ id: 'c1', name: 'publish', arguments: { q: 'one' } }]);
    const paused = await running;
    expect(paused).toMatchObject({ status: 'paused', finished_at: null });
    if (paused.status !== 'paused') throw new Error('not paused');
    expect(paused.tools).toEqual([
      expect.objectContaining({
        tool_call_id: 'c1',
        status: 'awaiting_confirmation',
        requires_confirmation: true,
      }),
    ]);
    expect(paused.metrics.duration).toBeGreaterThanOrEqual(0);

    // Continued without stream: it pauses again, and resolves there.
    const again = agent.continueRun(paused.run_id, { tools: [{ tool_call_id: 'c1', confirmed: true }] });
    (await publish.started()).release('published one');
    (await model.nextCall()).callTools([{ id: 'c2', name: 'publish', arguments: { q: 'two' } }]);
    const second = await again;
    expect(second.status).toBe('paused');
    expect(second.tools.map((t) => [t.tool_call_id, t.status])).toEqual([
      ['c1', 'completed'],
      ['c2', 'awaiting_confirmation'],
    ]);

    const last = agent.continueRun(paused.run_id, { tools: [{ tool_call_id: 'c2', confirmed: false }] });
    const answer = await model.nextCall();
    answer.emit('Published one of two.');
    answer.end();
    const output = await last;
    expect(output).toMatchObject({ status: 'completed', content: 'Published one of two.' });
    expect(output.finished_at).toBeTypeOf('number');
    checkRunEvents(await collect(await agent.orchestrator.events(paused.run_id)), 'completed');
  });

  it('stays paused when the loop is left at its RunPaused; a cancel then ends it', async () => {
    const publish = heldTool('publish', { requiresConfirmation: true });
    const { model, agent } = setup([publish.tool]);
    const run = agent.run('publish', { stream: true });
    const turn = model.nextCall();
    let last: string | undefined;
    for await (const event of run) {
      if (event.event === 'RunStarted') (await turn).callTools([{ id: 'c1', name: 'publish' }]);
      last = event.event;
      // Leaving the loop here (to ask the person) is not leaving the run: it waits for a continue.
      if (event.event === 'RunPaused') break;
    }
    expect(last).toBe('RunPaused');
    expect(agent.orchestrator.isPaused(run.runId)).toBe(true);
    expect((await agent.getRun(run.runId))?.status).toBe('paused');
    expect(agent.cancelRun(run.runId)).toBe(true);
    expect(await run.result).toMatchObject({ status: 'cancelled', cancel_reason: 'code' });
    expect(agent.orchestrator.isPaused(run.runId)).toBe(false);
  });

  it('is continued after the loop was left at its RunPaused', async () => {
    const publish = heldTool('publish', { requiresConfirmation: true });
    const { model, agent } = setup([publish.tool]);
    const run = agent.run('publish', { stream: true });
    (await model.nextCall()).callTools([{ id: 'c1', name: 'publish' }]);
    for await (const event of run) if (event.event === 'RunPaused') break;
    const continued = agent.continueRun(run.runId, { tools: [{ tool_call_id: 'c1', confirmed: true }] });
    (await publish.started()).release('published');
    const answer = await model.nextCall();
    answer.emit('Done.');
    answer.end();
    expect(await continued).toMatchObject({ status: 'completed', content: 'Done.' });
  });

  it('fails with RUN_TIMEOUT when nobody answers within the pause limit', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const publish = heldTool('publish', { requiresConfirmation: true });
    const { model, agent } = setup([publish.tool], { limits: { pauseTimeoutMs: 60_000 } });
    const run = agent.run('publish', { stream: true });
    (await model.nextCall()).callTools([{ id: 'c1', name: 'publish' }]);
    await nextTurn();
    expect((await agent.orchestrator.listRuns())[0]?.status).toBe('paused');
    await vi.advanceTimersByTimeAsync(60_000);
    expect(await run.result).toMatchObject({ status: 'failed', error: { code: 'RUN_TIMEOUT' } });
  });
});
