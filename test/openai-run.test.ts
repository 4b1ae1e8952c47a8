/**
 * Runs on the OpenAI path, end to end over real sockets: orchestrator → run machine → OpenAIChat →
 * openai SDK → the local fake OpenAI server, with its fault modes.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { InspectionEvent } from 'xstate';
import { OpenAIChat } from '../src/model/openai-chat.js';
import { createOrchestrator, type OrchestratorOptions } from '../src/runtime/index.js';
import { checkRunEvents } from '../src/testing/check-run-events.js';
import { createFakeOpenAIServer, type FakeOpenAIServer } from '../src/testing/fake-openai-server.js';
import { collect } from './support/collect.js';
import { listen } from './support/listen.js';

// A server per test, so that `nextRequest()` and `requests` see only this test's requests.
let server: FakeOpenAIServer;
beforeEach(async () => {
  server = await createFakeOpenAIServer();
});
afterEach(() => server.close());

function setup(options: OrchestratorOptions = {}) {
  const orchestrator = createOrchestrator(options);
  const model = new OpenAIChat({ id: 'gpt-5-mini', baseURL: server.url, apiKey: 'test-key' });
  const start = () =>
    orchestrator.startRun({ agentId: 'writer', agentName: 'Writer', model, input: 'Tell a story' });
  return { orchestrator, model, start };
}

/** Resolves when a run actor first enters a state matching `path` (seen through the inspect option). */
function whenState(path: string): { inspect: (event: InspectionEvent) => void; reached: Promise<void> } {
  let resolve!: () => void;
  const reached = new Promise<void>((r) => (resolve = r));
  return {
    inspect: (event) => {
      if (event.type !== '@xstate.snapshot') return;
      const snapshot = event.snapshot as { matches?: (value: string) => boolean };
      if (snapshot.matches?.(path)) resolve();
    },
    reached,
  };
}

