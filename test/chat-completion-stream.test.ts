import type { ServerResponse } from 'node:http';
import { constants, createGzip, gzipSync } from 'node:zlib';
import OpenAI, { APIError, APIUserAbortError } from 'openai';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  pushChatCompletionEvents,
  readChatCompletionStream,
  type ChatCompletionEvent,
  type ChatCompletionReading,
} from '../src/model/chat-completion-stream.js';
import { nodeBodyOf, nodeHttpFetch, UnreadableResponseError } from '../src/model/node-http-fetch.js';
import { collect } from './support/collect.js';
import { listen, type Listening } from './support/listen.js';

// A server written for these tests: each answer is a script of raw writes, so that events split
// across reads (and characters across bytes) are under the test's control.

type Answer = (res: ServerResponse) => void;

let server: Listening;
let answers: Answer[];
let closed: Promise<void>[];
let client: OpenAI;
/** The headers of each request the server got. */
let requests: Record<string, string | string[] | undefined>[];
/** An answer that writes its own head: the server then writes none. */
let ownHead: boolean;

// Both ways a body is read: the global fetch's web stream (an injected client), and the node
// stream of `nodeHttpFetch` (what `OpenAIChat` sends with).
const fetches = [
  ['the global fetch', undefined],
  ['nodeHttpFetch', nodeHttpFetch],
] as const;

function setUp(fetch: typeof nodeHttpFetch | undefined) {
  beforeEach(async () => {
    answers = [];
    closed = [];
    requests = [];
    ownHead = false;
    server = await listen((req, res) => {
      requests.push({ ...req.headers, ':method': req.method, ':path': req.url });
      req.resume();
      closed.push(new Promise((resolve) => res.once('close', resolve)));
      req.once('end', () => {
        if (!ownHead) {
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.flushHeaders();
        }
        answers.shift()?.(res);
      });
    });
    client = new OpenAI({ apiKey: 'test', baseURL: `${server.url}/v1`, maxRetries: 0, fetch });
  });

  afterEach(() => server.close());
}

const chunk = (content: string, finish: string | null = null) =>
  `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content }, finish_reason: finish }] })}\n\n`;

function open(signal?: AbortSignal): Promise<AsyncIterableIterator<ChatCompletionEvent>> {
  const body = { model: 'm', messages: [{ role: 'user' as const, content: 'hi' }], stream: true as const };
  return client.chat.completions.create(body, { signal }).asResponse().then(readChatCompletionStream);
}

const contents = (events: ChatCompletionEvent[]) => events.map((event) => event.choices[0]?.delta.content);

describe.each(fetches)('readChatCompletionStream, with %s', (_name, fetch) => {
  setUp(fetch);

  it('yields every event in order, parsed, and ends at [DONE]', async () => {
    answers.push((res) => res.end(chunk('Hel') + chunk('lo') + chunk('', 'stop') + 'data: [DONE]\n\n'));

    const events = await collect(await open());

    expect(contents(events)).toEqual(['Hel', 'lo', '']);
    expect(events[2]?.choices[0]?.finish_reason).toBe('stop');
  });

  it('puts together events and characters split across reads', async () => {
    const text = chunk('héllo 🐉') + chunk('!', 'stop') + 'data: [DONE]\n\n';
    const bytes = Buffer.from(text);
    const dragon = bytes.indexOf(Buffer.from('🐉'));
    answers.push((res) => {
      // Split inside the 4 bytes of the dragon, then inside the second event's `data:` line.
      res.write(bytes.subarray(0, dragon + 2));
      setImmediate(() => {
        res.write(bytes.subarray(dragon + 2, dragon + 30));
        setImmediate(() => res.end(bytes.subarray(dragon + 30)));
      });
    });

    expect(contents(await collect(await open()))).toEqual(['héllo 🐉', '!']);
  });

  it('yields an error a server sends inside the stream, as it came', async () => {
    const error = { message: 'overloaded', type: 'server_error', code: null };
    answers.push((res) => res.end(chunk('a') + `data: ${JSON.stringify({ error })}\n\n`));

    const events = await collect(await open());

    expect(events[1]).toEqual({ error });
  });

  it('ends at [DONE] when the server keeps the body open, and closes the socket', async () => {
    answers.push((res) => res.write(chunk('a', 'stop') + 'data: [DONE]\n\n'));

    expect(contents(await collect(await open()))).toEqual(['a']);
    await closed[0];
  });

  it('ends quietly when the body ends without [DONE] (the caller judges the stream incomplete)', async () => {
    answers.push((res) => res.end(chunk('a') + chunk('b')));

    expect(contents(await collect(await open()))).toEqual(['a', 'b']);
  });

  it('rejects when the connection drops mid-body', async () => {
    answers.push((res) => res.write(chunk('a'), () => res.socket?.destroy()));
    const events = await open();

    await expect(events.next()).resolves.toMatchObject({ value: { choices: [{ delta: { content: 'a' } }] } });
    await expect(events.next()).rejects.toThrow();
  });

  it('closes the socket when the consumer leaves early', async () => {
    answers.push((res) => res.write(chunk('a') + chunk('b')));

    for await (const event of await open()) {
      expect(contents([event])).toEqual(['a']);
      break;
    }

    await closed[0];
  });

  it('rejects a pending read when the request is aborted, and the socket closes', async () => {
    answers.push((res) => res.write(chunk('a')));
    const controller = new AbortController();
    const events = await open(controller.signal);
    await events.next();

    const pending = events.next();
    controller.abort();

    await expect(pending).rejects.toThrow();
    await closed[0];
  });

  it('pushes the events of one read together, before any promise runs; stop() ends it there and closes the socket', async () => {
    answers.push((res) => res.write(chunk('a') + chunk('b') + chunk('c')));
    const body = { model: 'm', messages: [{ role: 'user' as const, content: 'hi' }], stream: true as const };
    const response = await client.chat.completions.create(body).asResponse();
    const seen: string[] = [];
    let reading!: ChatCompletionReading;
    const stopped = new Promise<void>((resolve) => {
      reading = pushChatCompletionEvents(response, {
        event(event) {
          seen.push(String(event.choices[0]?.delta.content));
          // A promise job queued by the first event runs only after the read's other events.
          if (seen.length === 1) void Promise.resolve().then(() => seen.push('(promise job)'));
          if (seen.length === 2) {
            reading.stop();
            resolve();
          }
        },
        close: () => seen.push('(close)'),
      });
    });

    await stopped;
    await closed[0];
    expect(seen).toEqual(['a', 'b', '(promise job)']);
  });

  it('rejects an event that is not JSON', async () => {
    answers.push((res) => res.end('data: {"choices": [\n\n'));

    await expect(collect(await open())).rejects.toThrow(SyntaxError);
  });
});

