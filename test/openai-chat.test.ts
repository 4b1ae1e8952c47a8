import { getEventListeners, once } from 'node:events';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import OpenAI from 'openai';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { RunstateError } from '../src/errors.js';
import type { ChatMessage, ModelChunk } from '../src/model/chat-model.js';
import { OpenAIChat } from '../src/model/openai-chat.js';
import { createFakeOpenAIServer, type FakeOpenAIServer } from '../src/testing/fake-openai-server.js';
import { collect } from './support/collect.js';
import { listen } from './support/listen.js';

const messages: ChatMessage[] = [{ role: 'user', content: 'Say hello' }];

/** The SSE line of a chunk with `content`. */
/** An SSE frame of a chat.completion.chunk with `body`'s fields. */
const chunk = (body: object) =>
  `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 0, model: 'm', ...body })}\n\n`;
const chunkLine = (content: string) =>
  `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 0, model: 'm', choices: [{ index: 0, delta: { content }, finish_reason: null }] })}\n\n`;

let server: FakeOpenAIServer;
let model: OpenAIChat;

beforeEach(async () => {
  server = await createFakeOpenAIServer();
  model = new OpenAIChat({ id: 'gpt-5-mini', apiKey: 'test-key', baseURL: server.url });
});

afterEach(async () => {
  await server.close();
});

/** Reads the stream to its end and returns what it threw. */
async function failure(stream: AsyncIterable<ModelChunk>, seen: ModelChunk[] = []): Promise<RunstateError> {
  try {
    for await (const chunk of stream) seen.push(chunk);
  } catch (error) {
    expect(error).toBeInstanceOf(RunstateError);
    return error as RunstateError;
  }
  throw new Error('the stream did not fail');
}

