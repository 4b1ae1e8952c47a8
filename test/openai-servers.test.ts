/**
 * What a user sees from runs against the shapes real OpenAI-compatible servers were seen to send
 * (issue 10): reasoning models, token limits, errors inside a 200 stream, FastAPI error bodies,
 * truncated answers, missing usage, and a body left open after `[DONE]`. End to end over real
 * sockets: orchestrator → run machine → OpenAIChat → the local fake OpenAI server.
 */
import OpenAI from 'openai';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { OpenAIChat, type OpenAIChatOptions } from '../src/model/openai-chat.js';
import { createOrchestrator, type OrchestratorOptions } from '../src/runtime/index.js';
import { checkRunEvents } from '../src/testing/check-run-events.js';
import {
  createFakeOpenAIServer,
  type FakeOpenAIServer,
  type FakeOpenAIServerOptions,
} from '../src/testing/fake-openai-server.js';
import { collect } from './support/collect.js';

let server: FakeOpenAIServer | undefined;
afterEach(async () => {
  vi.useRealTimers();
  await server?.close();
  server = undefined;
});

/** Quick retries: these tests count attempts, they do not wait for backoff. */
const FAST_RETRY = { retry: { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 2 } };

async function setup(
  options: {
    server?: FakeOpenAIServerOptions;
    model?: Partial<OpenAIChatOptions>;
    run?: OrchestratorOptions;
  } = {},
) {
  const fake = await createFakeOpenAIServer(options.server);
  server = fake;
  const orchestrator = createOrchestrator({ limits: FAST_RETRY, ...options.run });
  const model = new OpenAIChat({ id: 'gpt-5-mini', baseURL: fake.url, apiKey: 'test-key', ...options.model });
  const start = () => orchestrator.startRun({ agentId: 'writer', agentName: 'Writer', model, input: 'Hi' });
  return { server: fake, orchestrator, start };
}

describe('a reasoning model (llama.cpp with a DeepSeek-R1 template, vLLM, Ollama)', () => {
  it('thinks for longer than the idle timeout, with shorter gaps, and completes with its reasoning', async () => {
    // Only the run's timers are faked (the sockets are real): 4.5 s of reasoning pass at once.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const { server, orchestrator, start } = await setup({ run: { limits: { idleTimeoutMs: 1_000 } } });
    server.enqueue({ fault: 'stall', chunks: 0 });
    const run = start();
    const request = await server.nextRequest();
    const reader = run.events()[Symbol.asyncIterator]();
    expect((await reader.next()).value).toMatchObject({ event: 'RunStarted' });
    for (let i = 1; i <= 5; i++) {
      request.sendReasoning(`Step ${i}. `);
      if (i === 1) expect((await reader.next()).value).toMatchObject({ event: 'ReasoningStarted' });
      expect((await reader.next()).value).toMatchObject({
        event: 'RunContent',
        content: '',
        reasoning_content: `Step ${i}. `,
      });
      await vi.advanceTimersByTimeAsync(900);
      expect((await orchestrator.getRun(run.runId))?.status).toBe('streaming');
    }
    request.send('Answer.');
    request.finish('stop');
    const output = await run.result;
    const events = await collect(run.events());
    checkRunEvents(events, 'completed');
    const reasoning = 'Step 1. Step 2. Step 3. Step 4. Step 5. ';
    expect(events.slice(-3)).toMatchObject([
      { event: 'ReasoningCompleted', reasoning_content: reasoning },
      { event: 'RunContent', content: 'Answer.' },
      { event: 'RunCompleted', content: 'Answer.', reasoning_content: reasoning, finish_reason: 'stop' },
    ]);
    expect(output).toMatchObject({
      status: 'completed',
      content: 'Answer.',
      reasoning_content: reasoning,
      extra_data: { reasoning_steps: [{ title: 'Step 1. Step 2. Step 3. Step 4. Step 5.', reasoning }] },
    });
    // The first reasoning delta was the first token.
    expect(output.metrics.time_to_first_token).toBeLessThan(1);
  });

  it.each(['reasoning_content', 'reasoning'] as const)(
    'reads reasoning sent in delta.%s, then the answer',
    async (field) => {
      const { server, start } = await setup();
      server.enqueue({ reasoning: { deltas: ['Hmm. ', 'Yes.'], field }, chunks: ['Hello', '!'] });
      const run = start();
      const events = await collect(run.events());
      checkRunEvents(events, 'completed');
      expect(await run.result).toMatchObject({ content: 'Hello!', reasoning_content: 'Hmm. Yes.' });
    },
  );

  it('with a token limit spent on reasoning, completes with finish reason length and keeps the reasoning', async () => {
    const { server, start } = await setup({ model: { maxTokens: 3 } });
    server.enqueue({ reasoning: { deltas: ['a', 'b', 'c'] }, chunks: [], finishReason: 'length' });
    const output = await start().result;
    expect(output).toMatchObject({
      status: 'completed',
      content: '',
      reasoning_content: 'abc',
      finish_reason: 'length',
    });
    expect(output.metrics.time_to_first_token).not.toBeNull();
  });
});

