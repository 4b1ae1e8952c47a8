/**
 * The tool demo agent that `runstate serve` offers with no config (`tool-demo-agent`, on the offline
 * model): over HTTP its runs call tools the way the Agent UI shows them as chips, a cancel stops its
 * slow tool mid-call, and its confirmation tool pauses the run until a continue.
 */
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { checkRunEvents } from '../../src/testing/index.js';
import type { RunEvent, RunRecord, ToolExecution } from '../../src/index.js';
import { createAgents } from '../../src/server/create-agents.js';
import { DEMO_TOOLS } from '../../src/server/demo-tools.js';
import { postRun, serve } from '../support/app.js';
import { parseSse, readSse } from '../support/sse.js';

// The demo agents run on OpenAI when a key is set: these tests are about the offline model.
beforeEach(() => {
  vi.stubEnv('OPENAI_API_KEY', '');
  vi.stubEnv('OPENAI_BASE_URL', '');
  return () => vi.unstubAllEnvs();
});

async function serveDemo() {
  const agents = await createAgents();
  const server = await serve({ agents });
  return { agentUrl: `${server.url}/agents/tool-demo-agent`, agents };
}

/**
 * What Agno's Agent UI (c084377) reads from a tool call: it merges calls by `tool_call_id` and shows
 * one chip per call with `tool_name`; its `ToolCall` type has these fields.
 */
function expectUiToolCall(tool: ToolExecution, name: string): void {
  expect(tool.tool_call_id).toMatch(/^\S+$/);
  expect(tool.tool_name).toBe(name);
  expect(tool.tool_args).toBeTypeOf('object'); // an object, not JSON text
  expect(tool.tool_call_error).toBeTypeOf('boolean');
  expect(tool.created_at).toBeTypeOf('number');
  expect(tool.created_at).toBeLessThan(1e11); // seconds, as Agno sends them
  expect('content' in tool).toBe(true);
  expect('metrics' in tool).toBe(true);
}

/** The Agent UI scans the body for JSON objects: one per frame, on one `data:` line, no top-level `data`. */
function uiFrames(body: string): RunEvent[] {
  const messages = parseSse(body);
  expect(body.split('\n').filter((line) => line.startsWith('data:'))).toHaveLength(messages.length);
  const events = messages.map((message) => JSON.parse(message.data) as Record<string, unknown>);
  for (const event of events) expect(event).not.toHaveProperty('data');
  return events as unknown as RunEvent[];
}

