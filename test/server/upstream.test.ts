/**
 * The server in front of a real upstream socket: OpenAIChat → openai SDK → the local fake OpenAI
 * server, so a cancel or a client disconnect is seen to close the upstream request.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Agent, createOrchestrator, OpenAIChat, type RunRecord } from '../../src/index.js';
import { createFakeOpenAIServer, type FakeOpenAIServer } from '../../src/testing/index.js';
import { postRun, serve } from '../support/app.js';
import { readSse } from '../support/sse.js';

let upstream: FakeOpenAIServer;
beforeEach(async () => {
  upstream = await createFakeOpenAIServer();
});
afterEach(() => upstream.close());

async function serveUpstream() {
  const orchestrator = createOrchestrator();
  const model = new OpenAIChat({ id: 'gpt-5-mini', baseURL: upstream.url, apiKey: 'test-key' });
  const agent = new Agent({
    name: 'Story Writer Agent',
    model,
    orchestrator,
    limits: { retry: { maxAttempts: 1 } },
  });
  const server = await serve({ agents: [agent] });
  return { ...server, agent, story: `${server.url}/agents/story-writer-agent` };
}

describe('against an OpenAI-compatible upstream', () => {
  it('a cancel over HTTP ends the stream with RunCancelled (reason api) and closes the upstream socket', async () => {
    const { story } = await serveUpstream();
    upstream.enqueue({ fault: 'stall', chunks: 0 }); // a held stream, released by hand
    const events = readSse(await postRun(story, { message: 'Write a long story' }));
    const { run_id } = (await events.next())!.data;
    const request = await upstream.nextRequest();
    request.send('Once upon');
    expect((await events.next())?.data).toMatchObject({ event: 'RunContent', content: 'Once upon' });

    const cancel = await fetch(`${story}/runs/${run_id}/cancel`, { method: 'POST' });
    expect(await cancel.json()).toEqual({ run_id, status: 'cancelled' });
    const rest = await events.rest();
    expect(rest.map((frame) => frame.data)).toEqual([
      expect.objectContaining({ event: 'RunCancelled', reason: 'api', content: 'Once upon' }),
    ]);
    await request.closed;
    expect(request.clientAborted).toBe(true);
  });

  it('a client that disconnects cancels the run (client_disconnect) and the upstream request', async () => {
    const { story, agent } = await serveUpstream();
    upstream.enqueue({ fault: 'stall', chunks: 0 });
    const client = new AbortController();
    const events = readSse(await postRun(story, { message: 'Hi' }, { signal: client.signal }));
    const { run_id } = (await events.next())!.data;
    const request = await upstream.nextRequest();
    client.abort();
    await request.closed;
    expect(request.clientAborted).toBe(true);
    expect(await agent.orchestrator.result(run_id)).toMatchObject({
      status: 'cancelled',
      cancel_reason: 'client_disconnect',
    });
  });

  it('with on_disconnect=continue, the upstream request goes on and the run completes', async () => {
    const { story, agent } = await serveUpstream();
    upstream.enqueue({ fault: 'stall', chunks: 0 });
    const client = new AbortController();
    const events = readSse(
      await postRun(story, { message: 'Hi', on_disconnect: 'continue' }, { signal: client.signal }),
    );
    const { run_id } = (await events.next())!.data;
    const request = await upstream.nextRequest();
    request.send('Still');
    expect((await events.next())?.data).toMatchObject({ content: 'Still' });
    client.abort();
    request.send(' going.');
    request.finish();
    const output = await agent.orchestrator.result(run_id);
    expect(output).toMatchObject({ status: 'completed', content: 'Still going.' });
    expect(request.clientAborted).toBe(false);
  });

  it('a second run in a session sends the first turn upstream', async () => {
    const { story } = await serveUpstream();
    upstream.enqueue({ chunks: ['Nice to meet', ' you, Ann.'] });
    const first = await postRun(story, { message: 'I am Ann.', session_id: 'chat', stream: false });
    expect(await first.json()).toMatchObject({ status: 'completed', content: 'Nice to meet you, Ann.' });
    const second = await postRun(story, { message: 'Who am I?', session_id: 'chat', stream: false });
    expect(((await second.json()) as RunRecord).status).toBe('completed');
    const messages = upstream.requests[1]!.body.messages as Array<{ role: string; content: string }>;
    expect(messages.filter((message) => message.role !== 'system')).toEqual([
      { role: 'user', content: 'I am Ann.' },
      { role: 'assistant', content: 'Nice to meet you, Ann.' },
      { role: 'user', content: 'Who am I?' },
    ]);
  });

  it('an upstream error ends the stream with RunError', async () => {
    const { story } = await serveUpstream();
    upstream.enqueue({ fault: 'status', status: 500, message: 'upstream is down' });
    const frames = await readSse(await postRun(story, { message: 'Hi' })).rest();
    expect(frames.map((frame) => frame.event)).toEqual(['RunStarted', 'RunError']);
    expect(frames.at(-1)?.data).toMatchObject({ code: 'MODEL_REQUEST_FAILED', status: 'failed' });
  });
});
