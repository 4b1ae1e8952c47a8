import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import {
  createFakeOpenAIServer,
  fakeChunks,
  parseFakeModel,
  type FakeOpenAIServer,
} from '../src/testing/fake-openai-server.js';
import { parseSse } from './support/sse.js';

interface Chunk {
  id: string;
  object: string;
  model: string;
  choices: {
    index: number;
    delta: { role?: string; content?: string | null; reasoning_content?: string; reasoning?: string };
    finish_reason: string | null;
  }[];
  usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
}

let server: FakeOpenAIServer;

beforeEach(async () => {
  server = await createFakeOpenAIServer();
});

afterEach(async () => {
  await server.close();
});

function post(body: object, signal?: AbortSignal): Promise<Response> {
  return fetch(`${server.url}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    ...(signal ? { signal } : {}),
  });
}

function streamBody(model = 'gpt-5-mini', includeUsage = true): object {
  return {
    model,
    messages: [{ role: 'user', content: 'Hello there!' }],
    stream: true,
    ...(includeUsage ? { stream_options: { include_usage: true } } : {}),
  };
}

/** The `data:` payloads of a whole SSE body (data-only frames, as chat-completions servers send). */
function frames(text: string): string[] {
  return parseSse(text).map((message) => {
    expect(message.event).toBeUndefined();
    return message.data;
  });
}

function chunks(text: string): Chunk[] {
  return frames(text)
    .filter((data) => data !== '[DONE]')
    .map((data) => JSON.parse(data) as Chunk);
}

function contentOf(all: Chunk[]): string[] {
  return all
    .flatMap((chunk) => chunk.choices.map((choice) => choice.delta.content ?? ''))
    .filter((c) => c !== '');
}

describe('streams (POST /v1/chat/completions, stream: true)', () => {
  it('sends the chunks, a final chunk with finish_reason, a usage chunk with empty choices, then [DONE]', async () => {
    server.enqueue({ chunks: ['Hel', 'lo'], usage: { prompt_tokens: 4, completion_tokens: 2 } });

    const response = await post(streamBody());
    const text = await response.text();

    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const all = chunks(text);
    expect(all.map((chunk) => chunk.object)).toEqual(Array(4).fill('chat.completion.chunk'));
    expect(all[0]?.choices[0]?.delta).toEqual({ role: 'assistant', content: 'Hel' });
    expect(all[1]?.choices[0]).toEqual({ index: 0, delta: { content: 'lo' }, finish_reason: null });
    expect(all[2]?.choices[0]).toEqual({ index: 0, delta: {}, finish_reason: 'stop' });
    expect(all[3]?.choices).toEqual([]);
    expect(all[3]?.usage).toEqual({ prompt_tokens: 4, completion_tokens: 2, total_tokens: 6 });
    expect(frames(text).at(-1)).toBe('[DONE]');
    expect(new Set(all.map((chunk) => chunk.id)).size).toBe(1);
  });

  it('sends no usage chunk unless the request asks for it', async () => {
    const text = await (await post(streamBody('gpt-5-mini', false))).text();

    const all = chunks(text);
    expect(all.some((chunk) => chunk.usage !== undefined)).toBe(false);
    expect(contentOf(all).join('')).toBe('Hello from the fake OpenAI server.');
    expect(all.at(-1)?.choices[0]?.finish_reason).toBe('stop');
  });

  it('generates the chunks a model name asks for, in order, with the role on the first only', async () => {
    const text = await (await post(streamBody('fake?chunks=10000&delayMs=0'))).text();

    const all = chunks(text);
    expect(contentOf(all)).toEqual(fakeChunks(10_000));
    expect(all.filter((chunk) => chunk.choices[0]?.delta.role !== undefined)).toHaveLength(1);
    expect(all.at(-1)?.usage?.completion_tokens).toBe(10_000);
    expect(all.at(-2)?.choices[0]?.finish_reason).toBe('stop');
  });

  it('paces the chunks with delayMs and reports the finish reason asked for', async () => {
    const text = await (
      await post(streamBody('fake?chunks=3&delayMs=1&finishReason=length&usage=false'))
    ).text();

    const all = chunks(text);
    expect(contentOf(all)).toEqual(fakeChunks(3));
    expect(all.at(-1)?.choices[0]?.finish_reason).toBe('length');
    expect(all.some((chunk) => chunk.usage !== undefined)).toBe(false);
  });

  it('truncate: ends the body cleanly after the chunks, with no finish_reason and no [DONE]', async () => {
    const text = await (await post(streamBody('fake?fault=truncate&chunks=3'))).text();

    expect(frames(text)).not.toContain('[DONE]');
    const all = chunks(text);
    expect(contentOf(all)).toEqual(fakeChunks(3));
    expect(all.every((chunk) => chunk.choices[0]?.finish_reason === null)).toBe(true);
  });

  it('reset: drops the connection mid-body', async () => {
    server.enqueue({ fault: 'reset', chunks: ['a', 'b'] });

    const response = await post(streamBody());
    await expect(response.text()).rejects.toThrow();

    const request = await server.nextRequest();
    await request.closed;
    expect(request.clientAborted).toBe(false);
  });

  it('stall: sends the headers, then only what the test releases (send, finish)', async () => {
    server.enqueue({ fault: 'stall', chunks: 0 });
    const response = await post(streamBody());
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    const request = await server.nextRequest();

    request.send('one');
    const first = await reader.read();
    expect(contentOf(chunks(first.value ?? ''))).toEqual(['one']);
    request.send('two');
    request.finish();

    let rest = '';
    for (let read = await reader.read(); !read.done; read = await reader.read()) rest += read.value;
    const all = chunks(rest);
    expect(contentOf(all)).toEqual(['two']);
    expect(all.at(-1)?.usage?.completion_tokens).toBe(2);
    expect(frames(rest).at(-1)).toBe('[DONE]');
    await request.closed;
    expect(request.clientAborted).toBe(false);
    expect(() => request.send('late')).toThrow(/over/);
  });

  it('stall with headers=false sends nothing; a client that goes away is recorded as an abort', async () => {
    const controller = new AbortController();
    const response = post(streamBody('fake?fault=stall&headers=false'), controller.signal);
    const request = await server.nextRequest();

    controller.abort();

    await expect(response).rejects.toThrow();
    await request.closed;
    expect(request.clientAborted).toBe(true);
  });

  it('records a client abort mid-stream', async () => {
    server.enqueue({ fault: 'stall', chunks: ['a'] });
    const controller = new AbortController();
    const response = await post(streamBody(), controller.signal);
    const reader = response.body!.getReader();
    await reader.read();

    controller.abort();

    const request = await server.nextRequest();
    await request.closed;
    expect(request.clientAborted).toBe(true);
    expect(() => request.finish()).toThrow(/over/);
  });
});

describe('shapes of real servers (issue 10)', () => {
  it('reasoning: sends reasoning deltas (content null) before the content, in the field asked for', async () => {
    server.enqueue(
      { reasoning: { deltas: ['Let me ', 'think.'] }, chunks: ['Hi'] },
      { reasoning: { deltas: ['Hm.'], field: 'reasoning' }, chunks: ['Yo'] },
    );

    const first = chunks(await (await post(streamBody())).text());
    const second = chunks(await (await post(streamBody())).text());

    expect(first.slice(0, 3).map((chunk) => chunk.choices[0]?.delta)).toEqual([
      { role: 'assistant', content: null, reasoning_content: 'Let me ' },
      { content: null, reasoning_content: 'think.' },
      { content: 'Hi' },
    ]);
    expect(second[0]?.choices[0]?.delta).toEqual({ role: 'assistant', content: null, reasoning: 'Hm.' });
    expect(contentOf(second)).toEqual(['Yo']);
  });

  it('a token limit cuts the answer to it with finish_reason length, for the fields the server honours only', async () => {
    await server.close();
    server = await createFakeOpenAIServer({ maxTokensFields: ['max_tokens'] });
    server.setDefault({ chunks: ['a', 'b', 'c'] });

    const honoured = chunks(await (await post({ ...streamBody(), max_tokens: 2 })).text());
    const ignored = chunks(await (await post({ ...streamBody(), max_completion_tokens: 2 })).text());

    expect(contentOf(honoured)).toEqual(['a', 'b']);
    expect(honoured.find((chunk) => chunk.choices[0]?.finish_reason)?.choices[0]?.finish_reason).toBe(
      'length',
    );
    expect(contentOf(ignored)).toEqual(['a', 'b', 'c']);
    expect(server.requests.map((request) => request.body.max_tokens)).toEqual([2, undefined]);
  });

  it('error: sends the chunks, then an error object inside the 200 stream, and ends with no [DONE]', async () => {
    server.enqueue({ fault: 'error', status: 503, message: 'loading', chunks: ['a'] });

    const response = await post(streamBody());
    const data = frames(await response.text());

    expect(response.status).toBe(200);
    expect(data).toHaveLength(2);
    expect(JSON.parse(data[1]!)).toEqual({ error: { code: 503, message: 'loading', type: 'server_error' } });
  });

  it.each([
    ['detail', 'application/json', '{"detail":"no such model"}'],
    ['message', 'application/json', '{"message":"no such model"}'],
    ['text', 'text/plain', 'no such model'],
  ] as const)('status with body=%s answers that shape', async (body, type, text) => {
    server.enqueue({ fault: 'status', status: 400, body, message: 'no such model' });

    const response = await post(streamBody());

    expect(response.status).toBe(400);
    expect(response.headers.get('content-type')).toBe(type);
    expect(await response.text()).toBe(text);
  });

  it('usage: false sends no usage even when the request asks for it', async () => {
    server.enqueue({ chunks: ['a'], usage: false });

    const all = chunks(await (await post(streamBody())).text());

    expect(all.some((chunk) => chunk.usage)).toBe(false);
  });

  it('keepOpen: sends [DONE] and keeps the body open until the client goes away', async () => {
    server.enqueue({ chunks: ['a'], keepOpen: true });
    const controller = new AbortController();
    const response = await post(streamBody(), controller.signal);
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    let text = '';
    while (!text.endsWith('data: [DONE]\n\n')) {
      const read = await reader.read();
      if (read.done) throw new Error('the body ended after [DONE]');
      text += decoder.decode(read.value, { stream: true });
    }
    const request = await server.nextRequest();

    expect(request.clientAborted).toBe(false);
    controller.abort();
    await request.closed;
    expect(request.clientAborted).toBe(true);
  });
});

describe('errors', () => {
  it('answers a status with an OpenAI-shaped error body and retry-after headers', async () => {
    server.enqueue({ fault: 'status', status: 503, message: 'overloaded', retryAfterMs: 250 });

    const scripted = await post(streamBody());
    const byModel = await post(streamBody('fake?status=429&retryAfter=2'));

    expect(scripted.status).toBe(503);
    expect(scripted.headers.get('retry-after-ms')).toBe('250');
    expect(await scripted.json()).toEqual({
      error: { message: 'overloaded', type: 'server_error', param: null, code: null },
    });
    expect(byModel.status).toBe(429);
    expect(byModel.headers.get('retry-after')).toBe('2');
    expect(await byModel.json()).toMatchObject({ error: { type: 'rate_limit_exceeded' } });
  });

  it('answers 400, and still records the request, for an unknown model parameter or a body that is not JSON', async () => {
    const unknown = await post(streamBody('fake?chunk=3'));
    const notJson = await fetch(`${server.url}/chat/completions`, { method: 'POST', body: '{' });

    expect(unknown.status).toBe(400);
    expect(await unknown.json()).toMatchObject({
      error: { message: expect.stringContaining("'chunk'") as string },
    });
    expect(notJson.status).toBe(400);
    expect(server.requests).toHaveLength(2);
    expect(server.requests[1]?.body).toEqual({});
  });

  it('answers 400 for a status Node cannot send asked for in the model name, and refuses one scripted', async () => {
    for (const status of [0, 99, 1000]) {
      const answer = await post(streamBody(`fake?status=${status}`));
      expect(answer.status).toBe(400);
      expect(await answer.json()).toMatchObject({
        error: { message: `a fake status must be an HTTP status code (100 to 999), got ${status}` },
      });
    }
    expect(() => server.enqueue({ fault: 'status', status: 99 })).toThrow(/got 99/);
    expect(() => server.setDefault({ fault: 'error', status: 1000 })).toThrow(/got 1000/);
    // The server still answers: nothing was queued.
    expect((await post(streamBody('fake?chunks=1'))).status).toBe(200);
  });

  it('refuses a scripted answer it could not play as written, naming what is wrong', async () => {
    for (const [response, shown] of [
      [{ fault: 'boom' }, /fault must be one of none, status, error, reset, truncate, stall, got "boom"/],
      [{ chunk: ['a', 'b'] }, /fault 'none' cannot be played: Unrecognized key: "chunk"/],
      [{ chunks: -1 }, /chunks: .*got -1/],
      [{ chunks: 1.5 }, /chunks: .*got 1\.5/],
      [{ chunks: Infinity }, /chunks: .*got Infinity/],
      [{ chunks: ['a', 1] }, /chunks: .*got \["a",1\]/],
      [{ chunks: Object.create(null) as object }, /chunks: .*got \{\}/],
      [{ fault: 'toString' }, /fault must be one of none, .*got "toString"/],
      [{ fault: '__proto__' }, /fault must be one of none, .*got "__proto__"/],
      [{ fault: 'status', status: 429, retryAfter: -1 }, /retryAfter: expected a number ≥ 0, got -1/],
      [{ fault: 'reset', keepOpen: true }, /fault 'reset' cannot be played: Unrecognized key: "keepOpen"/],
      [{ reasoning: { deltas: ['a'], field: 'thinking' } }, /reasoning\.field: /],
    ] as const) {
      expect(() => server.enqueue(response as never)).toThrow(shown);
      expect(() => server.setDefault(response as never)).toThrow(shown);
    }
    // Nothing was queued: the next request gets the answer its model name asks for.
    const answer = await post(streamBody('fake?chunks=1'));
    expect(answer.status).toBe(200);
    expect(await answer.text()).toContain('[DONE]');
  });

  it('refuses an option it does not have, naming it', async () => {
    await expect(createFakeOpenAIServer({ prot: 0 } as never)).rejects.toThrow(
      /^createFakeOpenAIServer has no option "prot": its options are port, maxTokensFields, backlog$/,
    );
  });

  it('answers 404 with an OpenAI-shaped body for an unknown route', async () => {
    const response = await fetch(`${server.url}/embeddings`, { method: 'POST', body: '{}' });

    expect(response.status).toBe(404);
    expect(await response.json()).toMatchObject({ error: { type: 'invalid_request_error' } });
  });
});

describe('requests and answers', () => {
  it('nextRequest resolves with one already arrived, then with the next to arrive', async () => {
    await (await post(streamBody('first'))).text();

    const first = await server.nextRequest();
    const next = server.nextRequest();
    await (await post(streamBody('second'))).text();

    expect(first.body.model).toBe('first');
    expect((await next).body.model).toBe('second');
    expect(first.path).toBe('/v1/chat/completions');
    expect(first.method).toBe('POST');
    expect(first.headers['content-type']).toBe('application/json');
    expect(server.requests.map((request) => request.body.model)).toEqual(['first', 'second']);
  });

  it('answers from the queue first, then the default, then the model name', async () => {
    server.enqueue({ chunks: ['queued'] });
    const queued = await (await post(streamBody('fake?chunks=1'))).text();
    const byModel = await (await post(streamBody('fake?chunks=1'))).text();
    server.setDefault({ chunks: ['default'] });
    const byDefault = await (await post(streamBody('fake?chunks=1'))).text();
    server.setDefault(undefined);

    expect(contentOf(chunks(queued))).toEqual(['queued']);
    expect(contentOf(chunks(byModel))).toEqual(fakeChunks(1));
    expect(contentOf(chunks(byDefault))).toEqual(['default']);
    expect(server.requests.map((request) => request.response)).toEqual([
      { chunks: ['queued'] },
      { fault: 'none', chunks: 1 },
      { chunks: ['default'] },
    ]);
  });

  it('answers a non-stream request with a chat.completion', async () => {
    const response = await post({ model: 'gpt-5-mini', messages: [{ role: 'user', content: 'Hi' }] });

    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({
      object: 'chat.completion',
      model: 'gpt-5-mini',
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: 'Hello from the fake OpenAI server.' },
          finish_reason: 'stop',
        },
      ],
      usage: { prompt_tokens: 1, completion_tokens: 7, total_tokens: 8 },
    });
  });

  it('plays a scripted answer to a non-stream request as its stream would: tool calls joined, the token limit, no usage', async () => {
    server.enqueue(
      {
        chunks: ['a', 'b'],
        reasoning: { deltas: ['th', 'ink'] },
        toolCalls: [
          { index: 0, id: 'call_1', type: 'function', function: { name: 'add', arguments: '{"a":' } },
          { index: 0, function: { arguments: '1}' } },
          { index: 1, id: 'call_2', type: 'function', function: { name: 'now', arguments: '' } },
        ],
      },
      { chunks: 5 },
      { chunks: ['x'], usage: false },
    );
    const json = async (body: object) => (await post(body)).json() as Promise<Record<string, unknown>>;

    expect(await json({ model: 'm', messages: [] })).toMatchObject({
      choices: [
        {
          message: {
            role: 'assistant',
            content: 'ab',
            reasoning_content: 'think',
            tool_calls: [
              { id: 'call_1', type: 'function', function: { name: 'add', arguments: '{"a":1}' } },
              { id: 'call_2', type: 'function', function: { name: 'now', arguments: '' } },
            ],
          },
          finish_reason: 'tool_calls',
        },
      ],
      // Counted as the stream counts them: two chunks, two reasoning deltas, three tool-call deltas.
      usage: { completion_tokens: 7 },
    });
    expect(await json({ model: 'm', messages: [], max_tokens: 3 })).toMatchObject({
      choices: [{ message: { content: 'Hello from the' }, finish_reason: 'length' }],
      usage: { completion_tokens: 3 },
    });
    const noUsage = await json({ model: 'm', messages: [] });
    expect(noUsage).toMatchObject({ choices: [{ message: { content: 'x' }, finish_reason: 'stop' }] });
    expect(noUsage).not.toHaveProperty('usage');
  });

  it('applies faults to non-stream requests: reset drops the connection, truncate cuts the JSON', async () => {
    server.enqueue({ fault: 'reset' }, { fault: 'truncate' });

    await expect(post({ model: 'gpt-5-mini', messages: [] })).rejects.toThrow();
    const truncated = await post({ model: 'gpt-5-mini', messages: [] });

    await expect(truncated.json()).rejects.toThrow(SyntaxError);
    const request = await server.nextRequest();
    await request.closed;
    expect(request.clientAborted).toBe(false);
  });

  it('lists models on GET /v1/models', async () => {
    const response = await fetch(`${server.url}/models`);

    expect(await response.json()).toMatchObject({ object: 'list', data: [{ id: 'fake', object: 'model' }] });
  });

  it('close() ends open streams without counting them as client aborts, and rejects waiting nextRequest', async () => {
    server.enqueue({ fault: 'stall', chunks: ['a'] });
    const response = await post(streamBody());
    const request = await server.nextRequest();
    const waiting = server.nextRequest();

    await server.close();

    await expect(waiting).rejects.toThrow(/closed/);
    await expect(response.text()).rejects.toThrow();
    await request.closed;
    expect(request.clientAborted).toBe(false);
  });
});

describe('parseFakeModel', () => {
  it.each([
    ['gpt-5-mini', {}],
    ['fake?chunks=10000&delayMs=0', { fault: 'none', chunks: 10_000, delayMs: 0 }],
    ['fake?fault=truncate&chunks=3', { fault: 'truncate', chunks: 3 }],
    ['fake?status=429&retryAfter=2', { fault: 'status', status: 429, retryAfter: 2 }],
    ['fake?fault=status', { fault: 'status', status: 500 }],
    ['fake?fault=stall&chunks=0&headers=false', { fault: 'stall', chunks: 0, headers: false }],
    ['fake?fault=reset&chunks=5&delayMs=10', { fault: 'reset', chunks: 5, delayMs: 10 }],
    ['fake?finishReason=length&usage=false', { fault: 'none', finishReason: 'length', usage: false }],
    [
      'fake?reasoning=2&keepOpen=true',
      { fault: 'none', reasoning: { deltas: ['Thought 1. ', 'Thought 2. '] }, keepOpen: true },
    ],
    ['fake?fault=error&status=429&chunks=1', { fault: 'error', status: 429, chunks: 1 }],
    [
      'fake?status=400&body=detail&message=no',
      { fault: 'status', status: 400, body: 'detail', message: 'no' },
    ],
  ])('reads %s', (model, expected) => {
    expect(parseFakeModel(model)).toEqual(expected);
  });

  it.each([
    'fake?fault=explode',
    'fake?chunks=-1',
    'fake?chunks=many',
    'fake?delay=5',
    'fake?status=400&body=html',
  ])('rejects %s', (model) => {
    expect(() => parseFakeModel(model)).toThrow();
  });

  it.each([
    ['fake?usage=nope', "fake model parameter 'usage' must be true or false, got 'nope'"],
    ['fake?keepOpen=yes', "fake model parameter 'keepOpen' must be true or false, got 'yes'"],
    ['fake?fault=reset&headers=maybe', "fake model parameter 'headers' must be true or false, got 'maybe'"],
    ['fake?fault=status&chunks=3', "fake model parameter 'chunks' does not apply to fault 'status'"],
    ['fake?fault=stall&reasoning=2', "fake model parameter 'reasoning' does not apply to fault 'stall'"],
  ])('rejects %s, naming the parameter, rather than ignore it', (model, message) => {
    expect(() => parseFakeModel(model)).toThrow(message);
  });
});

describe('options', () => {
  // The listen queue's length is the kernel's: `ss` prints it as the listening socket's Send-Q.
  const listenQueue = (port: number): number | undefined => {
    try {
      const line = execFileSync('ss', ['-Hltn', `sport = :${port}`], { encoding: 'utf8' }).trim();
      return Number(line.split(/\s+/)[2]);
    } catch {
      return undefined;
    }
  };
  const hasSs = process.platform === 'linux' && listenQueue(1) !== undefined;

  it.skipIf(!hasSs)('listens with the backlog asked for, and with Node’s 511 by default', async () => {
    const burst = await createFakeOpenAIServer({ backlog: 1_024 });
    try {
      expect(listenQueue(burst.port)).toBe(1_024);
      expect(listenQueue(server.port)).toBe(511);
    } finally {
      await burst.close();
    }
  });
});
