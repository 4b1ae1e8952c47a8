/**
 * A reasoning model that calls tools, over a real socket (the fake OpenAI server): each model turn
 * is a reasoning phase of its own, phases survive a pause and its continue (the run is parked in
 * the store and restored), and a turn's reasoning goes back to the model with its tool calls, in
 * the field the model used (DeepSeek's thinking mode refuses a request without it), with
 * OpenRouter's `reasoning_details` merged into whole entries (Anthropic's thinking needs them back).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  Agent,
  createOrchestrator,
  OpenAIChat,
  tool,
  type RunEvent,
  type RunPausedEvent,
  type Tool,
} from '../../src/index.js';
import { ReasoningPhases } from '../../src/runtime/reasoning-phases.js';
import { checkRunEvents, createFakeModel } from '../../src/testing/index.js';
import { collect } from '../support/collect.js';
import { useFakeOpenAIServer } from '../support/fake-server-agents.js';
import { confirmingTool } from '../support/confirming-tool.js';
import { listen, type Listening } from '../support/listen.js';

const { server: fakeServer, agentWith: agentOn } = useFakeOpenAIServer();
const agentWith = (tools: Tool[]) => agentOn(tools, 'Thinker');

const add = tool({
  name: 'add',
  description: 'Adds',
  parameters: z.object({ a: z.number(), b: z.number() }),
  execute: ({ a, b }) => a + b,
});
const addCall = {
  index: 0,
  id: 'call_1',
  type: 'function',
  function: { name: 'add', arguments: '{"a":2,"b":3}' },
};

/** The reasoning events and the tool events, in order, with what tells them apart. */
const outline = (events: RunEvent[]) =>
  events.flatMap((e) => {
    if (e.event === 'ReasoningCompleted') return [`${e.event} ${e.reasoning_content}`];
    if (e.event === 'ReasoningStarted' || e.event.startsWith('ToolCall') || e.event.startsWith('Run'))
      return e.event === 'RunContent' ? [] : [e.event];
    return [];
  });

const step = (text: string) => ({ title: text, reasoning: text });

describe('a reasoning model with tools', () => {
  it('ends a reasoning phase with its model turn: the next turn reasons in a phase of its own', async () => {
    fakeServer().enqueue(
      { reasoning: { deltas: ['I should add.'] }, chunks: [], toolCalls: [addCall] },
      { reasoning: { deltas: ['It said 5.'] }, chunks: ['5'] },
    );
    const events = await collect(agentWith([add]).run('2+3', { stream: true }));
    checkRunEvents(events, 'completed');
    expect(outline(events)).toEqual([
      'RunStarted',
      'ReasoningStarted',
      'ReasoningCompleted I should add.',
      'ToolCallStarted',
      'ToolCallCompleted',
      'ReasoningStarted',
      'ReasoningCompleted It said 5.',
      'RunCompleted',
    ]);
    expect(events.at(-1)).toMatchObject({
      reasoning_content: 'I should add.It said 5.',
      extra_data: { reasoning_steps: [step('I should add.'), step('It said 5.')] },
    });
  });

  /** The streamed call of `confirmingTool()`'s `publish`. */
  const publish = {
    index: 0,
    id: 'call_p',
    type: 'function',
    function: { name: 'publish', arguments: '{}' },
  };

  it('keeps the phases from before a pause: closed before RunPaused, all of them at the end', async () => {
    const agent = agentWith([confirmingTool()]);
    fakeServer().enqueue(
      { reasoning: { deltas: ['Publish it.'] }, chunks: [], toolCalls: [publish] },
      { chunks: ['Published.'] },
    );
    const first = await collect(agent.run('publish', { stream: true }));
    expect(outline(first)).toEqual([
      'RunStarted',
      'ReasoningStarted',
      'ReasoningCompleted Publish it.',
      'RunPaused',
    ]);
    const paused = first.at(-1) as RunPausedEvent;
    const tools = [{ tool_call_id: 'call_p', confirmed: true }];
    const rest = await collect(await agent.continueRun(paused.run_id, { tools, stream: true }));
    checkRunEvents([...first, ...rest], 'completed');
    // Reasoning only before the pause: the end still lists it.
    expect(rest.at(-1)).toMatchObject({ extra_data: { reasoning_steps: [step('Publish it.')] } });
    expect(await agent.getRun(paused.run_id)).toMatchObject({
      reasoning_content: 'Publish it.',
      extra_data: { reasoning_steps: [step('Publish it.')] },
    });
  });

  it('lists the phases of both sides of a pause', async () => {
    const agent = agentWith([confirmingTool()]);
    fakeServer().enqueue(
      { reasoning: { deltas: ['Step one.'] }, chunks: [], toolCalls: [publish] },
      { reasoning: { deltas: ['Step two.'] }, chunks: ['Published.'] },
    );
    const first = await collect(agent.run('publish', { stream: true }));
    const paused = first.at(-1) as RunPausedEvent;
    const tools = [{ tool_call_id: 'call_p', confirmed: true }];
    const rest = await collect(await agent.continueRun(paused.run_id, { tools, stream: true }));
    const steps = [step('Step one.'), step('Step two.')];
    expect(rest.find((e) => e.event === 'ReasoningCompleted')).toMatchObject({
      reasoning_content: 'Step two.',
      extra_data: { reasoning_steps: steps },
    });
    expect(rest.at(-1)).toMatchObject({ event: 'RunCompleted', extra_data: { reasoning_steps: steps } });
  });
});

