import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { createMemoryRunStore, type RunStore } from '../../src/index.js';
import { postRun, serveFake } from '../support/app.js';
import { readSse } from '../support/sse.js';

describe('graceful shutdown', () => {
  it('sends RunCancelled (reason shutdown) to every open stream, ends them, then closes', async () => {
    const server = await serveFake();
    const { url, story, model } = server;
    const streamed = readSse(await postRun(story, { message: 'One' }));
    const other = readSse(await postRun(`${url}/agents/essay-writer-agent`, { message: 'Two' }));
    const accepted = await postRun(story, { message: 'Three', background: true });
    const background = (await accepted.json()) as { run_id: string };
    const follower = readSse(await fetch(`${story}/runs/${background.run_id}/events`));
    for (const reader of [streamed, other, follower]) expect((await reader.next())?.event).toBe('RunStarted');
    const calls = await Promise.all([model.nextCall(), model.nextCall(), model.nextCall()]);
    calls[0].emit('partial');
    expect((await streamed.next())?.data).toMatchObject({ content: 'partial' });

    const closing = server.close();
    for (const reader of [streamed, other, follower]) {
      const rest = await reader.rest(); // resolves once the server ended the stream
      expect(rest.at(-1)?.data).toMatchObject({
        event: 'RunCancelled',
        reason: 'shutdown',
        status: 'cancelled',
      });
    }
    await closing;
    expect(calls.every((call) => call.signal.aborted)).toBe(true);
    await expect(fetch(`${url}/health`)).rejects.toThrow();
  });

  it('answers a request on a connection already open 503 SHUTTING_DOWN while it shuts down (not a reset)', async () => {
    // The runs' final writes wait: the shutdown is in progress until they are let go.
    let letGo!: () => void;
    const held = new Promise<void>((resolve) => (letGo = resolve));
    const memory = createMemoryRunStore();
    const store: RunStore = {
      ...memory,
      finishRun: async (record) => (await held, memory.finishRun(record)),
    };
    const server = await serveFake({ orchestrator: { store } });
    await postRun(server.story, { message: 'One', background: true });
    await server.model.nextCall();

    // A keep-alive connection, idle once its first request is answered.
    const socket = connect(Number(new URL(server.url).port), '127.0.0.1');
    let text = '';
    let answered!: () => void;
    const answer = new Promise<void>((resolve) => (answered = resolve));
    socket.setEncoding('utf8').on('data', (data: string) => {
      text += data;
      if (/\{"status":"ok","instantiated_at":"[^"]+"\}$/.test(text)) answered();
    });
    const ended = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    socket.write('GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    await answer;

    const closing = server.close();
    const body = JSON.stringify({ message: 'Two' });
    text = '';
    socket.write(
      'POST /agents/story-writer-agent/runs HTTP/1.1\r\nHost: 127.0.0.1\r\n' +
        `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
    );
    // Read until the server ends the connection (it would reset it at once before).
    await ended;
    expect(text).toMatch(/^HTTP\/1\.1 503 Service Unavailable\r\n/);
    expect(text).toMatch(/^retry-after: 1$/im);
    expect(text).toContain('"code":"SHUTTING_DOWN"');
    letGo();
    await closing;
  });
});
