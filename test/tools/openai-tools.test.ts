/**
 * Tools against the local fake OpenAI server, over a real socket: the request offers the tools as
 * JSON Schema, streamed `tool_calls` deltas are joined however a server splits and numbers them,
 * and the next request carries the assistant turn with its calls and one `tool` message per call.
 */
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { tool, type RunEvent, type Tool, type ToolExecuteContext } from '../../src/index.js';
import { checkRunEvents, nextTurn } from '../../src/testing/index.js';
import { useFakeOpenAIServer } from '../support/fake-server-agents.js';

const { server: fakeServer, agentWith: agentOn } = useFakeOpenAIServer();
const agentWith = (tools: Tool[]) => agentOn(tools, 'Calculator');

const add = tool({
  name: 'add',
  description: 'Adds two numbers',
  parameters: z.object({ a: z.number(), b: z.number() }),
  execute: ({ a, b }) => a + b,
});

async function collect(events: AsyncIterable<RunEvent>): Promise<RunEvent[]> {
  const out: RunEvent[] = [];
  for await (const event of events) out.push(event);
  return out;
}

/** The `tool` messages and the assistant's `tool_calls` of the request a model turn received. */
function toolMessages(index: number) {
  const messages = fakeServer().requests[index]!.body.messages as Array<Record<string, unknown>>;
  const assistant = messages.find((m) => m.role === 'assistant' && m.tool_calls) as
    { tool_calls: Array<{ id: string; function: { name: string; arguments: string } }> } | undefined;
  const results = messages.filter((m) => m.role === 'tool') as Array<{
    tool_call_id: string;
    content: string;
  }>;
  return { calls: assistant?.tool_calls ?? [], results };
}