describe('the reasoning of a turn that asked for tools', () => {
  /** The assistant messages with tool calls that the request of turn `index` carried. */
  const assistantTurns = (index: number) =>
    (fakeServer().requests[index]!.body.messages as Array<Record<string, unknown>>).filter(
      (m) => m.role === 'assistant' && m.tool_calls,
    );

  it.each(['reasoning_content', 'reasoning'] as const)(
    'goes back to the model on its assistant message, in the field it came in (%s)',
    async (field) => {
      fakeServer().enqueue(
        { reasoning: { deltas: ['Need ', 'to add.'], field }, chunks: [], toolCalls: [addCall] },
        { chunks: ['5'] },
      );
      const agent = agentWith([add]);
      const output = await agent.run('2+3');
      expect(output.status).toBe('completed');
      const [turn] = assistantTurns(1);
      expect(turn).toMatchObject({ [field]: 'Need to add.' });
      expect(Object.keys(turn!)).not.toContain(field === 'reasoning' ? 'reasoning_content' : 'reasoning');
      // The session's next run sends it too (DeepSeek: in every later request).
      fakeServer().enqueue({ chunks: ['Yes.'] });
      await agent.run('sure?', { sessionId: output.session_id });
      expect(assistantTurns(2)).toEqual([turn]);
    },
  );

  it("goes back empty when the server streamed the field empty (DeepSeek's thinking mode wants it)", async () => {
    fakeServer().enqueue(
      { reasoning: { deltas: [''], field: 'reasoning_content' }, chunks: [], toolCalls: [addCall] },
      { chunks: ['5'] },
    );
    expect((await agentWith([add]).run('2+3')).status).toBe('completed');
    expect(assistantTurns(1)).toEqual([expect.objectContaining({ reasoning_content: '' })]);
  });

  it('is not added to a turn that did not reason (OpenAI models stream none)', async () => {
    fakeServer().enqueue({ chunks: ['Adding.'], toolCalls: [addCall] }, { chunks: ['5'] });
    await agentWith([add]).run('2+3');
    expect(Object.keys(assistantTurns(1)[0]!)).toEqual(['role', 'content', 'tool_calls']);
  });

  it("is not sent back when it came in no field (Mistral's thinking parts, a model of one's own)", async () => {
    // Mistral's API refuses (422) an assistant message with a field it does not know.
    const model = createFakeModel();
    const agent = new Agent({ name: 'Parts', model, tools: [add], orchestrator: createOrchestrator() });
    const run = agent.run('2+3');
    const first = await model.nextCall();
    first.emitReasoning('Need to add.');
    first.callTools([{ id: 'call_1', name: 'add', arguments: { a: 2, b: 3 } }]);
    const second = await model.nextCall();
    expect(second.messages[1]).toEqual({
      role: 'assistant',
      content: '',
      tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'add', arguments: '{"a":2,"b":3}' } }],
    });
    second.emit('5');
    second.end();
    expect(await run).toMatchObject({ status: 'completed', reasoning_content: 'Need to add.' });
  });

  it('is left out of every request with sendReasoning: false; the run keeps it in its messages', async () => {
    // Groq's API has refused the field on an assistant message (400 "property 'reasoning' is unsupported").
    fakeServer().enqueue(
      { reasoning: { deltas: ['Need to add.'], field: 'reasoning' }, chunks: [], toolCalls: [addCall] },
      { chunks: ['5'] },
      { chunks: ['Yes.'] },
    );
    const model = new OpenAIChat({
      id: 'fake',
      apiKey: 'test',
      baseURL: fakeServer().url,
      sendReasoning: false,
    });
    const agent = new Agent({ name: 'Strict', model, tools: [add], orchestrator: createOrchestrator() });
    const output = await agent.run('2+3');
    expect(output.status).toBe('completed');
    const [turn] = assistantTurns(1);
    expect(Object.keys(turn!)).toEqual(['role', 'content', 'tool_calls']);
    expect(output.messages?.[0]).toEqual({ ...turn, reasoning: 'Need to add.' });
    // Nor in the session's next run, which sends the run's messages again.
    await agent.run('sure?', { sessionId: output.session_id });
    expect(assistantTurns(2)).toEqual([turn]);
  });
});