describe('the tool demo agent', () => {
  it('is served with its tools when the config declares no agents', async () => {
    const agents = await createAgents();
    const demo = agents.find((agent) => agent.id === 'tool-demo-agent');
    expect(demo?.tools.map((tool) => tool.name)).toEqual(['add', 'slow_search', 'publish_note']);
    expect(demo?.model.provider).toBe('offline'); // no OPENAI_API_KEY in tests
    await agents[0]!.orchestrator.shutdown();
  });

  it('calls the tool a message names, with the events the Agent UI turns into chips', async () => {
    const { agentUrl } = await serveDemo();
    const response = await postRun(agentUrl, { message: 'add 2 and 3' });
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const events = uiFrames(await response.text());
    checkRunEvents(events, 'completed');

    const started = events.filter((e) => e.event === 'ToolCallStarted');
    const completed = events.filter((e) => e.event === 'ToolCallCompleted');
    expect(started).toHaveLength(1);
    expect(completed).toHaveLength(1);
    const start = started[0]!.tool;
    const end = completed[0]!.tool;
    expectUiToolCall(start, 'add');
    expectUiToolCall(end, 'add');
    expect(start).toMatchObject({ tool_args: { a: 2, b: 3 }, status: 'running', tool_call_error: false });
    expect(end).toMatchObject({
      tool_call_id: start.tool_call_id,
      tool_args: { a: 2, b: 3 },
      result: '{"sum":5}',
      content: '{"sum":5}',
      tool_call_error: false,
      status: 'completed',
    });
    expect(end.metrics).toMatchObject({
      start_time: expect.any(Number) as unknown,
      duration: expect.any(Number) as unknown,
    });

    // RunCompleted's tools replace the UI's chips; its content replaces what streamed.
    const last = events.at(-1)!;
    if (last.event !== 'RunCompleted') throw new Error(`ended with ${last.event}`);
    expect(last.tools).toHaveLength(1);
    expectUiToolCall(last.tools[0]!, 'add');
    expect(last.tools[0]).toMatchObject({ tool_call_id: start.tool_call_id, content: '{"sum":5}' });
    expect(last.content).toContain('add returned: {"sum":5}');
    expect(events[0]).toMatchObject({ event: 'RunStarted', session_id: expect.any(String) as unknown });
  });

  it('is cancelled while its slow tool runs: RunCancelled, and the record shows the call cancelled', async () => {
    const { agentUrl } = await serveDemo();
    const response = await postRun(agentUrl, { message: 'slow search for lighthouses in 60 seconds' });
    const stream = readSse(response);
    const seen: RunEvent[] = [];
    for (let frame = await stream.next(); frame; frame = await stream.next()) {
      seen.push(frame.data);
      if (frame.data.event === 'ToolCallStarted') break;
    }
    const started = seen.at(-1)!;
    if (started.event !== 'ToolCallStarted') throw new Error('the stream ended before the tool started');
    expect(started.tool).toMatchObject({
      tool_name: 'slow_search',
      tool_args: { query: 'lighthouses', seconds: 60 },
    });

    const cancel = await fetch(`${agentUrl}/runs/${started.run_id}/cancel`, { method: 'POST' });
    expect(await cancel.json()).toEqual({ run_id: started.run_id, status: 'cancelled' });
    const events = [...seen, ...(await stream.rest()).map((frame) => frame.data)];
    checkRunEvents(events, 'cancelled');
    expect(events.at(-1)).toMatchObject({ event: 'RunCancelled', reason: 'api' });
    expect(events.filter((e) => e.event === 'ToolCallCompleted')).toEqual([]);

    const record = (await (await fetch(`${agentUrl}/runs/${started.run_id}`)).json()) as RunRecord;
    expect(record.status).toBe('cancelled');
    expect(record.tools).toEqual([
      expect.objectContaining({ tool_name: 'slow_search', status: 'cancelled', result: null }),
    ]);
  });

  it('stops its slow tool when the signal aborts', async () => {
    const slow = DEMO_TOOLS.find((tool) => tool.name === 'slow_search')!;
    const controller = new AbortController();
    const context = { signal: controller.signal, toolCallId: 'c', runId: 'r', sessionId: 's' };
    const running = Promise.resolve(slow.execute({ query: 'x', seconds: 60 }, context));
    controller.abort();
    await expect(running).rejects.toMatchObject({ name: 'AbortError' });
  });

  it('pauses before publish_note, and a continue over HTTP runs it', async () => {
    const { agentUrl } = await serveDemo();
    const response = await postRun(agentUrl, { message: "publish note 'the lighthouse is lit'" });
    const paused = uiFrames(await response.text());
    expect(paused.map((e) => e.event)).toEqual(['RunStarted', 'RunPaused']);
    const pause = paused[1]!;
    if (pause.event !== 'RunPaused') throw new Error('no RunPaused');
    expect(pause.status).toBe('paused');
    expect(pause.tools).toEqual([
      expect.objectContaining({
        tool_name: 'publish_note',
        tool_args: { note: 'the lighthouse is lit' },
        requires_confirmation: true,
        status: 'awaiting_confirmation',
      }),
    ]);
    expectUiToolCall(pause.tools[0]!, 'publish_note');

    const form = new FormData();
    form.set('tools', JSON.stringify([{ tool_call_id: pause.tools[0]!.tool_call_id, confirmed: true }]));
    const continued = await fetch(`${agentUrl}/runs/${pause.run_id}/continue`, {
      method: 'POST',
      body: form,
    });
    const rest = uiFrames(await continued.text());
    checkRunEvents([...paused, ...rest], 'completed');
    expect(rest[0]).toMatchObject({ event: 'RunContinued', seq: 3 });
    const done = rest.find((e) => e.event === 'ToolCallCompleted');
    expect(done?.event === 'ToolCallCompleted' && done.tool).toMatchObject({
      tool_name: 'publish_note',
      confirmed: true,
      result: 'published the note "the lighthouse is lit"',
    });
  });
});