describe('OpenAIChat against the fake OpenAI server', () => {
  it('yields each delta, then one end with the finish reason and the usage', async () => {
    server.enqueue({ chunks: ['Hel', 'lo', '!'], usage: { prompt_tokens: 5, completion_tokens: 3 } });

    const chunks = await collect(model.stream({ messages, signal: new AbortController().signal }));

    expect(chunks).toEqual([
      { type: 'delta', content: 'Hel' },
      { type: 'delta', content: 'lo' },
      { type: 'delta', content: '!' },
      { type: 'end', finishReason: 'stop', usage: { input_tokens: 5, output_tokens: 3, total_tokens: 8 } },
    ]);
    const request = await server.nextRequest();
    expect(request.body).toMatchObject({
      model: 'gpt-5-mini',
      messages,
      stream: true,
      stream_options: { include_usage: true },
    });
    expect(request.headers.authorization).toBe('Bearer test-key');
  });

  it('asks for no usage chunk with includeUsage: false (a server that refuses stream_options, as Mistral has)', async () => {
    const quiet = new OpenAIChat({
      id: 'mistral-small',
      apiKey: 'k',
      baseURL: server.url,
      includeUsage: false,
    });
    server.enqueue({ chunks: ['Hi'] });

    const chunks = await collect(quiet.stream({ messages, signal: new AbortController().signal }));

    expect(chunks.at(-1)).toMatchObject({ type: 'end', finishReason: 'stop' });
    const { body } = await server.nextRequest();
    expect(body).toMatchObject({ model: 'mistral-small', stream: true });
    expect(body).not.toHaveProperty('stream_options');
    expect(() => new OpenAIChat({ id: 'm', includeUsage: 'no' as unknown as boolean })).toThrow(
      'includeUsage must be true or false',
    );
    expect(() => new OpenAIChat({ id: 'm', sendReasoning: 'no' as unknown as boolean })).toThrow(
      'sendReasoning must be true or false',
    );
  });

  it('sends temperature, maxTokens and extraBody, without letting extraBody override the stream fields', async () => {
    const tuned = new OpenAIChat({
      id: 'gpt-5-mini',
      apiKey: 'k',
      baseURL: server.url,
      temperature: 0.2,
      maxTokens: 50,
      extraBody: { top_p: 0.9, stream: false },
    });

    await collect(tuned.stream({ messages, signal: new AbortController().signal }));

    const { body } = await server.nextRequest();
    // Not OpenAI itself: the field every compatible server knows.
    expect(body).toMatchObject({ temperature: 0.2, max_tokens: 50, top_p: 0.9, stream: true });
  });

  it('yields reasoning deltas (reasoning_content or reasoning) before content, and a delta carrying both as one', async () => {
    server.enqueue({ fault: 'stall', chunks: 0 });
    const iterator = model.stream({ messages, signal: new AbortController().signal })[Symbol.asyncIterator]();
    const first = iterator.next();
    const request = await server.nextRequest();
    request.sendReasoning('Think', 'reasoning_content');
    expect(await first).toEqual({ done: false, value: { type: 'delta', content: '', reasoning: 'Think' } });
    request.sendReasoning('ing', 'reasoning');
    expect((await iterator.next()).value).toEqual({ type: 'delta', content: '', reasoning: 'ing' });
    request.send('Hi');
    expect((await iterator.next()).value).toEqual({ type: 'delta', content: 'Hi' });
    request.finish('stop', false);
    expect((await iterator.next()).value).toEqual({ type: 'end', finishReason: 'stop', usage: undefined });
  });

  it('ends at [DONE] when the server keeps the body open, and closes the socket', async () => {
    server.enqueue({ chunks: ['a'], keepOpen: true, usage: { prompt_tokens: 1, completion_tokens: 1 } });

    const chunks = await collect(model.stream({ messages, signal: new AbortController().signal }));

    expect(chunks).toEqual([
      { type: 'delta', content: 'a' },
      { type: 'end', finishReason: 'stop', usage: { input_tokens: 1, output_tokens: 1, total_tokens: 2 } },
    ]);
    const request = await server.nextRequest();
    await request.closed;
    expect(request.clientAborted).toBe(true);
  });

  it('maps an error object sent before any output like the HTTP error of its code', async () => {
    server.enqueue(
      { fault: 'error', status: 429, message: 'slow down' },
      { fault: 'error', status: 500, message: 'crashed' },
      { fault: 'error', status: 400, message: 'too long' },
    );
    const signal = new AbortController().signal;

    const limited = await failure(model.stream({ messages, signal }));
    const crashed = await failure(model.stream({ messages, signal }));
    const refused = await failure(model.stream({ messages, signal }));

    expect(limited).toMatchObject({ code: 'MODEL_REQUEST_FAILED', status: 429, isRetryable: true });
    expect(limited.message).toBe('429 slow down (sent inside the stream)');
    expect(crashed).toMatchObject({ code: 'MODEL_REQUEST_FAILED', status: 500, isRetryable: true });
    expect(refused).toMatchObject({ code: 'MODEL_REQUEST_FAILED', status: 400, isRetryable: false });
  });

  it('maps an error object sent after output to MODEL_STREAM_INCOMPLETE, not retryable, with the reason', async () => {
    server.enqueue({ fault: 'error', status: 500, message: 'crashed', chunks: ['x'] });
    const seen: ModelChunk[] = [];

    const error = await failure(model.stream({ messages, signal: new AbortController().signal }), seen);

    expect(seen).toEqual([{ type: 'delta', content: 'x' }]);
    expect(error).toMatchObject({ code: 'MODEL_STREAM_INCOMPLETE', status: 500, isRetryable: false });
    expect(error.message).toBe('The stream broke: 500 crashed (sent inside the stream)');
  });

  it('throws MODEL_STREAM_INCOMPLETE when the body ends without a finish reason or [DONE]', async () => {
    server.enqueue({ fault: 'truncate', chunks: ['a', 'b'] });
    const seen: ModelChunk[] = [];

    const error = await failure(model.stream({ messages, signal: new AbortController().signal }), seen);

    expect(error.code).toBe('MODEL_STREAM_INCOMPLETE');
    expect(error.message).toBe(
      'The stream of gpt-5-mini ended without a finish reason (the body closed early)',
    );
    expect(seen).toEqual([
      { type: 'delta', content: 'a' },
      { type: 'delta', content: 'b' },
    ]);
  });

  it('throws MODEL_STREAM_INCOMPLETE naming the [DONE] that came without a finish reason', async () => {
    const done = await listen((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(`${chunkLine('a')}data: [DONE]\n\n`);
    });
    const model = new OpenAIChat({ id: 'gpt-5-mini', apiKey: 'k', baseURL: done.url });
    try {
      const seen: ModelChunk[] = [];
      const error = await failure(model.stream({ messages, signal: new AbortController().signal }), seen);

      expect(seen).toEqual([{ type: 'delta', content: 'a' }]);
      expect(error).toMatchObject({ code: 'MODEL_STREAM_INCOMPLETE', isRetryable: false });
      expect(error.message).toBe(
        'The stream of gpt-5-mini ended without a finish reason (the server sent [DONE] without one)',
      );
    } finally {
      await done.close();
    }
  });

  it('makes a stream that ends with no output and no finish reason retryable, as a dropped one is', async () => {
    const bodies = [
      '',
      'data: [DONE]\n\n',
      chunk({ choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] }),
    ];
    let next = 0;
    const empty = await listen((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(bodies[next++]);
    });
    const model = new OpenAIChat({ id: 'gpt-5-mini', apiKey: 'k', baseURL: empty.url });
    try {
      for (const body of bodies) {
        const seen: ModelChunk[] = [];
        const error = await failure(model.stream({ messages, signal: new AbortController().signal }), seen);
        // Nothing was delivered: sent again, nothing would repeat (an empty 200 from a gateway).
        expect(error, body).toMatchObject({ code: 'MODEL_STREAM_INCOMPLETE', isRetryable: true });
        expect(seen.filter((piece) => piece.type === 'delta' && piece.content !== '')).toEqual([]);
      }
    } finally {
      await empty.close();
    }
  });

  it('reads only the retry-after forms HTTP has (whole seconds, an HTTP date); others are no wait', async () => {
    const future = new Date(Date.now() + 3_600_000);
    const cases: [Record<string, string>, number | undefined][] = [
      [{ 'retry-after': '-1' }, undefined],
      [{ 'retry-after': '1e3' }, undefined],
      [{ 'retry-after': '0x10' }, undefined],
      [{ 'retry-after': '1.5' }, undefined],
      [{ 'retry-after': 'soon' }, undefined],
      [{ 'retry-after': '7' }, 7_000],
      [{ 'retry-after-ms': '-5', 'retry-after': '2' }, 2_000],
      [{ 'retry-after-ms': '250.5' }, 250.5],
    ];
    // An IMF-fixdate, as `toUTCString` writes one, and the same time in asctime's form (no zone: GMT).
    const [day, date, month, year, time] = future.toUTCString().replace(',', '').split(' ');
    const dates = [future.toUTCString(), `${day} ${month} ${date!.replace(/^0/, ' ')} ${time} ${year}`];
    const headersOf = [...cases.map(([headers]) => headers), ...dates.map((d) => ({ 'retry-after': d }))];
    let next = 0;
    const busy = await listen((req, res) => {
      req.resume();
      res.writeHead(429, { 'content-type': 'application/json', ...headersOf[next++] });
      res.end('{"error":{"message":"slow down"}}');
    });
    const model = new OpenAIChat({ id: 'gpt-5-mini', apiKey: 'k', baseURL: busy.url });
    // A zone west of GMT: a date read as local time would be hours off.
    const zone = process.env.TZ;
    process.env.TZ = 'America/New_York';
    try {
      for (const [headers, wait] of cases) {
        const error = await failure(model.stream({ messages, signal: new AbortController().signal }));
        expect(error.retryAfterMs, JSON.stringify(headers)).toBe(wait);
      }
      for (const value of dates) {
        const dated = await failure(model.stream({ messages, signal: new AbortController().signal }));
        expect(dated.retryAfterMs, value).toBeGreaterThan(3_590_000);
        expect(dated.retryAfterMs, value).toBeLessThanOrEqual(3_600_000);
      }
    } finally {
      if (zone === undefined) delete process.env.TZ;
      else process.env.TZ = zone;
      await busy.close();
    }
  });

  it('throws MODEL_STREAM_INCOMPLETE, not retryable, when the socket drops after a delta', async () => {
    server.enqueue({ fault: 'stall', chunks: ['partial'] });
    const iterator = model.stream({ messages, signal: new AbortController().signal })[Symbol.asyncIterator]();
    expect(await iterator.next()).toEqual({ done: false, value: { type: 'delta', content: 'partial' } });

    const request = await server.nextRequest();
    request.reset();
    const error = await iterator.next().then(
      () => undefined,
      (thrown: unknown) => thrown,
    );

    expect(error).toBeInstanceOf(RunstateError);
    expect(error).toMatchObject({ code: 'MODEL_STREAM_INCOMPLETE', isRetryable: false });
    expect((error as RunstateError).cause).toBeDefined();
  });

  it('fails with a retryable MODEL_REQUEST_FAILED when the socket drops before any output', async () => {
    server.enqueue({ fault: 'reset', chunks: 0 }, { fault: 'reset', headers: false });

    const afterHeaders = await failure(model.stream({ messages, signal: new AbortController().signal }));
    const beforeHeaders = await failure(model.stream({ messages, signal: new AbortController().signal }));

    expect(afterHeaders).toMatchObject({ code: 'MODEL_REQUEST_FAILED', isRetryable: true });
    expect(beforeHeaders).toMatchObject({ code: 'MODEL_REQUEST_FAILED', isRetryable: true });
  });

  it('maps a 500 to a retryable MODEL_REQUEST_FAILED and sends the request once (no SDK retries)', async () => {
    server.enqueue({ fault: 'status', status: 500, message: 'boom' });

    const error = await failure(model.stream({ messages, signal: new AbortController().signal }));

    expect(error).toMatchObject({ code: 'MODEL_REQUEST_FAILED', status: 500, isRetryable: true });
    expect(error.message).toContain('boom');
    expect(error.cause).toBeDefined();
    expect(server.requests).toHaveLength(1);
  });

  it('reads retry-after (seconds) and retry-after-ms from a 429', async () => {
    server.enqueue(
      { fault: 'status', status: 429, retryAfter: 2 },
      { fault: 'status', status: 429, retryAfterMs: 1500, retryAfter: 9 },
    );

    const seconds = await failure(model.stream({ messages, signal: new AbortController().signal }));
    const millis = await failure(model.stream({ messages, signal: new AbortController().signal }));

    expect(seconds).toMatchObject({
      code: 'MODEL_REQUEST_FAILED',
      status: 429,
      isRetryable: true,
      retryAfterMs: 2000,
    });
    expect(millis.retryAfterMs).toBe(1500);
  });

  it('maps a 400 to a MODEL_REQUEST_FAILED that is not retryable', async () => {
    server.enqueue({ fault: 'status', status: 400, message: 'bad request' });

    const error = await failure(model.stream({ messages, signal: new AbortController().signal }));

    expect(error).toMatchObject({ code: 'MODEL_REQUEST_FAILED', status: 400, isRetryable: false });
    expect(error.retryAfterMs).toBeUndefined();
  });

  it('fails with a MODEL_REQUEST_FAILED that is not retryable when a 200 response has no body to read', async () => {
    // An injected client whose fetch answers without a body: nothing to stream, nothing dropped.
    const client = new OpenAI({
      apiKey: 'k',
      baseURL: server.url,
      fetch: () => Promise.resolve(new Response(null, { status: 200 })),
    });
    const bodiless = new OpenAIChat({ id: 'gpt-5-mini', client });

    const error = await failure(bodiless.stream({ messages, signal: new AbortController().signal }));

    expect(error).toMatchObject({ code: 'MODEL_REQUEST_FAILED', isRetryable: false });
    expect(error.message).toContain('no body');
  });

  it('fails with its reason and no retry when the server answers in an encoding it cannot decode', async () => {
    const zstd = await listen((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/event-stream', 'content-encoding': 'zstd' });
      res.end('?');
    });
    const model = new OpenAIChat({ id: 'gpt-5-mini', apiKey: 'k', baseURL: zstd.url });
    try {
      const error = await failure(model.stream({ messages, signal: new AbortController().signal }));
      expect(error).toMatchObject({
        code: 'MODEL_REQUEST_FAILED',
        message: 'the server answered in an unknown content encoding: zstd',
        isRetryable: false,
      });
    } finally {
      await zstd.close();
    }
  });

  it('fails the run, not the process, on a status line a fetch Response cannot hold: a status over 599, a reason phrase with a control character, a 101', async () => {
    // Node's own server refuses to send these: the status line is written by hand.
    const statusLines = [
      'HTTP/1.1 600 Weird',
      'HTTP/1.1 503 Service\x7fUnavailable',
      'HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket',
    ];
    const raw = createNetServer((socket) => {
      socket.on('error', () => undefined);
      socket.once('data', () =>
        socket.end(`${statusLines.shift()}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}`),
      );
    });
    raw.listen(0, '127.0.0.1');
    await once(raw, 'listening');
    const { port } = raw.address() as AddressInfo;
    const model = new OpenAIChat({ id: 'gpt-5-mini', apiKey: 'k', baseURL: `http://127.0.0.1:${port}` });
    const stream = () => model.stream({ messages, signal: new AbortController().signal });
    try {
      expect(await failure(stream())).toMatchObject({
        code: 'MODEL_REQUEST_FAILED',
        message: 'the server answered with an HTTP status out of range: 600',
        isRetryable: false,
      });
      // The status is what counts: a 503 like any other, its reason phrase dropped.
      expect(await failure(stream())).toMatchObject({
        code: 'MODEL_REQUEST_FAILED',
        status: 503,
        isRetryable: true,
      });
      // Not left waiting for an answer that never comes (Node hands a 101 to 'upgrade' listeners only).
      expect(await failure(stream())).toMatchObject({
        code: 'MODEL_REQUEST_FAILED',
        message: 'the server switched protocols (101)',
        isRetryable: false,
      });
    } finally {
      raw.close();
    }
  });

  /** A server answering each request 200 with the next of `bodies` as its event stream, and a model on it. */
  async function serverSending(bodies: string[]) {
    const off = await listen((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(bodies.shift());
    });
    const model = new OpenAIChat({ id: 'gpt-5-mini', apiKey: 'k', baseURL: off.url });
    return { off, stream: () => model.stream({ messages, signal: new AbortController().signal }) };
  }

  it('fails without a retry, naming what came, when an event is not a JSON object (a server off the protocol)', async () => {
    const { off, stream } = await serverSending([
      'data: null\n\n',
      'data: {oops\n\n',
      `${chunkLine('x')}data: 5\n\n`,
    ]);
    try {
      const nul = await failure(stream());
      const broken = await failure(stream());
      const seen: ModelChunk[] = [];
      const late = await failure(stream(), seen);

      expect(nul).toMatchObject({
        code: 'MODEL_REQUEST_FAILED',
        message: 'the model server sent an event that is not a JSON object: data: null',
        isRetryable: false,
      });
      expect(broken).toMatchObject({ code: 'MODEL_REQUEST_FAILED', isRetryable: false });
      expect(broken.message).toBe('the model server sent an event that is not a JSON object: data: {oops');
      expect((broken.cause as Error).cause).toBeInstanceOf(SyntaxError);
      expect(seen).toEqual([{ type: 'delta', content: 'x' }]);
      expect(late).toMatchObject({
        code: 'MODEL_STREAM_INCOMPLETE',
        message: 'The stream broke: the model server sent an event that is not a JSON object: data: 5',
      });
    } finally {
      await off.close();
    }
  });

  it('fails without a retry, naming the chunk, when a chunk has a field of another shape (a null tool call), not as a dropped connection', async () => {
    const nullCall = 'data: {"choices":[{"index":0,"delta":{"tool_calls":[null]},"finish_reason":null}]}\n\n';
    const { off, stream } = await serverSending([nullCall, `${chunkLine('x')}${nullCall}`]);
    try {
      const first = await failure(stream());
      const late = await failure(stream());
      const shown = '{"choices":[{"index":0,"delta":{"tool_calls":[null]},"finish_reason":null}]}';
      expect(first).toMatchObject({ code: 'MODEL_REQUEST_FAILED', isRetryable: false });
      expect(first.message).toMatch(/^the model server sent a chunk that cannot be read \(.+\): /);
      expect(first.message.endsWith(shown)).toBe(true);
      expect(late).toMatchObject({ code: 'MODEL_STREAM_INCOMPLETE' });
      expect(late.message).toMatch(/^The stream broke: the model server sent a chunk that cannot be read/);
    } finally {
      await off.close();
    }
  });

  it('reads a 200 that holds no event as one JSON answer: an error as one sent inside the stream, a whole completion as its message', async () => {
    const bodies = [
      '{"error":{"message":"model \\"foo\\" not loaded","code":503}}',
      JSON.stringify({
        id: 'c',
        object: 'chat.completion',
        choices: [{ index: 0, message: { role: 'assistant', content: 'Whole' }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 2, completion_tokens: 1, total_tokens: 3 },
      }),
      // An event with empty data is a keep-alive, not an event; a bare error's status beside it.
      `data:\n\ndata: ${JSON.stringify({ error: 'Model overloaded', code: 503 })}\n\n`,
    ];
    const plain = await listen((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(bodies.shift());
    });
    const model = new OpenAIChat({ id: 'gpt-5-mini', apiKey: 'k', baseURL: plain.url });
    const signal = new AbortController().signal;
    try {
      expect(await failure(model.stream({ messages, signal }))).toMatchObject({
        code: 'MODEL_REQUEST_FAILED',
        status: 503,
        isRetryable: true,
        message: '503 model "foo" not loaded (sent inside the stream)',
      });
      expect(await collect(model.stream({ messages, signal }))).toEqual([
        { type: 'delta', content: 'Whole' },
        { type: 'end', finishReason: 'stop', usage: { input_tokens: 2, output_tokens: 1, total_tokens: 3 } },
      ]);
      expect(await failure(model.stream({ messages, signal }))).toMatchObject({
        code: 'MODEL_REQUEST_FAILED',
        status: 503,
        isRetryable: true,
        message: '503 Model overloaded (sent inside the stream)',
      });
    } finally {
      await plain.close();
    }
  });

  it('reads a body that opens with a byte order mark, names a 200 that is no event stream, and reads an `event: error`', async () => {
    const bodies = [
      `\uFEFF${chunkLine('first')}${chunkLine(' second')}data: [DONE]\n\n`,
      '<!DOCTYPE html><html><head><title>Welcome to nginx!</title></head><body></body></html>',
      'event: error\ndata: {"type":"error","message":"context length exceeded"}\n\n',
    ];
    const odd = await listen((req, res) => {
      req.resume();
      const body = bodies.shift()!;
      res.writeHead(200, { 'content-type': body.startsWith('<') ? 'text/html' : 'text/event-stream' });
      res.end(body);
    });
    const model = new OpenAIChat({ id: 'gpt-5-mini', apiKey: 'k', baseURL: odd.url });
    const stream = () => model.stream({ messages, signal: new AbortController().signal });
    try {
      const seen: ModelChunk[] = [];
      // No finish reason was sent: it fails, but only after both deltas came.
      await failure(stream(), seen);
      expect(seen).toEqual([
        { type: 'delta', content: 'first' },
        { type: 'delta', content: ' second' },
      ]);
      expect(await failure(stream())).toMatchObject({
        code: 'MODEL_REQUEST_FAILED',
        isRetryable: false,
        message:
          'the model server answered with a body that is not an event stream (is the base URL right?): Welcome to nginx! (an HTML page)',
      });
      expect(await failure(stream())).toMatchObject({
        code: 'MODEL_REQUEST_FAILED',
        message: 'context length exceeded (sent inside the stream)',
      });
    } finally {
      await odd.close();
    }
  });

  it("reads llama.cpp's `error:` line as the error it says, before any output and after it", async () => {
    // llama-server's streamed failure: a line of the field `error`, then `data: [DONE]`.
    const failure400 =
      'error: {"code":400,"message":"the request exceeds the available context size, try increasing it","type":"exceed_context_size_error"}\n\ndata: [DONE]\n\n';
    const bodies = [
      failure400,
      'error: {"code":503,"message":"Loading model","type":"unavailable_error"}\n\ndata: [DONE]\n\n',
      `${chunkLine('partial')}error: {"code":500,"message":"decode failed","type":"server_error"}\n\ndata: [DONE]\n\n`,
    ];
    const llama = await listen((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(bodies.shift()!);
    });
    const model = new OpenAIChat({ id: 'gpt-5-mini', apiKey: 'k', baseURL: llama.url });
    const stream = () => model.stream({ messages, signal: new AbortController().signal });
    try {
      expect(await failure(stream())).toMatchObject({
        code: 'MODEL_REQUEST_FAILED',
        isRetryable: false,
        message:
          '400 the request exceeds the available context size, try increasing it (sent inside the stream)',
      });
      expect(await failure(stream())).toMatchObject({ code: 'MODEL_REQUEST_FAILED', isRetryable: true });
      const seen: ModelChunk[] = [];
      expect(await failure(stream(), seen)).toMatchObject({ code: 'MODEL_STREAM_INCOMPLETE' });
      expect(seen).toEqual([{ type: 'delta', content: 'partial' }]);
    } finally {
      await llama.close();
    }
  });

  it('fails a body with no line break, or an event that never ends, once it passes 16 MiB, without holding the rest', async () => {
    const written: number[] = [];
    const endless = await listen((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      let closed = false;
      res.on('close', () => (closed = true));
      // The first body has no line break at all; the second is one event whose data lines never end it.
      const piece = written.length === 0 ? 'b'.repeat(1 << 20) : `data: ${'d'.repeat(1 << 20)}\n`;
      const index = written.push(0) - 1;
      const write = (): void => {
        while (written[index]! < 64 * piece.length && !closed) {
          written[index]! += piece.length;
          if (!res.write(piece)) return void res.once('drain', write);
        }
        res.end();
      };
      write();
    });
    const model = new OpenAIChat({ id: 'gpt-5-mini', apiKey: 'k', baseURL: endless.url });
    try {
      for (let round = 0; round < 2; round++) {
        const error = await failure(model.stream({ messages, signal: new AbortController().signal }));
        expect(error).toMatchObject({ code: 'MODEL_REQUEST_FAILED', isRetryable: false });
        expect(error.message).toBe(
          'the model server sent an event or a line over 16 MiB: not a chat-completions event stream (is the base URL right?)',
        );
      }
      // The reading stopped there: the server could not send the 64 MiB it meant to.
      expect(written).toHaveLength(2);
      for (const bytes of written) expect(bytes).toBeLessThan(48 << 20);
    } finally {
      await endless.close();
    }
  });

  it('ends the answer a second after the usage chunk that follows the finish reason, when the server keeps the body open without [DONE]', async () => {
    const open = await listen((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(chunkLine('whole'));
      // The protocol's last chunk after the finish reason's, in one write; then nothing, and the
      // body stays open.
      res.write(
        chunk({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] }) +
          chunk({ choices: [], usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 } }),
      );
    });
    const model = new OpenAIChat({ id: 'gpt-5-mini', apiKey: 'k', baseURL: open.url });
    try {
      expect(await collect(model.stream({ messages, signal: new AbortController().signal }))).toEqual([
        { type: 'delta', content: 'whole' },
        // The run hears that the model is not silent (its idle timer), as for a tool call.
        { type: 'delta', content: '', toolCall: true },
        { type: 'end', finishReason: 'stop', usage: { input_tokens: 3, output_tokens: 1, total_tokens: 4 } },
      ]);
    } finally {
      await open.close();
    }
  });

  it("waits for the end after a finish reason half the run's idle timeout at most, so that the answer is whole before the run times out", async () => {
    const open = await listen((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      // Then nothing: no `[DONE]`, no end of the body.
      res.write(
        chunkLine('whole') +
          chunk({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] }) +
          chunk({ choices: [], usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 } }),
      );
    });
    const model = new OpenAIChat({ id: 'gpt-5-mini', apiKey: 'k', baseURL: open.url });
    const seen: ModelChunk[] = [];
    let toldOutput!: () => void;
    const outputTold = new Promise<void>((resolve) => (toldOutput = resolve));
    let closed!: (error: unknown) => void;
    const close = new Promise((resolve) => (closed = resolve));
    // Only the timers are faked (the socket is real), so the wait after the finish can be let pass.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      model.streamTo(
        { messages, signal: new AbortController().signal, idleTimeoutMs: 400 },
        {
          chunk: (chunk) => {
            seen.push(chunk);
            if (chunk.type === 'delta' && chunk.toolCall) toldOutput();
          },
          close: (error) => closed(error),
        },
      );
      await outputTold;
      await vi.advanceTimersByTimeAsync(199);
      expect(seen.map(({ type }) => type)).toEqual(['delta', 'delta']);
      await vi.advanceTimersByTimeAsync(1);
      expect(await close).toBeUndefined();
      expect(seen.at(-1)).toEqual({
        type: 'end',
        finishReason: 'stop',
        usage: { input_tokens: 3, output_tokens: 1, total_tokens: 4 },
      });
    } finally {
      vi.useRealTimers();
      await open.close();
    }
  });

  it('ends the answer whole when the connection breaks after the usage chunk that follows the finish reason', async () => {
    const cut = await listen((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(chunkLine('whole'));
      // The protocol's last chunk after the finish reason's; then the chunked body breaks off,
      // without [DONE] or its end.
      res.write(
        chunk({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] }) +
          chunk({ choices: [], usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 } }),
        () => res.socket?.destroy(),
      );
    });
    const model = new OpenAIChat({ id: 'gpt-5-mini', apiKey: 'k', baseURL: cut.url });
    try {
      expect(await collect(model.stream({ messages, signal: new AbortController().signal }))).toEqual([
        { type: 'delta', content: 'whole' },
        { type: 'delta', content: '', toolCall: true },
        { type: 'end', finishReason: 'stop', usage: { input_tokens: 3, output_tokens: 1, total_tokens: 4 } },
      ]);
    } finally {
      await cut.close();
    }
  });

  it.each(
    ['error', 'abort'].flatMap((reason) => [
      { reason, when: 'before any output', first: [], code: 'MODEL_REQUEST_FAILED', retryable: true },
      { reason, when: 'after output', first: ['partial'], code: 'MODEL_STREAM_INCOMPLETE', retryable: false },
    ]),
  )(
    'fails a stream that ends with finish_reason "$reason" and no error object (OpenRouter, vLLM), $when',
    async ({ reason, first, code, retryable }) => {
      const failing = await listen((req, res) => {
        req.resume();
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        for (const content of first) res.write(chunkLine(content));
        res.write(chunk({ choices: [{ index: 0, delta: { content: '' }, finish_reason: reason }] }));
        res.end('data: [DONE]\n\n');
      });
      const model = new OpenAIChat({ id: 'gpt-5-mini', apiKey: 'k', baseURL: failing.url });
      try {
        const seen: ModelChunk[] = [];
        const error = await failure(model.stream({ messages, signal: new AbortController().signal }), seen);
        expect(seen).toEqual(first.map((content) => ({ type: 'delta', content })));
        expect(error).toMatchObject({ code, isRetryable: retryable });
        expect(error.message).toContain(`finish_reason "${reason}"`);
      } finally {
        await failing.close();
      }
    },
  );

  it('ends the answer after a finish reason with no usage chunk (a server that ignores stream_options), whether the body stays open or breaks', async () => {
    let request = 0;
    const noUsage = await listen((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(chunkLine('whole'));
      // Then nothing: the first body stays open, the second breaks off.
      const breaks = request++ === 1;
      res.write(chunk({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] }), () => {
        if (breaks) res.socket?.destroy();
      });
    });
    const model = new OpenAIChat({ id: 'gpt-5-mini', apiKey: 'k', baseURL: noUsage.url });
    try {
      for (let round = 0; round < 2; round++) {
        const chunks = await collect(model.stream({ messages, signal: new AbortController().signal }));
        expect(chunks).toEqual([
          { type: 'delta', content: 'whole' },
          { type: 'delta', content: '', toolCall: true },
          { type: 'end', finishReason: 'stop', usage: undefined },
        ]);
      }
      expect(request).toBe(2);
    } finally {
      await noUsage.close();
    }
  });

  it('reads on to [DONE] from a gateway that puts the finish reason on every chunk, however long a gap, and fails it cut', async () => {
    let request = 0;
    const gateway = await listen((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const part = (content: string) =>
        chunk({ choices: [{ index: 0, delta: { content }, finish_reason: 'stop' }] });
      if (request++ === 1) {
        res.write(part('Part one.'), () => res.socket?.destroy());
        return;
      }
      res.write(part('Part one.'));
      // Longer than the second an answer is given after its last chunk.
      setTimeout(() => res.end(`${part(' Part two.')}data: [DONE]\n\n`), 1_200);
    });
    const model = new OpenAIChat({ id: 'gpt-5-mini', apiKey: 'k', baseURL: gateway.url });
    const stream = () => model.stream({ messages, signal: new AbortController().signal });
    try {
      expect(await collect(stream())).toEqual([
        { type: 'delta', content: 'Part one.' },
        { type: 'delta', content: ' Part two.' },
        { type: 'end', finishReason: 'stop', usage: undefined },
      ]);
      expect(await failure(stream())).toMatchObject({ code: 'MODEL_STREAM_INCOMPLETE' });
    } finally {
      await gateway.close();
    }
  });

  it('fails a stream that breaks after a tool call streamed as incomplete, not retryable (it was output)', async () => {
    const cut = await listen((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const call = { index: 0, id: 'c1', type: 'function', function: { name: 'add', arguments: '{"a":' } };
      const delta = { id: 'c', object: 'chat.completion.chunk', created: 0, model: 'm' };
      res.write(
        `data: ${JSON.stringify({ ...delta, choices: [{ index: 0, delta: { tool_calls: [call] } }] })}\n\n`,
        () => res.socket?.destroy(),
      );
    });
    const model = new OpenAIChat({ id: 'gpt-5-mini', apiKey: 'k', baseURL: cut.url });
    try {
      const chunks: ModelChunk[] = [];
      const failure = await (async () => {
        for await (const chunk of model.stream({ messages, signal: new AbortController().signal }))
          chunks.push(chunk);
      })().catch((error: unknown) => error);
      expect(chunks).toEqual([{ type: 'delta', content: '', toolCall: true }]);
      expect(failure).toBeInstanceOf(RunstateError);
      expect(failure).toMatchObject({ code: 'MODEL_STREAM_INCOMPLETE', isRetryable: false });
      // The socket's reason is in the message, not only in its cause.
      expect((failure as Error).message).toBe('The stream broke: terminated: aborted (ECONNRESET)');
    } finally {
      await cut.close();
    }
  });

  it('says why a stream broke with an injected client too (fetch puts the reason in the cause only)', async () => {
    const cut = await listen((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`${chunkLine('Hello')}data: {"id":"c","obj`, () => res.socket?.resetAndDestroy());
    });
    const client = new OpenAI({ apiKey: 'k', baseURL: cut.url, maxRetries: 0 });
    const model = new OpenAIChat({ id: 'gpt-5-mini', client });
    try {
      const seen: ModelChunk[] = [];
      const broken = await failure(model.stream({ messages, signal: new AbortController().signal }), seen);
      expect(seen).toEqual([{ type: 'delta', content: 'Hello' }]);
      expect(broken).toMatchObject({ code: 'MODEL_STREAM_INCOMPLETE' });
      // fetch's own words, then the socket's: more than the bare 'terminated'.
      expect(broken.message).toMatch(/^The stream broke: terminated: \S/);
    } finally {
      await cut.close();
    }
  });

  it('reads a whole answer sent despite `stream: true` of more than a MiB; past what it reads, says so', async () => {
    const content = 'x'.repeat(1_200_000);
    const completion = (text: string) =>
      JSON.stringify({
        id: 'c',
        object: 'chat.completion',
        choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' }],
      });
    // Past 16 MiB: on one line, the line is too long to read; on many, the body is.
    const padded = JSON.stringify(
      { padding: Array.from({ length: 180_000 }, () => 'z'.repeat(100)) },
      null,
      1,
    );
    const bodies = [completion(content), completion('y'.repeat(17 << 20)), padded];
    const plain = await listen((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(bodies.shift());
    });
    const model = new OpenAIChat({ id: 'gpt-5-mini', apiKey: 'k', baseURL: plain.url });
    const signal = new AbortController().signal;
    try {
      expect(await collect(model.stream({ messages, signal }))).toEqual([
        { type: 'delta', content },
        { type: 'end', finishReason: 'stop', usage: undefined },
      ]);
      expect(await failure(model.stream({ messages, signal }))).toMatchObject({
        code: 'MODEL_REQUEST_FAILED',
        message:
          'the model server sent an event or a line over 16 MiB: not a chat-completions event stream (is the base URL right?)',
      });
      expect(await failure(model.stream({ messages, signal }))).toMatchObject({
        code: 'MODEL_REQUEST_FAILED',
        message:
          'the model server answered with over 16 MiB that holds no event: not a chat-completions event stream (is the base URL right?)',
      });
    } finally {
      await plain.close();
    }
  });

  it("names a proxy's error page once by its status (nginx's title repeats it)", async () => {
    const proxy = await listen((req, res) => {
      req.resume();
      res.writeHead(502, { 'content-type': 'text/html' });
      res.end(
        '<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body><center><h1>502 Bad Gateway</h1></center></body>\r\n</html>\r\n',
      );
    });
    const model = new OpenAIChat({ id: 'gpt-5-mini', apiKey: 'k', baseURL: proxy.url });
    try {
      const error = await failure(model.stream({ messages, signal: new AbortController().signal }));
      expect(error).toMatchObject({ status: 502, message: '502 Bad Gateway (an HTML page)' });
    } finally {
      await proxy.close();
    }
  });

  it("names why a connection failed, not only the SDK's 'Connection error.'", async () => {
    const nothing = await listen();
    const url = nothing.url;
    await nothing.close();
    const model = new OpenAIChat({ id: 'gpt-5-mini', apiKey: 'k', baseURL: url });
    const error = await failure(model.stream({ messages, signal: new AbortController().signal }));
    expect(error.message).toMatch(/^Connection error\. \(.*ECONNREFUSED.*\)$/);
  });

  it("sends max_completion_tokens to OpenAI's hosts, regional ones too, and max_tokens elsewhere", async () => {
    const sent: unknown[] = [];
    const capture = (baseURL: string) =>
      new OpenAIChat({
        id: 'gpt-5-mini',
        maxTokens: 7,
        client: new OpenAI({
          apiKey: 'k',
          baseURL,
          fetch: (_url, init) => {
            sent.push(JSON.parse(init?.body as string));
            return Promise.resolve(new Response('data: [DONE]\n\n', { status: 200 }));
          },
        }),
      });
    for (const base of [
      'https://api.openai.com/v1',
      'https://eu.api.openai.com/v1',
      'http://127.0.0.1:8000/v1',
    ]) {
      await failure(capture(base).stream({ messages, signal: new AbortController().signal })).catch(
        () => undefined,
      );
    }
    expect(sent.map((body) => Object.keys(body as object).filter((key) => key.startsWith('max_')))).toEqual([
      ['max_completion_tokens'],
      ['max_completion_tokens'],
      ['max_tokens'],
    ]);
  });

  it('maps a refused connection to a retryable MODEL_REQUEST_FAILED', async () => {
    const gone = await createFakeOpenAIServer();
    await gone.close();
    const unreachable = new OpenAIChat({ id: 'gpt-5-mini', apiKey: 'k', baseURL: gone.url });

    const error = await failure(unreachable.stream({ messages, signal: new AbortController().signal }));

    expect(error).toMatchObject({ code: 'MODEL_REQUEST_FAILED', isRetryable: true, status: undefined });
  });

  it('ends quietly when the signal aborts between two deltas, and the server sees its socket close', async () => {
    server.enqueue({ fault: 'stall', chunks: ['first'] });
    const controller = new AbortController();
    const seen: ModelChunk[] = [];

    for await (const chunk of model.stream({ messages, signal: controller.signal })) {
      seen.push(chunk);
      controller.abort();
    }

    expect(seen).toEqual([{ type: 'delta', content: 'first' }]);
    const request = await server.nextRequest();
    await request.closed;
    expect(request.clientAborted).toBe(true);
  });

  it('lets go of the signal once the stream is over: the abort at the end of a run reaches nothing', async () => {
    server.enqueue({ chunks: ['Hi'] });
    const controller = new AbortController();
    const stream = model.stream({ messages, signal: controller.signal })[Symbol.asyncIterator]();
    // Nothing is sent before the first `next()`; from then on, while the request is open, the
    // signal reaches it.
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
    const first = stream.next();
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(1);
    expect(await first).toMatchObject({ value: { type: 'delta', content: 'Hi' } });
    expect(await stream.next()).toMatchObject({ value: { type: 'end' } });
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
    expect(await stream.next()).toEqual({ done: true, value: undefined });
  });

  it('ends quietly when the signal aborts while waiting for the response headers', async () => {
    server.enqueue({ fault: 'stall', headers: false });
    const controller = new AbortController();
    const chunks = collect(model.stream({ messages, signal: controller.signal }));

    const request = await server.nextRequest();
    controller.abort();

    expect(await chunks).toEqual([]);
    await request.closed;
    expect(request.clientAborted).toBe(true);
  });

  it('sends nothing when the signal is already aborted', async () => {
    const chunks = await collect(model.stream({ messages, signal: AbortSignal.abort() }));

    expect(chunks).toEqual([]);
    expect(server.requests).toHaveLength(0);
  });

  it('aborts the request when the consumer breaks out of the loop early', async () => {
    server.enqueue({ fault: 'stall', chunks: ['one', 'two'] });

    for await (const chunk of model.stream({ messages, signal: new AbortController().signal })) {
      expect(chunk).toEqual({ type: 'delta', content: 'one' });
      break;
    }

    const request = await server.nextRequest();
    await request.closed;
    expect(request.clientAborted).toBe(true);
  });

  it('streams deltas released one at a time by the test', async () => {
    server.enqueue({ fault: 'stall', chunks: 0 });
    const iterator = model.stream({ messages, signal: new AbortController().signal })[Symbol.asyncIterator]();
    const first = iterator.next();
    const request = await server.nextRequest();

    request.send('one');
    expect(await first).toEqual({ done: false, value: { type: 'delta', content: 'one' } });
    request.send('two');
    expect(await iterator.next()).toEqual({ done: false, value: { type: 'delta', content: 'two' } });
    request.finish('length');

    const end = await iterator.next();
    expect(end.value).toMatchObject({ type: 'end', finishReason: 'length' });
    expect(await iterator.next()).toEqual({ done: true, value: undefined });
  });
});