describe("OpenRouter's reasoning_details of a turn that asked for tools", () => {
  /** One streamed answer: its deltas, each a chunk, then the finish reason and `[DONE]`. */
  interface Turn {
    deltas: object[];
    finishReason: string;
  }

  const servers: Listening[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((server) => server.close()));
  });

  /**
   * A local server that streams as OpenRouter does, each request the next of `turns`, and keeps the
   * bodies it received. (The fake OpenAI server streams no `reasoning_details`.)
   */
  async function openRouterLike(turns: Turn[]) {
    const bodies: Array<{ messages: unknown[] }> = [];
    const frame = (delta: object, finishReason: string | null) =>
      `data: ${JSON.stringify({
        id: 'gen-1',
        object: 'chat.completion.chunk',
        created: 0,
        model: 'anthropic/claude-sonnet-4.5',
        choices: [{ index: 0, delta, finish_reason: finishReason }],
      })}\n\n`;
    const server = await listen((req, res) => {
      let raw = '';
      req.setEncoding('utf8');
      req.on('data', (part: string) => (raw += part));
      req.on('end', () => {
        bodies.push(JSON.parse(raw) as { messages: unknown[] });
        const turn = turns[bodies.length - 1] ?? { deltas: [{ content: 'Done.' }], finishReason: 'stop' };
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        const frames = turn.deltas.map((delta) => frame(delta, null));
        res.end(`${frames.join('')}${frame({}, turn.finishReason)}data: [DONE]\n\n`);
      });
    });
    servers.push(server);
    const model = new OpenAIChat({
      id: 'anthropic/claude-sonnet-4.5',
      apiKey: 'test',
      baseURL: `${server.url}/v1`,
    });
    return { bodies, model, url: `${server.url}/v1` };
  }

  const text = (fields: object) => ({
    type: 'reasoning.text',
    format: 'anthropic-claude-v1',
    index: 0,
    ...fields,
  });
  const redacted = { type: 'reasoning.encrypted', data: 'opaque', format: 'anthropic-claude-v1', index: 1 };
  /** Claude's thinking as OpenRouter streams it: the text in pieces, the signature alone, a redacted block. */
  const thinking = [
    {
      role: 'assistant',
      content: null,
      reasoning: 'Need ',
      reasoning_details: [text({ text: 'Need ', signature: null })],
    },
    { content: null, reasoning: 'to add.', reasoning_details: [text({ text: 'to add.' })] },
    { content: null, reasoning_details: [text({ signature: 'sig-1' })] },
    { content: null, reasoning_details: [redacted] },
  ];
  /** What goes back: the whole entries, in order. */
  const details = [text({ text: 'Need to add.', signature: 'sig-1' }), redacted];
  const callOf = (name: string, args: string) => ({
    id: 'call_1',
    type: 'function',
    function: { name, arguments: args },
  });

  it("go back whole, in order, on its assistant message: in the run's next request and in its session's", async () => {
    const { bodies, model } = await openRouterLike([
      { deltas: [...thinking, { content: null, tool_calls: [addCall] }], finishReason: 'tool_calls' },
      // The answer reasons too: it asked for no tools, and nothing of it goes back.
      {
        deltas: [
          { reasoning: 'It said 5.', reasoning_details: [text({ text: 'It said 5.', signature: 'sig-2' })] },
          { content: '5' },
        ],
        finishReason: 'stop',
      },
      { deltas: [{ content: 'Yes.' }], finishReason: 'stop' },
    ]);
    const agent = new Agent({ name: 'Claude', model, tools: [add], orchestrator: createOrchestrator() });
    const output = await agent.run('2+3');
    expect(output.status).toBe('completed');
    const turn = {
      role: 'assistant',
      content: '',
      tool_calls: [callOf('add', '{"a":2,"b":3}')],
      reasoning: 'Need to add.',
      reasoning_details: details,
    };
    const round = [turn, { role: 'tool', tool_call_id: 'call_1', content: '5' }];
    expect(bodies[1]!.messages).toEqual([{ role: 'user', content: '2+3' }, ...round]);
    expect(output.messages).toEqual(round);
    await agent.run('sure?', { sessionId: output.session_id });
    expect(bodies[2]!.messages).toEqual([
      { role: 'user', content: '2+3' },
      ...round,
      { role: 'assistant', content: '5' },
      { role: 'user', content: 'sure?' },
    ]);
  });

  it('are left out of the requests with sendReasoning: false; the run keeps them in its messages', async () => {
    const { bodies, url } = await openRouterLike([
      { deltas: [...thinking, { content: null, tool_calls: [addCall] }], finishReason: 'tool_calls' },
      { deltas: [{ content: '5' }], finishReason: 'stop' },
    ]);
    const model = new OpenAIChat({
      id: 'anthropic/claude-sonnet-4.5',
      apiKey: 'test',
      baseURL: url,
      sendReasoning: false,
    });
    const agent = new Agent({ name: 'Claude', model, tools: [add], orchestrator: createOrchestrator() });
    const output = await agent.run('2+3');
    const sent = { role: 'assistant', content: '', tool_calls: [callOf('add', '{"a":2,"b":3}')] };
    expect(bodies[1]!.messages[1]).toEqual(sent);
    expect(output.messages?.[0]).toEqual({ ...sent, reasoning: 'Need to add.', reasoning_details: details });
  });

  it('survive a pause: the request after the person confirms the call sends them', async () => {
    const { bodies, model } = await openRouterLike([
      {
        deltas: [
          ...thinking,
          { content: null, tool_calls: [{ ...addCall, function: { name: 'publish', arguments: '{}' } }] },
        ],
        finishReason: 'tool_calls',
      },
      { deltas: [{ content: 'Published.' }], finishReason: 'stop' },
    ]);
    const agent = new Agent({
      name: 'Claude',
      model,
      tools: [confirmingTool()],
      orchestrator: createOrchestrator(),
    });
    const paused = (await collect(agent.run('publish', { stream: true }))).at(-1) as RunPausedEvent;
    expect(paused.event).toBe('RunPaused');
    const tools = [{ tool_call_id: 'call_1', confirmed: true }];
    expect((await agent.continueRun(paused.run_id, { tools })).status).toBe('completed');
    expect(bodies[1]!.messages[1]).toEqual({
      role: 'assistant',
      content: '',
      tool_calls: [callOf('publish', '{}')],
      reasoning: 'Need to add.',
      reasoning_details: details,
    });
  });
});

