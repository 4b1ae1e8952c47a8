import { once } from 'node:events';
import { get, ServerResponse, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { eventFrame, openEventStream, type EventStream } from '../../src/server/event-stream.js';
import { listen } from '../support/listen.js';

/** A node:http server whose one request opens an event stream; the test drives it. */
async function serveStream(
  options: { heartbeatMs: number; retryMs?: number } = { heartbeatMs: 60_000 },
): Promise<{ stream: EventStream; res: ServerResponse; response: IncomingMessage; close(): void }> {
  let opened: ((value: { stream: EventStream; res: ServerResponse }) => void) | undefined;
  const ready = new Promise<{ stream: EventStream; res: ServerResponse }>((resolve) => (opened = resolve));
  const server = await listen((_req, res) => opened!({ stream: openEventStream(res, options), res }));
  const response = await new Promise<IncomingMessage>((resolve) => get(`${server.url}/`, resolve));
  const { stream, res } = await ready;
  const close = () => void server.close();
  closers.push(close);
  return { stream, res, response, close };
}
const closers: Array<() => void> = [];
afterEach(() => {
  vi.useRealTimers();
  closers.splice(0).forEach((close) => close());
});

async function text(response: IncomingMessage): Promise<string> {
  let body = '';
  for await (const chunk of response) body += String(chunk);
  return body;
}

/** Records what `socket` hands to the kernel, one entry per write (Writable's `_write`, `_writev`). */
function recordWrites(socket: Socket, writes: string[]): void {
  const internals = socket as unknown as {
    _write(chunk: Buffer, encoding: string, callback: () => void): void;
    _writev(chunks: { chunk: Buffer | string }[], callback: () => void): void;
  };
  const write = internals._write.bind(socket);
  const writev = internals._writev.bind(socket);
  internals._write = (chunk, encoding, callback) => {
    writes.push(String(chunk));
    write(chunk, encoding, callback);
  };
  internals._writev = (chunks, callback) => {
    writes.push(chunks.map(({ chunk }) => String(chunk)).join(''));
    writev(chunks, callback);
  };
}

describe('openEventStream', () => {
  it('writes a frame whose JSON holds U+2028, U+2029 or U+0085 on one line for every line reader (Python splits there)', () => {
    const content = 'a\u2028b\u2029c\u0085d';
    const frame = eventFrame({ id: 1, event: 'RunContent', data: JSON.stringify({ content }) });
    expect(frame).toBe('id: 1\nevent: RunContent\ndata: {"content":"a\\u2028b\\u2029c\\u0085d"}\n\n');
    const data = frame.split('\n')[2]!.slice('data: '.length);
    expect(JSON.parse(data)).toEqual({ content });
  });

  it('sends the event-stream headers, `retry:` first when asked, frames, and ends once', async () => {
    const { stream, response } = await serveStream({ heartbeatMs: 60_000, retryMs: 2000 });
    expect(response.headers['content-type']).toBe('text/event-stream');
    expect(response.headers['cache-control']).toBe('no-cache, no-transform');
    expect(response.headers['x-accel-buffering']).toBe('no');
    stream.write(eventFrame({ id: 1, event: 'RunContent', data: '{"a":1}' }));
    stream.write(eventFrame({ event: 'snapshot', data: '{}' }));
    stream.end();
    stream.end();
    expect(stream.write('late')).toBe(false);
    expect(await text(response)).toBe(
      'retry: 2000\n\nid: 1\nevent: RunContent\ndata: {"a":1}\n\nevent: snapshot\ndata: {}\n\n',
    );
    expect(stream.over).toBe(true);
  });

  it('tells when the client went away, once, and never after its own end', async () => {
    const first = await serveStream();
    const calls: string[] = [];
    first.stream.onClientGone(() => calls.push('gone'));
    const removed = first.stream.onClientGone(() => calls.push('removed'));
    removed();
    first.response.destroy();
    await once(first.res, 'close');
    expect(calls).toEqual(['gone']);
    expect(first.stream.over).toBe(true);
    expect(await first.stream.drained()).toBe(false);

    const second = await serveStream();
    second.stream.onClientGone(() => calls.push('second gone'));
    second.stream.end();
    await text(second.response);
    expect(calls).toEqual(['gone']);
  });

  it('reports a full socket buffer: write() false, then drained() resolves once it drained', async () => {
    const { stream, response } = await serveStream();
    // The client reads nothing yet: once the kernel's buffers are full, writes queue up in the
    // process and write() says false (a few MB on loopback; 4,000 frames are 256 MB).
    const frame = eventFrame({ event: 'big', data: 'x'.repeat(64 * 1024) });
    let written = 0;
    while (written < 4000) {
      written++;
      if (!stream.write(frame)) break;
    }
    expect(written).toBeLessThan(4000);
    const body = text(response);
    expect(await stream.drained()).toBe(true);
    expect(await stream.drained()).toBe(true); // nothing waits to drain: at once
    stream.end();
    expect(await body).toBe(frame.repeat(written));
  });

  it('frames every chunk right, multi-byte text included, on its own socket or through a wrapped write', async () => {
    const frames = [
      eventFrame({ id: 1, event: 'RunContent', data: '{"content":"héllo ✓ 😀"}' }),
      '',
      eventFrame({ id: 2, event: 'RunContent', data: '{"content":"€"}' }),
    ];
    // A plain response: its frames go to its socket as chunks framed here, not through res.write.
    const resWrite = vi.spyOn(ServerResponse.prototype, 'write');
    const { stream, response } = await serveStream();
    for (const frame of frames) expect(stream.write(frame)).toBe(true);
    stream.end();
    expect(resWrite).not.toHaveBeenCalled();
    resWrite.mockRestore();
    expect(await text(response)).toBe(frames.join(''));

    // Middleware that wraps res.write (compression does) sees every frame.
    const seen: string[] = [];
    const server = await listen((_req, res) => {
      const write = res.write.bind(res) as (chunk: string) => boolean;
      res.write = ((chunk: string) => {
        seen.push(String(chunk));
        return write(chunk);
      }) as typeof res.write;
      const wrapped = openEventStream(res, { heartbeatMs: 60_000 });
      for (const frame of frames) wrapped.write(frame);
      wrapped.end();
    });
    closers.push(() => void server.close());
    const wrappedResponse = await new Promise<IncomingMessage>((resolve) => get(`${server.url}/`, resolve));
    expect(await text(wrappedResponse)).toBe(frames.join(''));
    expect(seen).toEqual(frames);
  });

  it('writes the frames of one tick in one socket write at its end: the headers with the first, the end of the body with the last', async () => {
    const writes: string[] = [];
    let stream!: EventStream;
    const server = await listen((_req, res) => {
      recordWrites(res.socket!, writes);
      stream = openEventStream(res, { heartbeatMs: 60_000 });
      stream.write(eventFrame({ id: 1, event: 'RunStarted', data: '{}' }));
      stream.write(eventFrame({ id: 2, event: 'RunContent', data: '{"content":"é"}' }));
      expect(writes).toEqual([]); // not before the end of the tick
    });
    closers.push(() => void server.close());
    const response = await new Promise<IncomingMessage>((resolve) => get(`${server.url}/`, resolve));
    const body = text(response);
    expect(writes).toHaveLength(1);
    expect(writes[0]).toMatch(/^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\n/);
    const first = 'id: 1\nevent: RunStarted\ndata: {}\n\nid: 2\nevent: RunContent\ndata: {"content":"é"}\n\n';
    const head = writes[0]!.indexOf('\r\n\r\n') + 4;
    expect(writes[0]!.slice(head)).toBe(`${Buffer.byteLength(first).toString(16)}\r\n${first}\r\n`);

    const last = 'id: 3\nevent: RunContent\ndata: {}\n\nid: 4\nevent: RunCompleted\ndata: {}\n\n';
    stream.write(eventFrame({ id: 3, event: 'RunContent', data: '{}' }));
    stream.write(eventFrame({ id: 4, event: 'RunCompleted', data: '{}' }));
    stream.end();
    expect(writes).toHaveLength(2);
    expect(writes[1]).toBe(`${Buffer.byteLength(last).toString(16)}\r\n${last}\r\n0\r\n\r\n`);
    expect(await body).toBe(first + last);
  });

  it('sends a `: ping` once nothing was written for heartbeatMs, however soon after a timer tick the last frame came', async () => {
    vi.useFakeTimers({
      toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'performance'],
    });
    const { stream, res } = await serveStream({ heartbeatMs: 1_000 });
    const writes: string[] = [];
    recordWrites(res.socket!, writes);
    const pings = () => writes.filter((write) => write.includes(': ping')).length;
    await vi.advanceTimersByTimeAsync(10);
    stream.write(eventFrame({ id: 1, event: 'RunContent', data: '{}' }));
    // Quiet for 999 ms at the first tick: no ping yet, and none left for a second tick.
    await vi.advanceTimersByTimeAsync(999);
    expect(pings()).toBe(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(pings()).toBe(1);
    // Then one every heartbeatMs while nothing else comes.
    await vi.advanceTimersByTimeAsync(999);
    expect(pings()).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(pings()).toBe(2);
    stream.end();
  });

  it('takes a heartbeat period longer than a timer holds (Infinity) as that long, not as a ping at every turn', async () => {
    // Node fires a timer of more than 2^31-1 ms after 1 ms: such a period must never reach a timer.
    const timers = vi.spyOn(globalThis, 'setTimeout');
    const { stream } = await serveStream({ heartbeatMs: Infinity });
    const delays = timers.mock.calls.map(([, ms]) => ms ?? 0);
    timers.mockRestore();
    expect(delays.length).toBeGreaterThan(0);
    expect(delays.every((ms) => ms <= 2 ** 31 - 1)).toBe(true);
    stream.end();
  });

  it('sends a `: ping` heartbeat when nothing else was written', async () => {
    const { stream, response } = await serveStream({ heartbeatMs: 5 });
    const first = await new Promise<string>((resolve) =>
      response.once('data', (chunk) => resolve(String(chunk))),
    );
    expect(first).toBe(': ping\n\n');
    stream.end();
  });
});