describe('OpenAIChat configuration', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
  });

  it('falls back to the offline model when no API key and no base URL are set', async () => {
    vi.stubEnv('OPENAI_API_KEY', '');
    vi.stubEnv('OPENAI_BASE_URL', '');

    const offline = new OpenAIChat({ id: 'gpt-5-mini' });

    expect(offline.offline).toBe(true);
    expect(offline.provider).toBe('offline');
    expect(offline.id).toBe('gpt-5-mini');
    for await (const chunk of offline.stream({ messages, signal: new AbortController().signal })) {
      expect(chunk.type).toBe('delta');
      break;
    }
    expect(server.requests).toHaveLength(0);
  });

  it('uses OpenAI when a key is set in the environment', () => {
    vi.stubEnv('OPENAI_API_KEY', 'sk-test');
    vi.stubEnv('OPENAI_BASE_URL', '');

    const online = new OpenAIChat({ id: 'gpt-5-mini' });

    expect(online.offline).toBe(false);
    expect(online.provider).toBe('OpenAI');
  });

  it('talks to a base URL without a key (local servers need none)', async () => {
    vi.stubEnv('OPENAI_API_KEY', '');

    const local = new OpenAIChat({ id: 'llama', baseURL: server.url });
    const chunks = await collect(local.stream({ messages, signal: new AbortController().signal }));

    expect(local.offline).toBe(false);
    expect(chunks.at(-1)).toMatchObject({ type: 'end', finishReason: 'stop' });
    const request = await server.nextRequest();
    expect(request.headers.authorization).toMatch(/^Bearer .+/);
  });
});