describe('maxTokens', () => {
  it('is sent as max_tokens to a compatible server, which then stops at the limit (finish reason length)', async () => {
    const { server, start } = await setup({
      server: { maxTokensFields: ['max_tokens'] },
      model: { maxTokens: 2 },
    });
    server.enqueue({ chunks: ['one ', 'two ', 'three ', 'four'] });
    const run = start();
    const events = await collect(run.events());
    const request = await server.nextRequest();
    expect(request.body.max_tokens).toBe(2);
    expect(request.body).not.toHaveProperty('max_completion_tokens');
    expect(events.at(-1)).toMatchObject({
      event: 'RunCompleted',
      content: 'one two ',
      finish_reason: 'length',
    });
    expect(await run.result).toMatchObject({ status: 'completed', finish_reason: 'length' });
  });

  it('is sent as max_completion_tokens when maxTokensField says so (a server that ignores it answers in full)', async () => {
    const { server, start } = await setup({
      server: { maxTokensFields: ['max_tokens'] },
      model: { maxTokens: 2, maxTokensField: 'max_completion_tokens' },
    });
    server.enqueue({ chunks: ['one ', 'two ', 'three'] });
    const output = await start().result;
    const request = await server.nextRequest();
    expect(request.body).toMatchObject({ max_completion_tokens: 2 });
    expect(request.body).not.toHaveProperty('max_tokens');
    expect(output).toMatchObject({ content: 'one two three', finish_reason: 'stop' });
  });

  it('is sent as max_completion_tokens to OpenAI itself', async () => {
    const fake = await createFakeOpenAIServer();
    server = fake;
    // A client for api.openai.com whose requests this test routes to the local server.
    const client = new OpenAI({
      apiKey: 'test-key',
      baseURL: 'https://api.openai.com/v1',
      fetch: (url, init) => {
        const href = typeof url === 'string' ? url : url instanceof URL ? url.href : url.url;
        return fetch(href.replace('https://api.openai.com/v1', fake.url), init);
      },
    });
    const model = new OpenAIChat({ id: 'gpt-5-mini', client, maxTokens: 5 });
    const orchestrator = createOrchestrator();
    const output = await orchestrator.startRun({ agentId: 'a', agentName: 'A', model, input: 'Hi' }).result;
    expect(output.status).toBe('completed');
    const request = await fake.nextRequest();
    expect(request.body).toMatchObject({ max_completion_tokens: 5 });
    expect(request.body).not.toHaveProperty('max_tokens');
  });
});

