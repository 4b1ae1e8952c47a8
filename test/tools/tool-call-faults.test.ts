/**
 * Tool calls that a server or a tool's schema makes awkward, over a real socket (the fake OpenAI
 * server): a schema that throws or is async, ids that repeat across turns or within one, and a
 * throw of runstate's own code on the model path, which must fail the run at once, never hang it.
 */
import { describe, expect, it } from 'vitest';
import { createActor, toPromise } from 'xstate';
import { z } from 'zod';
import { runMachine } from '../../machines/run.machine.js';
import { tool, type RunEvent, type ToolCallStartedEvent } from '../../src/index.js';
import type { ModelChunk, ModelStreamReceiver } from '../../src/model/chat-model.js';
import { createModelService, HeldChunk } from '../../src/runtime/model-service.js';
import { checkRunEvents } from '../../src/testing/index.js';
import { collect } from '../support/collect.js';
import { useFakeOpenAIServer } from '../support/fake-server-agents.js';

const { server: fakeServer, model, agentWith } = useFakeOpenAIServer();

/** The `tool` messages the request of model turn `index` carried. */
const toolResults = (index: number) =>
  (fakeServer().requests[index]!.body.messages as Array<{ role: string; content: string }>).filter(
    (m) => m.role === 'tool',
  );

const call = (index: number, id: string | undefined, name: string, args: string) => ({
  index,
  ...(id === undefined ? {} : { id, type: 'function' }),
  function: { name, arguments: args },
});

describe('a tool schema that throws or is async', () => {
  it('tells the model the arguments do not match, with the thrown message, when a transform throws', async () => {
    let runs = 0;
    const fetchPage = tool({
      name: 'fetch_page',
      description: 'f',
      parameters: z.object({ url: z.string().transform((s) => new URL(s)) }),
      execute: ({ url }) => (++runs, url.href),
    });
    fakeServer().enqueue(
      { chunks: [], toolCalls: [call(0, 'c1', 'fetch_page', '{"url":"example dot com"}')] },
      { chunks: ['Sorry.'] },
    );
    const events = await collect(agentWith([fetchPage]).run('go', { stream: true }));
    checkRunEvents(events, 'completed');
    expect(runs).toBe(0);
    expect(toolResults(1)[0]!.content).toMatch(
      /^Error: the arguments do not match the parameters of fetch_page:\n.*Invalid URL/,
    );
    expect(events.map((e) => e.event)).toContain('ToolCallError');
  });

  it('runs an async refinement before the call runs: a call that passes runs, one that fails never does', async () => {
    const ran: string[] = [];
    const check = tool({
      name: 'check',
      description: 'c',
      parameters: z.object({ url: z.string().refine(async (u) => Promise.resolve(u.startsWith('http'))) }),
      execute: ({ url }) => (ran.push(url), 'ok'),
    });
    fakeServer().enqueue(
      {
        chunks: [],
        toolCalls: [call(0, 'c1', 'check', '{"url":"http://x"}'), call(1, 'c2', 'check', '{"url":"ftp"}')],
      },
      { chunks: ['Done.'] },
    );
    const output = await agentWith([check]).run('go');
    expect(output.status).toBe('completed');
    expect(ran).toEqual(['http://x']);
    expect(output.tools.map((t) => [t.tool_call_id, t.status])).toEqual([
      ['c1', 'completed'],
      ['c2', 'failed'],
    ]);
    expect(toolResults(1)[1]!.content).toMatch(/do not match the parameters of check/);
  });
});

describe('tool-call ids', () => {
  const add = tool({
    name: 'add',
    description: 'a',
    parameters: z.object({ a: z.number() }),
    execute: ({ a }) => `got ${a}`,
  });

  it('name calls within a turn only: a server that numbers them per response (call_0 every turn)', async () => {
    fakeServer().enqueue(
      { chunks: [], toolCalls: [call(0, 'call_0', 'add', '{"a":1}')] },
      { chunks: [], toolCalls: [call(0, 'call_0', 'add', '{"a":2}')] },
      { chunks: ['Done.'] },
    );
    const events = await collect(agentWith([add]).run('go', { stream: true }));
    checkRunEvents(events, 'completed');
    const started = events.filter((e): e is ToolCallStartedEvent => e.event === 'ToolCallStarted');
    expect(started.map((e) => e.tool.tool_args)).toEqual([{ a: 1 }, { a: 2 }]);
    const completed = events.at(-1) as Extract<RunEvent, { event: 'RunCompleted' }>;
    expect(completed.tools.map((t) => [t.tool_args, t.status, t.result])).toEqual([
      [{ a: 1 }, 'completed', 'got 1'],
      [{ a: 2 }, 'completed', 'got 2'],
    ]);
    expect(toolResults(2).map((m) => m.content)).toEqual(['got 1', 'got 2']);
  });

  it('keeps two calls of one turn apart by index when they share an id, and gives the second its own', async () => {
    fakeServer().enqueue(
      { chunks: [], toolCalls: [call(0, 'call_0', 'add', '{"a":1}'), call(1, 'call_0', 'add', '{"a":2}')] },
      { chunks: ['Done.'] },
    );
    const output = await agentWith([add]).run('go');
    expect(output.tools.map((t) => [t.tool_args, t.status])).toEqual([
      [{ a: 1 }, 'completed'],
      [{ a: 2 }, 'completed'],
    ]);
    const ids = output.tools.map((t) => t.tool_call_id);
    expect(ids[0]).toBe('call_0');
    expect(new Set(ids).size).toBe(2);
    const messages = fakeServer().requests[1]!.body.messages as Array<Record<string, unknown>>;
    expect(messages.filter((m) => m.role === 'tool').map((m) => m.tool_call_id)).toEqual(ids);
  });
});

describe('a throw on the model path', () => {
  it('is closed with an INTERNAL error naming it when the receiver of the stream throws at the end', async () => {
    fakeServer().enqueue({ chunks: ['Hi'] });
    const closed = new Promise<unknown>((resolve) => {
      const receiver: ModelStreamReceiver = {
        chunk(chunk: ModelChunk) {
          if (chunk.type === 'end') throw new TypeError('the receiver broke');
        },
        close: resolve,
      };
      model().streamTo(
        { messages: [{ role: 'user', content: 'hi' }], signal: new AbortController().signal },
        receiver,
      );
    });
    expect(await closed).toMatchObject({
      code: 'INTERNAL',
      message: expect.stringContaining('TypeError: the receiver broke') as unknown,
    });
  });

  it('fails the run at once with INTERNAL, not a timeout, when the run side throws at the end of a turn', async () => {
    fakeServer().enqueue({ chunks: ['Hi'] });
    const runSignal = new AbortController().signal;
    const sink = {
      held: new HeldChunk(),
      content() {},
      endTurn() {
        throw new Error('a projection bug');
      },
    };
    const machine = runMachine.provide({
      actors: {
        model: createModelService(() => ({ model: model(), messages: Promise.resolve([]), runSignal, sink })),
      },
    });
    const actor = createActor(machine, { input: { runId: 'r1', idleTimeoutMs: 60_000 } }).start();
    actor.send({ type: 'START' });
    const output = await toPromise(actor);
    expect(output).toMatchObject({
      status: 'failed',
      error: { code: 'INTERNAL', message: expect.stringContaining('Error: a projection bug') as unknown },
    });
  });
});