describe('nodeHttpFetch', () => {
  setUp(nodeHttpFetch);

  it("sends the SDK's headers and body, and hands over the body as a node stream", async () => {
    answers.push((res) => res.end(chunk('a', 'stop') + 'data: [DONE]\n\n'));
    const body = { model: 'm', messages: [{ role: 'user' as const, content: 'hi' }], stream: true as const };

    const response = await client.chat.completions.create(body).asResponse();

    expect(response.body).toBeNull();
    expect(nodeBodyOf(response)).toBeDefined();
    expect(contents(await collect(readChatCompletionStream(response)))).toEqual(['a']);
    expect(requests[0]).toMatchObject({ authorization: 'Bearer test', 'content-type': 'application/json' });
    expect(Number(requests[0]!['content-length'])).toBe(Buffer.byteLength(JSON.stringify(body)));
  });

  it('reads a long burst in order, however far ahead of its consumer the server is', async () => {
    const texts = Array.from({ length: 2_000 }, (_, i) => `t${i}`);
    answers.push((res) => res.end(texts.map((text) => chunk(text)).join('') + 'data: [DONE]\n\n'));

    const events = await open();
    const read: (string | null | undefined)[] = [];
    for await (const event of events) {
      read.push(...contents([event]));
      // A consumer slower than the socket: a turn of the event loop per event.
      await new Promise((resolve) => setImmediate(resolve));
    }

    expect(read).toEqual(texts);
  });

  it('reads a gzip body', async () => {
    ownHead = true;
    answers.push((res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'content-encoding': 'gzip' });
      res.end(gzipSync(chunk('zipped', 'stop') + 'data: [DONE]\n\n'));
    });

    expect(contents(await collect(await open()))).toEqual(['zipped']);
  });

  it('closes the socket of a gzip body the server keeps open after [DONE]', async () => {
    ownHead = true;
    answers.push((res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'content-encoding': 'gzip' });
      const gzip = createGzip();
      gzip.pipe(res);
      // Flushed, so that it reaches the client whole; the body is never ended.
      gzip.write(chunk('zipped', 'stop') + 'data: [DONE]\n\n');
      gzip.flush(constants.Z_SYNC_FLUSH);
    });

    expect(contents(await collect(await open()))).toEqual(['zipped']);
    // Closed by the client, through the decompressor, not left open with the server writing on.
    await closed[0];
  });

  it('answers an error page cut short, or empty, in gzip with its status and headers, as fetch does', async () => {
    ownHead = true;
    const page = gzipSync(JSON.stringify({ error: { message: 'slow down' } }));
    answers.push((res) => {
      // Without its trailer: a proxy that compressed it on the fly and was cut.
      res.writeHead(429, { 'content-encoding': 'gzip', 'retry-after': '20' });
      res.end(page.subarray(0, page.length - 8));
    });
    answers.push((res) => res.writeHead(502, { 'content-encoding': 'gzip', 'content-length': 0 }).end());

    const limited = await nodeHttpFetch(`${server.url}/v1/chat/completions`, { method: 'POST', body: '{}' });
    expect(limited.status).toBe(429);
    expect(limited.headers.get('retry-after')).toBe('20');
    expect(await limited.json()).toEqual({ error: { message: 'slow down' } });
    const bad = await nodeHttpFetch(`${server.url}/v1/chat/completions`, { method: 'POST', body: '{}' });
    expect(bad.status).toBe(502);
    expect(await bad.text()).toBe('');
  });

  it('refuses an encoding it cannot decode with an error that says no retry can read it', async () => {
    ownHead = true;
    answers.push((res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'content-encoding': 'zstd' });
      res.end('?');
    });

    const refused = nodeHttpFetch(`${server.url}/v1/chat/completions`, { method: 'POST', body: '{}' });

    await expect(refused).rejects.toThrow(UnreadableResponseError);
    await expect(refused).rejects.toThrow('the server answered in an unknown content encoding: zstd');
  });

  it('follows a 307 and a 308 as fetch does: the same method, body and headers, to the new path', async () => {
    ownHead = true;
    answers.push((res) => res.writeHead(307, { location: '/v2/chat/completions' }).end());
    answers.push((res) => res.writeHead(308, { location: `${server.url}/v3/chat/completions` }).end());
    answers.push((res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(chunk('moved', 'stop') + 'data: [DONE]\n\n');
    });

    expect(contents(await collect(await open()))).toEqual(['moved']);
    expect(requests.map((request) => request[':path'])).toEqual([
      '/v1/chat/completions',
      '/v2/chat/completions',
      '/v3/chat/completions',
    ]);
    for (const request of requests) {
      expect(request).toMatchObject({
        ':method': 'POST',
        authorization: 'Bearer test',
        'content-type': 'application/json',
      });
      expect(request['content-length']).toBe(requests[0]!['content-length']);
    }
  });

  it('turns a POST redirected by a 302 into a GET without a body, and drops Authorization for another origin', async () => {
    const other = await listen((req, res) => {
      requests.push({ ...req.headers, ':method': req.method, ':path': req.url });
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(chunk('elsewhere', 'stop') + 'data: [DONE]\n\n');
    });
    ownHead = true;
    answers.push((res) => res.writeHead(302, { location: `${other.url}/moved` }).end());

    try {
      expect(contents(await collect(await open()))).toEqual(['elsewhere']);
    } finally {
      await other.close();
    }
    expect(requests[1]).toMatchObject({ ':method': 'GET', ':path': '/moved' });
    expect(requests[1]).not.toHaveProperty('authorization');
    expect(requests[1]).not.toHaveProperty('content-length');
    expect(requests[1]).not.toHaveProperty('content-type');
  });

  it('gives up after 20 redirects', async () => {
    ownHead = true;
    for (let i = 0; i <= 20; i++) answers.push((res) => res.writeHead(307, { location: `/loop/${i}` }).end());

    const looping = nodeHttpFetch(`${server.url}/v1/chat/completions`, { method: 'POST', body: '{}' });

    await expect(looping).rejects.toThrow(UnreadableResponseError);
    await expect(looping).rejects.toThrow('more than 20 redirects, the last to /loop/20');
    expect(requests).toHaveLength(21);
  });

  it('gives the SDK an error status with its body, so it reads the reason', async () => {
    ownHead = true;
    answers.push((res) => {
      res.writeHead(400, { 'content-type': 'application/json', 'x-request-id': 'req_1' });
      res.end(JSON.stringify({ error: { message: 'messages is empty', type: 'invalid_request_error' } }));
    });

    const error = await open().catch((caught: unknown) => caught);

    expect(error).toBeInstanceOf(APIError);
    expect(error).toMatchObject({ status: 400, message: '400 messages is empty', requestID: 'req_1' });
  });

  it('rejects with an abort while the headers are awaited, and the server sees the socket close', async () => {
    ownHead = true;
    let arrived!: () => void;
    const arrival = new Promise<void>((resolve) => (arrived = resolve));
    answers.push(() => arrived());
    const controller = new AbortController();
    const opening = open(controller.signal);
    await arrival;

    controller.abort();

    await expect(opening).rejects.toBeInstanceOf(APIUserAbortError);
    await closed[0];
  });

  it("keeps the connections of many streams that end together for the next ones (more than Node's 256)", async () => {
    let connections = 0;
    server.server.on('connection', () => connections++);
    const streams = 400;
    const batch = async () => {
      // Every stream open before any ends: each needs a connection of its own.
      let opened = 0;
      let allOpen!: () => void;
      const open = new Promise<void>((resolve) => (allOpen = resolve));
      for (let i = 0; i < streams; i++) {
        answers.push((res) => {
          if (++opened === streams) allOpen();
          void open.then(() => res.end(chunk('a', 'stop') + 'data: [DONE]\n\n'));
        });
      }
      const body = {
        model: 'm',
        messages: [{ role: 'user' as const, content: 'hi' }],
        stream: true as const,
      };
      await Promise.all(
        Array.from({ length: streams }, async () =>
          collect(readChatCompletionStream(await client.chat.completions.create(body).asResponse())),
        ),
      );
    };

    await batch();
    await batch();

    expect(connections).toBe(streams);
  });

  it('reports a body cut mid-event as fetch does: a TypeError', async () => {
    answers.push((res) => res.write(chunk('a') + 'data: {"cho', () => res.socket?.destroy()));
    const events = await open();
    await events.next();

    await expect(events.next()).rejects.toBeInstanceOf(TypeError);
  });
});