describe('an error object inside a 200 stream (llama.cpp, a proxy rate limit)', () => {
  it.each([
    { status: 500, what: 'a server error' },
    { status: 429, what: 'a streamed rate limit' },
  ])('before any output: $what is retried, and the next attempt streams', async ({ status }) => {
    const { server, start } = await setup();
    server.enqueue({ fault: 'error', status, message: 'slot unavailable' }, { chunks: ['ok'] });
    const run = start();
    const events = await collect(run.events());
    checkRunEvents(events, 'completed');
    expect(await run.result).toMatchObject({ status: 'completed', content: 'ok' });
    expect(server.requests).toHaveLength(2);
  });

  it('before any output, on every attempt: fails with its status and message after the attempt limit', async () => {
    const { server, start } = await setup();
    server.setDefault({ fault: 'error', status: 503, message: 'loading model' });
    const run = start();
    const events = await collect(run.events());
    expect(events.at(-1)).toMatchObject({
      event: 'RunError',
      code: 'MODEL_REQUEST_FAILED',
      content: '503 loading model (sent inside the stream)',
    });
    expect((await run.result).error).toMatchObject({
      code: 'MODEL_REQUEST_FAILED',
      status: 503,
      retryable: true,
    });
    expect(server.requests).toHaveLength(3);
  });

  it('before any output, with a status not worth retrying: fails at once', async () => {
    const { server, start } = await setup();
    server.enqueue({ fault: 'error', status: 400, message: 'context too long' });
    const output = await start().result;
    expect(output.error).toMatchObject({ code: 'MODEL_REQUEST_FAILED', status: 400, retryable: false });
    expect(output.error?.message).toContain('context too long');
    expect(server.requests).toHaveLength(1);
  });

  it('after output: fails with MODEL_STREAM_INCOMPLETE and the server reason, keeps the content, no retry', async () => {
    const { server, start } = await setup();
    server.enqueue({ fault: 'error', status: 500, message: 'out of memory', chunks: ['partial '] });
    const run = start();
    const events = await collect(run.events());
    checkRunEvents(events, 'failed');
    expect(events.at(-1)).toMatchObject({ event: 'RunError', code: 'MODEL_STREAM_INCOMPLETE' });
    const output = await run.result;
    expect(output).toMatchObject({ status: 'failed', content: 'partial ' });
    expect(output.error).toMatchObject({ code: 'MODEL_STREAM_INCOMPLETE', status: 500, retryable: false });
    expect(output.error?.message).toContain('out of memory');
    expect(server.requests).toHaveLength(1);
  });
});

describe('the server reason in an error body', () => {
  it.each([
    { body: 'detail' as const, server: 'transformers serve (FastAPI)' },
    { body: 'message' as const, server: 'a bare {message}' },
    { body: 'text' as const, server: 'a plain-text proxy' },
    { body: 'openai' as const, server: 'OpenAI' },
  ])('is the run error message for $server', async ({ body }) => {
    const { server, start } = await setup();
    server.enqueue({ fault: 'status', status: 400, body, message: "The model 'gpt-9' does not exist" });
    const run = start();
    const events = await collect(run.events());
    expect(events.at(-1)).toMatchObject({
      event: 'RunError',
      code: 'MODEL_REQUEST_FAILED',
      content: "400 The model 'gpt-9' does not exist",
    });
    expect((await run.result).error).toMatchObject({ status: 400, retryable: false });
  });
});

describe('a truncated answer, missing usage, a body left open', () => {
  it('tells a run cut by the token limit from a finished one: finish_reason length', async () => {
    const { server, start } = await setup();
    server.enqueue({ chunks: ['Once upon'], finishReason: 'length' });
    const run = start();
    const events = await collect(run.events());
    expect(events.at(-1)).toMatchObject({
      event: 'RunCompleted',
      status: 'completed',
      finish_reason: 'length',
    });
    expect(await run.result).toMatchObject({ content: 'Once upon', finish_reason: 'length' });
  });

  it('reports unknown (null) token counts for a server that sends no usage, never 0', async () => {
    const { server, start } = await setup();
    server.enqueue({ chunks: ['Hi'], usage: false });
    const run = start();
    const events = await collect(run.events());
    const metrics = { input_tokens: null, output_tokens: null, total_tokens: null };
    expect(events.at(-1)).toMatchObject({ event: 'RunCompleted', metrics });
    const output = await run.result;
    expect(output.metrics).toMatchObject(metrics);
    expect(output.metrics.time_to_first_token).not.toBeNull();
  });

  it('completes at [DONE] when the server keeps the body open, and closes the socket', async () => {
    // The default idle timeout (60 s): a run that waited for the body to close would end RUN_TIMEOUT.
    const { server, start } = await setup();
    server.enqueue({ chunks: ['All ', 'done.'], keepOpen: true });
    const run = start();
    const events = await collect(run.events());
    checkRunEvents(events, 'completed');
    expect(await run.result).toMatchObject({
      status: 'completed',
      content: 'All done.',
      finish_reason: 'stop',
    });
    const request = await server.nextRequest();
    await request.closed;
    expect(request.clientAborted).toBe(true);
  });
});