describe('OpenAIChat with tools', () => {
  it.each([
    [
      'split arguments, by index',
      [
        { index: 0, id: 'call_a', type: 'function', function: { name: 'add', arguments: '' } },
        { index: 0, function: { arguments: '{"a": 1,' } },
        { index: 1, id: 'call_b', type: 'function', function: { name: 'add', arguments: '{"a":' } },
        { index: 0, function: { arguments: ' "b": 2}' } },
        { index: 1, function: { arguments: ' 10, "b": 20}' } },
      ],
      ['call_a', 'call_b'],
    ],
    [
      'index 0 for every call, told apart by id',
      [
        { index: 0, id: 'call_a', type: 'function', function: { name: 'add', arguments: '{"a":1,' } },
        { index: 0, function: { arguments: '"b":2}' } },
        { index: 0, id: 'call_b', type: 'function', function: { name: 'add', arguments: '{"a":10,"b":20}' } },
      ],
      ['call_a', 'call_b'],
    ],
    [
      'no ids at all',
      [
        { index: 0, function: { name: 'add', arguments: '{"a":1,"b":2}' } },
        { index: 1, function: { name: 'add', arguments: '{"a":10,"b":20}' } },
      ],
      undefined,
    ],
  ])('joins %s, runs both calls and sends the results with matching ids', async (_, deltas, ids) => {
    fakeServer().enqueue({ chunks: ['Let me add.'], toolCalls: deltas }, { chunks: ['3 and 30.'] });
    const agent = agentWith([add]);
    const events = await collect(agent.run('Add 1+2 and 10+20', { stream: true }));
    checkRunEvents(events, 'completed');
    const first = fakeServer().requests[0]!.body;
    expect(first.tools).toEqual([{ type: 'function', function: add.definition }]);
    const { calls, results } = toolMessages(1);
    expect(calls.map((c) => JSON.parse(c.function.arguments) as unknown)).toEqual([
      { a: 1, b: 2 },
      { a: 10, b: 20 },
    ]);
    if (ids) expect(calls.map((c) => c.id)).toEqual(ids);
    expect(new Set(calls.map((c) => c.id)).size).toBe(2);
    expect(results).toEqual([
      { role: 'tool', tool_call_id: calls[0]!.id, content: '3' },
      { role: 'tool', tool_call_id: calls[1]!.id, content: '30' },
    ]);
    expect(events.at(-1)).toMatchObject({ event: 'RunCompleted', content: 'Let me add.3 and 30.' });
  });

  it('sends the error, never running the tool, for arguments that are not JSON or miss the schema', async () => {
    let runs = 0;
    const counted = tool({ ...add, name: 'counted', execute: () => ++runs });
    fakeServer().enqueue(
      {
        chunks: [],
        toolCalls: [
          { index: 0, id: 'c1', function: { name: 'counted', arguments: '{"a":1,' } },
          { index: 1, id: 'c2', function: { name: 'counted', arguments: '{"a":"x","b":2}' } },
          { index: 2, id: 'c3', function: { name: 'counted', arguments: '[1,2]' } },
        ],
      },
      { chunks: ['Sorry.'] },
    );
    const output = await agentWith([counted]).run('go');
    expect(output.status).toBe('completed');
    expect(runs).toBe(0);
    const { calls, results } = toolMessages(1);
    expect(results.map((r) => r.tool_call_id)).toEqual(['c1', 'c2', 'c3']);
    // The parser's own words (which differ between Node versions), then the text the model sent.
    expect(results[0]!.content).toMatch(/^Error: the arguments are not valid JSON \(.+\): \{"a":1,$/);
    expect(results[1]!.content).toMatch(/do not match the parameters of counted/);
    // Sent back as JSON, which servers that parse a call's arguments (vLLM) need: the broken text
    // is in the result, where the model reads why.
    expect(results[2]!.content).toBe('Error: the arguments are not a JSON object: [1,2]');
    expect(calls.map((call) => call.function.arguments)).toEqual(['{}', '{"a":"x","b":2}', '{}']);
  });

  it("sends a call back with what the server sent beside it (Gemini's thought_signature), in later runs too", async () => {
    // Gemini 3 refuses (400) the next request of a conversation whose calls lack their signature.
    const extra = { google: { thought_signature: 'EjQKMgEMOdbHsig' } };
    fakeServer().enqueue(
      {
        chunks: [],
        toolCalls: [
          {
            id: 'function-call-1',
            type: 'function',
            function: { name: 'add', arguments: '{"a":2,"b":2}' },
            extra_content: extra,
          },
        ],
      },
      { chunks: ['4'] },
      { chunks: ['Yes.'] },
    );
    const agent = agentWith([add]);
    const output = await agent.run('2+2');
    expect(output).toMatchObject({ status: 'completed', content: '4' });
    const call = {
      id: 'function-call-1',
      type: 'function',
      function: { name: 'add', arguments: '{"a":2,"b":2}' },
    };
    expect(toolMessages(1).calls).toEqual([{ ...call, extra_content: extra }]);
    expect(output.messages?.[0]).toMatchObject({ tool_calls: [{ ...call, extra_content: extra }] });
    await agent.run('sure?', { sessionId: output.session_id });
    expect(toolMessages(2).calls).toEqual([{ ...call, extra_content: extra }]);
  });

  it('ends a turn with calls even when the server says stop', async () => {
    fakeServer().enqueue(
      {
        chunks: [],
        finishReason: 'stop',
        toolCalls: [{ index: 0, id: 'c1', function: { name: 'add', arguments: '{"a":2,"b":2}' } }],
      },
      { chunks: ['4'] },
    );
    const output = await agentWith([add]).run('2+2');
    expect(output).toMatchObject({ status: 'completed', content: '4' });
    expect(fakeServer().requests).toHaveLength(2);
  });

  it('cancels while a tool runs: the signal aborts before cancelRun returns, one terminal event, no second request', async () => {
    let context: ToolExecuteContext | undefined;
    let started!: () => void;
    const running = new Promise<void>((resolve) => (started = resolve));
    let release!: (value: string) => void;
    // Ignores its signal: its late result must not revive the run.
    const stubborn = tool({
      name: 'stubborn',
      description: 'never stops by itself',
      parameters: z.object({}),
      execute: (_args, ctx) => {
        context = ctx;
        started();
        return new Promise<string>((resolve) => (release = resolve));
      },
    });
    fakeServer().enqueue({
      chunks: [],
      toolCalls: [{ index: 0, id: 'c1', function: { name: 'stubborn', arguments: '{}' } }],
    });
    const agent = agentWith([stubborn]);
    const run = agent.run('go', { stream: true });
    const reading = collect(run);
    await running;
    expect(agent.cancelRun(run.runId)).toBe(true);
    expect(context!.signal.aborted).toBe(true);
    const events = await reading;
    checkRunEvents(events, 'cancelled');
    release('late');
    await nextTurn();
    expect(fakeServer().requests).toHaveLength(1);
    const record = await agent.getRun(run.runId);
    expect(record?.tools[0]).toMatchObject({ status: 'cancelled', result: null });
    // The model finished a turn (`tool_calls`), not the run: a cancelled run has no finish reason.
    expect(record?.finish_reason).toBeNull();
  });
});