describe('the OpenAI path', () => {
  it('streams a normal answer to RunCompleted with the usage the server reported', async () => {
    const { start } = setup();
    server.enqueue({
      chunks: ['Once ', 'upon ', 'a time.'],
      usage: { prompt_tokens: 7, completion_tokens: 3 },
    });
    const run = start();
    const events = await collect(run.events());
    checkRunEvents(events, 'completed');
    const output = await run.result;
    expect(output.content).toBe('Once upon a time.');
    expect(output.metrics).toMatchObject({ input_tokens: 7, output_tokens: 3, total_tokens: 10 });
  });

  it('retries a stream that ended with no output (an empty 200), as one whose socket dropped then', async () => {
    const { start } = setup();
    server.enqueue({ fault: 'truncate', headers: false }, { chunks: ['Once.'] });
    const run = start();
    const events = await collect(run.events());
    checkRunEvents(events, 'completed');
    const output = await run.result;
    expect(output.content).toBe('Once.');
    expect(server.requests).toHaveLength(2);
  });

  it('cancel while streaming closes the upstream socket', async () => {
    const { orchestrator, start } = setup();
    server.enqueue({ fault: 'stall', chunks: ['first '] });
    const run = start();
    const request = await server.nextRequest();
    for await (const event of run.events()) if (event.event === 'RunContent') break;
    expect(orchestrator.cancelRun(run.runId, 'api')).toBe(true);
    await request.closed;
    expect(request.clientAborted).toBe(true);
    const events = await collect(run.events());
    checkRunEvents(events, 'cancelled');
    expect(events.at(-1)).toMatchObject({ content: 'first ', reason: 'api' });
  });

  it('fails with MODEL_STREAM_INCOMPLETE when the body ends without a finish reason or [DONE]', async () => {
    const { start } = setup();
    server.enqueue({ fault: 'truncate', chunks: ['cut ', 'short'] });
    const output = await start().result;
    expect(output).toMatchObject({
      status: 'failed',
      content: 'cut short',
      error: { code: 'MODEL_STREAM_INCOMPLETE' },
    });
  });

  it('fails with MODEL_STREAM_INCOMPLETE, without a retry, when the connection resets mid-stream', async () => {
    const { start } = setup();
    server.enqueue({ fault: 'reset', chunks: ['half '] });
    const output = await start().result;
    expect(output).toMatchObject({
      status: 'failed',
      content: 'half ',
      error: { code: 'MODEL_STREAM_INCOMPLETE' },
    });
    expect(server.requests.length).toBe(1);
  });

  it.each([
    { header: 'retry-after-ms: 300', wait: { retryAfterMs: 300 }, atLeastMs: 290 },
    { header: 'retry-after: 1 (seconds)', wait: { retryAfter: 1 }, atLeastMs: 990 },
  ])('retries a 429 after its $header delay, then streams', async ({ wait, atLeastMs }) => {
    const { start } = setup();
    server.enqueue({ fault: 'status', status: 429, ...wait }, { chunks: ['ok'] });
    const run = start();
    const first = await server.nextRequest();
    await first.closed;
    const firstAnswered = performance.now();
    await server.nextRequest();
    // A lower bound only: the retry can never come earlier than the server asked.
    expect(performance.now() - firstAnswered).toBeGreaterThanOrEqual(atLeastMs);
    expect(await run.result).toMatchObject({ status: 'completed', content: 'ok' });
  });

  it('a cancel during the retry wait ends the run at once, with no further request', async () => {
    // Only the run's timers are faked (the sockets are real), so the retry-after can be let pass.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      const retrying = whenState('streaming.retrying');
      const { orchestrator, model, start } = setup({ inspect: retrying.inspect });
      const requests = vi.spyOn(model, 'streamTo'); // counted where a retry would begin, in this process
      server.enqueue({ fault: 'status', status: 429, retryAfter: 20 });
      const run = start();
      await retrying.reached;
      expect(orchestrator.cancelRun(run.runId)).toBe(true);
      expect((await orchestrator.getRun(run.runId))?.status).toBe('cancelled');
      const output = await run.result;
      expect(output.status).toBe('cancelled');
      await vi.advanceTimersByTimeAsync(60_000); // past the 20 s the server asked for
      expect(requests).toHaveBeenCalledTimes(1);
      expect(server.requests.length).toBe(1);
    } finally {
      vi.useRealTimers();
    }
  });

  it('fails after the attempt limit when every attempt gets a 500', async () => {
    const { start } = setup({ limits: { retry: { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 5 } } });
    server.enqueue(...Array.from({ length: 3 }, () => ({ fault: 'status' as const, status: 500 })));
    const output = await start().result;
    expect(output).toMatchObject({ status: 'failed', error: { code: 'MODEL_REQUEST_FAILED', status: 500 } });
    expect(server.requests.length).toBe(3);
  });

  it('does not retry a 400', async () => {
    const { start } = setup();
    server.enqueue({ fault: 'status', status: 400, message: 'bad model' });
    const output = await start().result;
    expect(output).toMatchObject({ status: 'failed', error: { code: 'MODEL_REQUEST_FAILED', status: 400 } });
    expect(server.requests.length).toBe(1);
  });

  it('keeps a run alive while the model streams a tool call: its argument deltas are output', async () => {
    const { start } = setup({ limits: { idleTimeoutMs: 1000 } });
    server.enqueue({ fault: 'stall', chunks: 0 }, { chunks: ['There is no add tool.'] });
    const run = start();
    const request = await server.nextRequest();
    request.sendToolCalls([
      { index: 0, id: 'c1', type: 'function', function: { name: 'add', arguments: '' } },
    ]);
    // A model writing long arguments, a piece every 100 ms (a pace, not a wait for anything): 1.2 s
    // in all, past the idle limit, never silent for a tenth of it.
    for (const piece of ['{"a":', ' ', ' ', '1', ' ', ',', ' ', '"b"', ':', ' ', '2', '}']) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      request.sendToolCalls([{ index: 0, function: { arguments: piece } }]);
    }
    request.finish('tool_calls');
    const output = await run.result;
    expect(output).toMatchObject({ status: 'completed', content: 'There is no add tool.' });
    expect(output.tools).toMatchObject([{ tool_name: 'add', status: 'failed' }]);
  });

  it('fails with RUN_TIMEOUT when the server stalls before the first chunk, and closes the socket', async () => {
    const { start } = setup({ limits: { idleTimeoutMs: 100 } });
    server.enqueue({ fault: 'stall', chunks: 0 });
    const run = start();
    const request = await server.nextRequest();
    expect(await run.result).toMatchObject({ status: 'failed', error: { code: 'RUN_TIMEOUT' } });
    await request.closed;
    expect(request.clientAborted).toBe(true);
  });

  it('fails with RUN_TIMEOUT when the server stalls after the first chunk, keeping the content', async () => {
    const { start } = setup({ limits: { idleTimeoutMs: 100 } });
    server.enqueue({ fault: 'stall', chunks: ['so far'] });
    const run = start();
    const request = await server.nextRequest();
    expect(await run.result).toMatchObject({
      status: 'failed',
      content: 'so far',
      error: { code: 'RUN_TIMEOUT' },
    });
    await request.closed;
    expect(request.clientAborted).toBe(true);
  });
});

