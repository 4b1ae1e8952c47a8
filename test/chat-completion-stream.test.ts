import type { ServerResponse } from 'node:http';
import OpenAI from 'openai';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readChatCompletionStream, type ChatCompletionEvent } from '../src/model/chat-completion-stream.js';
import { collect } from './support/collect.js';
import { listen, type Listening } from './support/listen.js';

// A server written for these tests: each answer is a script of raw writes, so that events split
// across reads (and characters across bytes) are under the test's control.

type Answer = (res: ServerResponse) => void;

let server: Listening;
let answers: Answer[];
let closed: Promise<void>[];
let client: OpenAI;

beforeEach(async () => {
  answers = [];
  closed = [];
  server = await listen((req, res) => {
    req.resume();
    closed.push(new Promise((resolve) => res.once('close', resolve)));
    req.once('end', () => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.flushHeaders();
      answers.shift()?.(res);
    });
  });
  client = new OpenAI({ apiKey: 'test', baseURL: `${server.url}/v1`, maxRetries: 0 });
});

afterEach(() => server.close());

const chunk = (content: string, finish: string | null = null) =>
  `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content }, finish_reason: finish }] })}\n\n`;

function open(signal?: AbortSignal): Promise<AsyncIterableIterator<ChatCompletionEvent>> {
  const body = { model: 'm', messages: [{ role: 'user' as const, content: 'hi' }], stream: true as const };
  return client.chat.completions.create(body, { signal }).asResponse().then(readChatCompletionStream);
}

const contents = (events: ChatCompletionEvent[]) => events.map((event) => event.choices[0]?.delta.content);

describe('readChatCompletionStream', () => {
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

  it('rejects an event that is not JSON', async () => {
    answers.push((res) => res.end('data: {"choices": [\n\n'));

    await expect(collect(await open())).rejects.toThrow(SyntaxError);
  });
});