describe('a turn the token limit cut inside a tool call', () => {
  it('runs no call and completes with finish reason length; a whole call under length runs', async () => {
    const cutCall = { ...addCall, function: { name: 'add', arguments: '{"a": 2, "b"' } };
    fakeServer().enqueue({ chunks: ['Adding. '], toolCalls: [cutCall], finishReason: 'length' });
    const events = await collect(agentWith([add]).run('2+3', { stream: true }));
    checkRunEvents(events, 'completed');
    expect(events.map((e) => e.event)).toEqual(['RunStarted', 'RunContent', 'RunCompleted']);
    expect(events.at(-1)).toMatchObject({ finish_reason: 'length', content: 'Adding. ', tools: [] });
    expect(fakeServer().requests).toHaveLength(1);

    // Cut right after the name: the last call, with no arguments yet.
    const named = { ...addCall, function: { name: 'add', arguments: '' } };
    fakeServer().enqueue({ chunks: [], toolCalls: [named], finishReason: 'length' });
    expect(await agentWith([add]).run('2+3')).toMatchObject({ finish_reason: 'length', tools: [] });

    fakeServer().enqueue({ chunks: [], toolCalls: [addCall], finishReason: 'length' }, { chunks: ['5'] });
    const output = await agentWith([add]).run('2+3');
    expect(output).toMatchObject({ status: 'completed', content: '5', tools: [{ result: '5' }] });
  });
});

describe('ReasoningPhases', () => {
  it('goes on from the steps of a run taken back from the store', () => {
    const phases = new ReasoningPhases([step('Before.')]);
    phases.project('', 'After.');
    expect(phases.close()).toMatchObject({
      event: 'ReasoningCompleted',
      reasoning_content: 'After.',
      extra_data: { reasoning_steps: [step('Before.'), step('After.')] },
    });
  });
});