describe('a finish reason on a body the server keeps open', () => {
  it('keeps the run alive from the finish reason, not the last text, and ends it whole before its idle timeout', async () => {
    const frame = (body: object) =>
      `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 0, model: 'm', ...body })}\n\n`;
    let finish!: () => void;
    const upstream = await listen((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(
        frame({ choices: [{ index: 0, delta: { content: 'The whole answer.' }, finish_reason: null }] }),
      );
      // The finish reason and the usage come later, and then nothing: no `[DONE]`, no end of the body.
      finish = () =>
        res.write(
          frame({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] }) +
            frame({ choices: [], usage: { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 } }),
        );
    });
    const orchestrator = createOrchestrator({ limits: { idleTimeoutMs: 1500 } });
    try {
      const model = new OpenAIChat({ id: 'm', baseURL: `${upstream.url}/v1`, apiKey: 'k' });
      const run = orchestrator.startRun({ agentId: 'a', agentName: 'A', model, input: 'hi' });
      for await (const event of run.events()) if (event.event === 'RunContent') break;
      // 900 ms after the text (a pace, not a wait for anything): the answer is whole 750 ms after the
      // finish reason (half the idle timeout), while the run's idle timer counts 1.5 s from it.
      // Counted from the text, as it was, it fired 1.5 s after the text: RUN_TIMEOUT.
      await new Promise((resolve) => setTimeout(resolve, 900));
      finish();
      expect(await run.result).toMatchObject({
        status: 'completed',
        content: 'The whole answer.',
        finish_reason: 'stop',
        metrics: { input_tokens: 5, output_tokens: 3, total_tokens: 8 },
      });
    } finally {
      await orchestrator.shutdown();
      await upstream.close();
    }
  });
  it('ends a whole answer whose server then sends only empty chunks, half the idle timeout after its finish reason', async () => {
    const frame = (body: object) =>
      `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 0, model: 'm', ...body })}\n\n`;
    const timers: ReturnType<typeof setInterval>[] = [];
    const upstream = await listen((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(
        frame({ choices: [{ index: 0, delta: { content: 'The whole answer.' }, finish_reason: null }] }) +
          frame({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] }),
      );
      // Then an empty chunk every 100 ms, for good (a keep-alive), and no `[DONE]`.
      timers.push(setInterval(() => res.write(frame({ choices: [] })), 100));
    });
    // The time limit would end it `RUN_TIMEOUT` were it kept open by its empty chunks.
    const orchestrator = createOrchestrator({ limits: { idleTimeoutMs: 1000, timeoutMs: 3000 } });
    try {
      const model = new OpenAIChat({ id: 'm', baseURL: `${upstream.url}/v1`, apiKey: 'k' });
      const run = orchestrator.startRun({ agentId: 'a', agentName: 'A', model, input: 'hi' });
      expect(await run.result).toMatchObject({
        status: 'completed',
        content: 'The whole answer.',
        finish_reason: 'stop',
      });
    } finally {
      for (const timer of timers) clearInterval(timer);
      await orchestrator.shutdown();
      await upstream.close();
    }
  });
});

describe('the upstream connection of a completed run', () => {
  it('goes back to the pool: the next run reuses it, and no request is aborted', async () => {
    // A server of its own, to count connections and see how each answer ended.
    const ends: string[] = [];
    let connections = 0;
    const upstream = createServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const frame = (delta: object, finish: string | null = null) =>
        `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 0, model: 'm', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
      // All of it in one write, as most servers end a stream: `[DONE]` and the body's end in one read.
      res.end(frame({ content: 'ok' }) + frame({}, 'stop') + 'data: [DONE]\n\n');
      res.once('close', () => ends.push(res.writableFinished ? 'finished' : 'aborted'));
    });
    upstream.on('connection', () => connections++);
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = upstream.address() as AddressInfo;
      const orchestrator = createOrchestrator();
      const model = new OpenAIChat({ id: 'm', baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'k' });
      for (let i = 0; i < 2; i++) {
        const run = orchestrator.startRun({ agentId: 'a', agentName: 'A', model, input: 'hi' });
        expect(await run.result).toMatchObject({ status: 'completed', content: 'ok' });
      }
      expect(connections).toBe(1);
      expect(ends).toEqual(['finished', 'finished']);
      await orchestrator.shutdown();
    } finally {
      upstream.closeAllConnections();
      await new Promise((resolve) => upstream.close(resolve));
    }
  });
});
