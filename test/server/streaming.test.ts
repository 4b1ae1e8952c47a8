import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import type { ServerResponse } from 'node:http';
import { describe, expect, it } from 'vitest';
import type { PausedRunOutput, RunEvent } from '../../src/index.js';
import { MemoryEventLog } from '../../src/runtime/event-log.js';
import {
  createMemoryEventBus,
  createMemoryRunStore,
  type EventBus,
  type RunStore,
} from '../../src/runtime/index.js';
import { MAX_REQUESTS_PER_CONNECTION } from '../../src/server/handle-per-connection.js';
import { sendEventStream, sseFrame } from '../../src/server/sse.js';
import { checkRunEvents, nextTurn } from '../../src/testing/index.js';
import { postRun, serveConfirmingAgent, serveFake } from '../support/app.js';
import { readSse } from '../support/sse.js';

describe('a streamed run (POST /agents/:agent_id/runs)', () => {
  it("honours a client's `Connection: close` (RFC 9112 §9.6): says so, and closes once the stream ends", async () => {
    const { story, model } = await serveFake();
    const { hostname, port } = new URL(story);
    const socket = connect(Number(port), hostname);
    let received = '';
    socket.setEncoding('utf8').on('data', (text: string) => (received += text));
    const body = 'message=Hi';
    socket.write(
      `POST ${new URL(story).pathname}/runs HTTP/1.1\r\nHost: ${hostname}\r\nConnection: close\r\n` +
        `Content-Type: application/x-www-form-urlencoded\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
    );
    const call = await model.nextCall();
    call.emit('Hi');
    call.end();
    // Closed by the server when the stream ends, not after its keep-alive timeout (5 s).
    await once(socket, 'close');
    expect(received).toMatch(/^HTTP\/1\.1 200 /);
    expect(received).toMatch(/\r\nconnection: close\r\n/i);
    expect(received).not.toMatch(/keep-alive/i);
    expect(received).toContain('event: RunCompleted');
  });

  it('streams SSE frames `id`, `event`, `data` with headers that stop proxy buffering, then ends', async () => {
    const { story, model } = await serveFake();
    const response = await postRun(story, { message: 'Tell me a story' });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/event-stream');
    expect(response.headers.get('cache-control')).toBe('no-cache, no-transform');
    expect(response.headers.get('x-accel-buffering')).toBe('no');
    const events = readSse(response);
    const call = await model.nextCall();
    const started = (await events.next())!;
    call.emit('Once ');
    const first = (await events.next())!;
    call.emit('upon a time.');
    const second = (await events.next())!;
    call.end();
    const frames = [started, first, second, ...(await events.rest())];
    checkRunEvents(
      frames.map((frame) => frame.data),
      'completed',
    );
    expect(frames.map((frame) => frame.event)).toEqual([
      'RunStarted',
      'RunContent',
      'RunContent',
      'RunCompleted',
    ]);
    // The Agent UI replaces what streamed with RunCompleted.content: it must be the whole text.
    expect(frames.at(-1)?.data).toMatchObject({ content: 'Once upon a time.', status: 'completed' });
    expect(frames[0]?.data).toMatchObject({ model: 'fake-model', model_provider: 'fake' });
  });

  it('puts each frame on one data line, JSON with "event" and no top-level "data" key', async () => {
    const { story, model } = await serveFake();
    const response = postRun(story, { message: 'Hi' });
    const call = await model.nextCall();
    call.emit('line one\nline two\r\n"quoted"\u2028');
    call.end();
    const text = await (await response).text();
    const frames = text.split('\n\n').filter(Boolean);
    expect(frames).toHaveLength(3);
    for (const frame of frames) {
      const lines = frame.split('\n');
      expect(lines).toHaveLength(3);
      expect(lines[0]).toMatch(/^id: \d+$/);
      expect(lines[1]).toMatch(/^event: Run\w+$/);
      const json = JSON.parse(lines[2]!.slice('data: '.length)) as Record<string, unknown>;
      expect(json.event).toBe(lines[1]!.slice('event: '.length));
      expect(json).not.toHaveProperty('data');
    }
  });

  it('carries the CORS allowed-origin header on the streamed response', async () => {
    const { story, model } = await serveFake({ cors: { origins: ['http://ui.example'] } });
    const response = await postRun(story, { message: 'Hi' }, { headers: { origin: 'http://ui.example' } });
    expect(response.headers.get('access-control-allow-origin')).toBe('http://ui.example');
    (await model.nextCall()).end();
    await readSse(response).rest();
  });

  it('ends with RunCancelled (reason api) when cancelled over HTTP during the stream, and closes', async () => {
    const { story, model } = await serveFake();
    const events = readSse(await postRun(story, { message: 'Write a long story' }));
    const { run_id } = (await events.next())!.data;
    const call = await model.nextCall();
    call.emit('It was');
    expect((await events.next())?.data).toMatchObject({ content: 'It was' });
    const cancel = await fetch(`${story}/runs/${run_id}/cancel`, { method: 'POST' });
    expect(await cancel.json()).toEqual({ run_id, status: 'cancelled' });
    expect(call.signal.aborted).toBe(true);
    call.emit(' never sent');
    const rest = await events.rest(); // resolves only once the server ended the stream
    expect(rest.map((frame) => frame.data)).toEqual([
      expect.objectContaining({
        event: 'RunCancelled',
        reason: 'api',
        status: 'cancelled',
        content: 'It was',
      }),
    ]);
  });

  it('ends with RunError when the model fails', async () => {
    const { story, model } = await serveFake();
    const events = readSse(await postRun(story, { message: 'Hi' }));
    (await model.nextCall()).fail(new Error('upstream exploded'));
    const frames = await events.rest();
    checkRunEvents(
      frames.map((frame) => frame.data),
      'failed',
    );
    expect(frames.at(-1)?.data).toMatchObject({ event: 'RunError', content: 'upstream exploded' });
  });

  it('sends a `: ping` comment on an idle stream', async () => {
    const { story, model } = await serveFake({ heartbeatMs: 5 });
    const events = readSse(await postRun(story, { message: 'Hi' }));
    await events.next(); // RunStarted
    await model.nextCall(); // the model says nothing: the stream is idle
    const comment = events.nextComment();
    // Keep reading, so that the parser sees the comment; this read ends when the server closes.
    events.next().catch(() => undefined);
    expect(await comment).toBe('ping');
  });
});

/**
 * Streamed runs of `story` asked for on one connection, each sent before the first is answered
 * (HTTP/1.1 pipelining, which `fetch` never does): the socket, its requests written.
 */
async function pipelinedRuns(url: string, story: string, messages: string[]): Promise<Socket> {
  const socket = connect(Number(new URL(url).port), '127.0.0.1');
  await once(socket, 'connect');
  const request = (message: string) => {
    const body = JSON.stringify({ message, stream: true });
    return `POST ${new URL(story).pathname}/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
  };
  socket.write(messages.map(request).join(''));
  return socket;
}

describe('requests pipelined on one connection', () => {
  /**
   * A server whose store counts the reads of a run (`getRun`) at once, and of run lists;
   * `gate` holds each read until opened.
   */
  async function countingReads() {
    const store = createMemoryRunStore();
    const reading = { now: 0, most: 0, reads: 0 };
    const listing = { now: 0, most: 0 };
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const counted: RunStore = {
      ...store,
      async getRun(runId) {
        reading.reads++;
        reading.most = Math.max(reading.most, ++reading.now);
        await gate;
        try {
          return await store.getRun(runId);
        } finally {
          reading.now--;
        }
      },
      async listRuns(filter) {
        listing.most = Math.max(listing.most, ++listing.now);
        await gate;
        try {
          return await store.listRuns(filter);
        } finally {
          listing.now--;
        }
      },
    };
    const server = await serveFake({ orchestrator: { store: counted } });
    const socket = connect(Number(new URL(server.url).port), '127.0.0.1');
    await once(socket, 'connect');
    const ask = (path: string, count: number) =>
      socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`.repeat(count));
    /** Resolves once the server has closed its side of every connection (it saw the client go). */
    const serverClosed = async () => {
      const count = () =>
        new Promise<number>((resolve) => server.server.getConnections((_, n) => resolve(n)));
      while ((await count()) > 0) await nextTurn();
    };
    return { reading, listing, open, socket, ask, serverClosed };
  }
  const RUN = '/agents/story-writer-agent/runs/no-such-run';

  it(`handles at most ${MAX_REQUESTS_PER_CONNECTION} at once, the others as earlier ones are answered, all in order`, async () => {
    const { reading, open, socket, ask } = await countingReads();
    let text = '';
    socket.setEncoding('utf8').on('data', (data: string) => (text += data));
    ask(RUN, 40);
    while (reading.reads < MAX_REQUESTS_PER_CONNECTION) await nextTurn();
    await nextTurn();
    // 40 asked for in one packet: a bounded number read (and held) at once, not 40.
    expect(reading.reads).toBe(MAX_REQUESTS_PER_CONNECTION);
    open();
    while ((text.match(/HTTP\/1\.1 404 Not Found/g) ?? []).length < 40) await once(socket, 'data');
    // Every answer whole and in its place: 40 answers, each the run's 404, nothing else between.
    const bodies = text
      .split(/(?=HTTP\/1\.1 )/)
      .map((answer) => answer.slice(answer.lastIndexOf('\r\n\r\n') + 4));
    expect(bodies.map((body) => (JSON.parse(body) as { code: string }).code)).toEqual(
      Array<string>(40).fill('RUN_NOT_FOUND'),
    );
    socket.destroy();
    expect(reading).toMatchObject({ reads: 40, most: MAX_REQUESTS_PER_CONNECTION, now: 0 });
  });

  it('reads the run lists of one connection one at a time: a list waits for its answer to have the connection', async () => {
    const { listing, open, socket } = await countingReads();
    let text = '';
    socket.setEncoding('utf8').on('data', (data: string) => (text += data));
    socket.write('GET /agents/story-writer-agent/runs HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'.repeat(20));
    while (listing.now < 1) await nextTurn();
    for (let turn = 0; turn < 5; turn++) await nextTurn();
    expect(listing.now).toBe(1);
    open();
    while ((text.match(/HTTP\/1\.1 200 OK/g) ?? []).length < 20) await once(socket, 'data');
    socket.destroy();
    expect(listing).toEqual({ now: 0, most: 1 });
  });

  it('drops the requests still waiting when their connection closes: nobody would read their answers', async () => {
    const { reading, open, socket, ask, serverClosed } = await countingReads();
    ask(RUN, 40);
    while (reading.reads < MAX_REQUESTS_PER_CONNECTION) await nextTurn();
    socket.destroy();
    await serverClosed();
    open();
    while (reading.now > 0) await nextTurn();
    for (let turn = 0; turn < 5; turn++) await nextTurn();
    expect(reading.reads).toBe(MAX_REQUESTS_PER_CONNECTION);
  });
});

describe('a client that disconnects from a streamed run', () => {
  it('cancels the run (reason client_disconnect) by default', async () => {
    const { story, model, agents } = await serveFake();
    const client = new AbortController();
    const events = readSse(await postRun(story, { message: 'Hi' }, { signal: client.signal }));
    const { run_id } = (await events.next())!.data;
    const call = await model.nextCall();
    client.abort();
    const output = await agents[0]!.orchestrator.result(run_id);
    expect(output).toMatchObject({ status: 'cancelled', cancel_reason: 'client_disconnect' });
    await call.aborted;
  });

  it('cancels each run of a pipelined connection (requests sent before the first answer), and leaves nothing open', async () => {
    const { url, story, model, agents, runstate } = await serveFake();
    const socket = await pipelinedRuns(url, story, ['first', 'second']);
    const calls = [await model.nextCall(), await model.nextCall()];
    await once(socket, 'data');
    socket.destroy();
    for (const call of calls) await call.aborted;
    const runs = await agents[0]!.orchestrator.listRuns();
    expect(runs.map((run) => [run.run_input, run.status, run.cancel_reason]).sort()).toEqual([
      ['first', 'cancelled', 'client_disconnect'],
      ['second', 'cancelled', 'client_disconnect'],
    ]);
    // No response is left open: a shutdown does not wait its grace for the queued one.
    const started = performance.now();
    await runstate.shutdown();
    expect(performance.now() - started).toBeLessThan(5_000);
  });

  it('cancels a pipelined run that got the connection before its client went away, and leaves nothing open', async () => {
    const { url, story, model, agents, runstate } = await serveFake();
    const socket = await pipelinedRuns(url, story, ['first', 'second']);
    let received = '';
    socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
    const [first, second] = [await model.nextCall(), await model.nextCall()];
    // The first ends: the second's response now holds the connection, and streams.
    first.end();
    second.emit('Once');
    while (!received.includes('"content":"Once"')) await once(socket, 'data');
    socket.destroy();
    await second.aborted;
    const runs = await agents[0]!.orchestrator.listRuns();
    expect(runs.map((run) => [run.run_input, run.status]).sort()).toEqual([
      ['first', 'completed'],
      ['second', 'cancelled'],
    ]);
    // Its response closed: a shutdown does not wait its grace for it.
    const started = performance.now();
    await runstate.shutdown();
    expect(performance.now() - started).toBeLessThan(5_000);
  });

  it('leaves the run going with on_disconnect=continue; it can be followed again later', async () => {
    const { story, model, agents } = await serveFake();
    const client = new AbortController();
    const response = await postRun(
      story,
      { message: 'Hi', on_disconnect: 'continue' },
      { signal: client.signal },
    );
    const events = readSse(response);
    const { run_id } = (await events.next())!.data;
    const call = await model.nextCall();
    call.emit('Still ');
    expect((await events.next())?.data).toMatchObject({ content: 'Still ' });
    client.abort();
    // The server notices the disconnect on its own schedule; the run must not care either way.
    call.emit('here.');
    call.end();
    expect(await agents[0]!.orchestrator.result(run_id)).toMatchObject({
      status: 'completed',
      content: 'Still here.',
    });
    expect(call.signal.aborted).toBe(true); // aborted only because the run is over (a no-op)
    const replay = await readSse(await fetch(`${story}/runs/${run_id}/events?after=2`)).rest();
    expect(replay.map((frame) => frame.data.seq)).toEqual([3, 4]);
  });
});

describe('a client that leaves before a non-streamed answer', () => {
  it('cancels the run (reason client_disconnect) by default', async () => {
    const { story, model, agents } = await serveFake();
    const client = new AbortController();
    const answer = postRun(story, { message: 'Hi', stream: false }, { signal: client.signal });
    const call = await model.nextCall();
    const [run] = await agents[0]!.orchestrator.listRuns();
    client.abort();
    await expect(answer).rejects.toThrow();
    expect(await agents[0]!.orchestrator.result(run!.run_id)).toMatchObject({
      status: 'cancelled',
      cancel_reason: 'client_disconnect',
    });
    await call.aborted;
  });

  it('cancels a continued run (reason client_disconnect), as it does a run', async () => {
    const { model, agent, agentUrl } = await serveConfirmingAgent();
    const pausing = postRun(agentUrl, { message: 'publish it', stream: false });
    (await model.nextCall()).callTools([{ id: 'call_pub', name: 'publish' }]);
    const paused = (await (await pausing).json()) as PausedRunOutput;
    expect(paused.status).toBe('paused');

    const client = new AbortController();
    const continued = fetch(`${agentUrl}/runs/${paused.run_id}/continue`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ tools: [{ tool_call_id: 'call_pub', confirmed: true }], stream: false }),
      signal: client.signal,
    });
    // The tool ran and the model is asked again: the continued run is under way.
    const call = await model.nextCall();
    client.abort();
    await expect(continued).rejects.toThrow();
    expect(await agent.orchestrator.result(paused.run_id)).toMatchObject({
      status: 'cancelled',
      cancel_reason: 'client_disconnect',
    });
    await call.aborted;
  });
});

describe('resuming the events of a run', () => {
  it("from a paused run's RunPaused waits for the continue, then streams from RunContinued", async () => {
    const { model, agentUrl } = await serveConfirmingAgent();
    const pausing = postRun(agentUrl, { message: 'publish it', stream: false });
    (await model.nextCall()).callTools([{ id: 'call_pub', name: 'publish' }]);
    const paused = (await (await pausing).json()) as PausedRunOutput;
    const before = await readSse(await fetch(`${agentUrl}/runs/${paused.run_id}/events`)).rest();
    expect(before.at(-1)?.event).toBe('RunPaused');
    const pausedSeq = before.at(-1)!.data.seq;

    // What a browser's EventSource sends when it reconnects after the stream ended at RunPaused.
    const resumed = readSse(
      await fetch(`${agentUrl}/runs/${paused.run_id}/events`, {
        headers: { 'Last-Event-ID': String(pausedSeq) },
      }),
    );
    const first = resumed.next();
    const continued = fetch(`${agentUrl}/runs/${paused.run_id}/continue`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ tools: [{ tool_call_id: 'call_pub', confirmed: true }], stream: false }),
    });
    const turn = await model.nextCall();
    turn.emit('Published.');
    turn.end();
    expect((await continued).status).toBe(200);
    const frames = [(await first)!, ...(await resumed.rest())];
    expect(frames[0]).toMatchObject({ event: 'RunContinued', data: { seq: pausedSeq + 1 } });
    checkRunEvents([...before.map((frame) => frame.data), ...frames.map((frame) => frame.data)], 'completed');
  });

  async function runWithFiveEvents() {
    const server = await serveFake();
    const response = await postRun(server.story, { message: 'Hi', background: true });
    const { run_id } = (await response.json()) as { run_id: string };
    const call = await server.model.nextCall();
    return { ...server, run_id, call };
  }

  it('from Last-Event-ID yields exactly the missing frames, then follows', async () => {
    const { story, run_id, call } = await runWithFiveEvents();
    // Two deliveries, so two RunContent frames: deltas of one turn would arrive as one.
    call.emit('a');
    await nextTurn();
    call.emit('b');
    await nextTurn();
    const first = readSse(await fetch(`${story}/runs/${run_id}/events`));
    const seen = [(await first.next())!, (await first.next())!];
    expect(seen.map((frame) => frame.id)).toEqual(['1', '2']);

    const resumed = readSse(
      await fetch(`${story}/runs/${run_id}/events?after=0`, { headers: { 'Last-Event-ID': seen[1]!.id! } }),
    );
    expect((await resumed.next())?.data).toMatchObject({ seq: 3, content: 'b' });
    call.emit('c');
    call.end();
    const rest = await resumed.rest();
    expect(rest.map((frame) => frame.data.seq)).toEqual([4, 5]);
    const all = [...seen, { data: { seq: 3 } }, ...rest].map((frame) => frame.data.seq);
    expect(all).toEqual([1, 2, 3, 4, 5]);
  });

  it('from ?after=seq, and with 204 when after is the last seq of a finished run (EventSource stops reconnecting)', async () => {
    const { story, run_id, call, agents } = await runWithFiveEvents();
    call.emit('a');
    call.end();
    await agents[0]!.orchestrator.result(run_id);
    const after1 = await readSse(await fetch(`${story}/runs/${run_id}/events?after=1`)).rest();
    expect(after1.map((frame) => frame.event)).toEqual(['RunContent', 'RunCompleted']);
    const atEnd = [
      await fetch(`${story}/runs/${run_id}/events?after=3`),
      await fetch(`${story}/runs/${run_id}/events`, { headers: { 'Last-Event-ID': '3' } }),
    ];
    for (const response of atEnd) {
      expect(response.status).toBe(204);
      expect(await response.text()).toBe('');
    }
  });

  it('lets go of the event bus once a finished run is read, from its last event but one too (its terminal only)', async () => {
    // The bus subscriptions open: a reader of a run from the store holds one until it is let go.
    const bus = createMemoryEventBus();
    let open = 0;
    let opened = 0;
    const counted: EventBus = {
      ...bus,
      async subscribe(runId, listener) {
        const unsubscribe = await bus.subscribe(runId, listener);
        open += 1;
        opened += 1;
        let done = false;
        return () => {
          if (!done) open -= 1;
          done = true;
          unsubscribe();
        };
      },
    };
    const server = await serveFake({ orchestrator: { eventBus: counted } });
    const { run_id } = (await (await postRun(server.story, { message: 'Hi', background: true })).json()) as {
      run_id: string;
    };
    const call = await server.model.nextCall();
    call.emit('a');
    call.end();
    await server.agents[0]!.orchestrator.result(run_id);
    const last = 3; // RunStarted, RunContent, RunCompleted
    for (const after of [0, 1, last - 1]) {
      const byHeader = {
        url: `${server.story}/runs/${run_id}/events`,
        headers: { 'Last-Event-ID': String(after) },
      };
      const byQuery = { url: `${server.story}/runs/${run_id}/events?after=${after}`, headers: {} };
      for (const { url, headers } of [byHeader, byQuery]) {
        const frames = await readSse(await fetch(url, { headers })).rest();
        expect(frames.at(-1)?.event).toBe('RunCompleted');
        expect(frames).toHaveLength(last - after);
        // Let go once the stream ended: in the turn its end was written, or the next.
        await nextTurn();
        expect(open, `after ${after}`).toBe(0);
      }
    }
    // Each read of the finished run followed the store, and so the bus.
    expect(opened).toBe(6);
  });

  it('refuses a Last-Event-ID or after past the last event (422): the reader would skip what comes', async () => {
    const { story, run_id } = await runWithFiveEvents();
    const ahead = await fetch(`${story}/runs/${run_id}/events`, { headers: { 'Last-Event-ID': '3' } });
    expect(ahead.status).toBe(422);
    expect(await ahead.json()).toMatchObject({ code: 'INVALID_INPUT', field: 'last-event-id' });
    const aheadQuery = await fetch(`${story}/runs/${run_id}/events?after=2`);
    expect(await aheadQuery.json()).toMatchObject({ code: 'INVALID_INPUT', field: 'after' });
    expect((await fetch(`${story}/runs/${run_id}/events?after=1`)).status).toBe(200);
  });

  it('refuses a Last-Event-ID or after that is not a whole number (422)', async () => {
    const { story, run_id } = await runWithFiveEvents();
    const badHeader = await fetch(`${story}/runs/${run_id}/events`, { headers: { 'Last-Event-ID': 'x' } });
    expect(badHeader.status).toBe(422);
    expect(await badHeader.json()).toMatchObject({ code: 'INVALID_INPUT', field: 'last-event-id' });
    const badQuery = await fetch(`${story}/runs/${run_id}/events?after=-1`);
    expect(await badQuery.json()).toMatchObject({ code: 'INVALID_INPUT', field: 'after' });
    // Past the largest safe integer, which Number() rounds (or makes Infinity): refused as such.
    for (const after of ['9007199254740993', '9'.repeat(400)]) {
      const huge = await fetch(`${story}/runs/${run_id}/events?after=${after}`);
      expect(await huge.json()).toMatchObject({
        code: 'INVALID_INPUT',
        field: 'after',
        detail: 'after: must be at most 9007199254740991',
      });
    }
  });

  it('answers a HEAD with the headers only, at once: the connection serves the next request while the run streams', async () => {
    const { url, run_id, call, agents } = await runWithFiveEvents();
    // Two requests pipelined on one connection: the second is answered once the first has ended.
    const socket = connect(Number(new URL(url).port), '127.0.0.1');
    let text = '';
    const bothAnswered = new Promise<void>((resolve) =>
      socket.setEncoding('utf8').on('data', (data: string) => {
        text += data;
        if (/\{"status":"ok","instantiated_at":"[^"]+"\}$/.test(text)) resolve();
      }),
    );
    socket.write(
      `HEAD /agents/story-writer-agent/runs/${run_id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n` +
        'GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n',
    );
    await bothAnswered;
    socket.destroy();
    const [head, health] = text.split(/(?=HTTP\/1\.1 )/);
    expect(head).toMatch(/^HTTP\/1\.1 200 OK\r\n[^]*Content-Type: text\/event-stream\r\n[^]*\r\n\r\n$/);
    expect(health).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect((await agents[0]!.orchestrator.getRun(run_id))?.status).toBe('streaming');
    call.end();
    expect(await agents[0]!.orchestrator.result(run_id)).toMatchObject({ status: 'completed' });
  });

  it('does not cancel the run when a reader of the events endpoint goes away', async () => {
    const { story, run_id, call, agents } = await runWithFiveEvents();
    const reader = new AbortController();
    const events = readSse(await fetch(`${story}/runs/${run_id}/events`, { signal: reader.signal }));
    await events.next();
    reader.abort();
    call.emit('fine');
    call.end();
    expect(await agents[0]!.orchestrator.result(run_id)).toMatchObject({ status: 'completed' });
  });
});

describe('sendEventStream', () => {
  const metrics = {
    input_tokens: 0,
    output_tokens: 0,
    total_tokens: 0,
    time_to_first_token: null,
    duration: 0,
  };
  function event(seq: number, last = false): RunEvent {
    const base = { run_id: 'r', agent_id: 'a', agent_name: 'A', session_id: 's', created_at: 0, seq };
    return last
      ? {
          ...base,
          event: 'RunCompleted',
          content: 'x',
          reasoning_content: '',
          finish_reason: 'stop',
          status: 'completed',
          tools: [],
          metrics,
        }
      : { ...base, event: 'RunContent', content: 'x'.repeat(100) };
  }

  /** A response whose socket takes one write at a time, finishing it on the next turn of the event loop. */
  function slowResponse(log: string[]): ServerResponse {
    const socket = new Writable({
      highWaterMark: 1,
      write(chunk: Buffer, _encoding, callback) {
        log.push(`write ${chunk.toString().split('\n')[0]}`);
        setImmediate(callback);
      },
    });
    socket.on('drain', () => log.push('drain'));
    return Object.assign(socket, {
      writeHead: () => socket,
      flushHeaders: () => undefined,
    }) as unknown as ServerResponse;
  }

  it('waits for drain before the next write when the socket buffer is full, and ends after the terminal event', async () => {
    const log: string[] = [];
    const res = slowResponse(log);
    const events: AsyncIterable<RunEvent> = {
      [Symbol.asyncIterator]() {
        let seq = 0;
        return {
          next: () => {
            seq++;
            log.push(`next ${seq}`);
            return Promise.resolve({ done: false, value: event(seq, seq === 3) });
          },
        };
      },
    };
    expect(await sendEventStream(res, events, { heartbeatMs: 60_000 })).toBe('completed');
    // Without waiting for drain, `next 2` would come straight after the first write.
    expect(log).toEqual([
      'next 1',
      'write id: 1',
      'drain',
      'next 2',
      'write id: 2',
      'drain',
      'next 3',
      'write id: 3',
    ]);
    expect(res.writableEnded).toBe(true);
  });

  it('lets the events go once the stream ends after the terminal event (a reader of the store unsubscribes)', async () => {
    const res = slowResponse([]);
    let released = 0;
    async function* events(): AsyncGenerator<RunEvent> {
      try {
        yield await Promise.resolve(event(1));
        yield event(2, true);
        yield event(3); // never read
      } finally {
        released++;
      }
    }
    expect(await sendEventStream(res, events(), { heartbeatMs: 60_000 })).toBe('completed');
    expect(res.writableEnded).toBe(true);
    expect(released).toBe(1);
  });

  it('writes the events of a run held here in the call that appends them, and waits for drain when the socket is full', async () => {
    const log: string[] = [];
    const res = slowResponse(log);
    const runLog = new MemoryEventLog();
    const sent = sendEventStream(res, runLog.follow(), { heartbeatMs: 60_000 });
    for (let seq = 1; seq <= 3; seq++) {
      runLog.append(event(seq, seq === 3));
      log.push(`appended ${seq}`);
    }
    runLog.close();

    expect(await sent).toBe('completed');
    // The first frame went out inside its append; the socket was full after it, so the next two
    // waited for drain, one at a time.
    expect(log).toEqual([
      'write id: 1',
      'appended 1',
      'appended 2',
      'appended 3',
      'drain',
      'write id: 2',
      'drain',
      'write id: 3',
    ]);
    expect(res.writableEnded).toBe(true);
  });

  it('stops listening to a run held here when its client goes away, and says so', async () => {
    const log: string[] = [];
    const res = slowResponse(log);
    const runLog = new MemoryEventLog();
    let gone = 0;
    const sent = sendEventStream(res, runLog.follow(), { heartbeatMs: 60_000, onClientGone: () => gone++ });
    runLog.append(event(1));
    res.destroy();

    expect(await sent).toBe('client_gone');
    runLog.append(event(2));
    expect(gone).toBe(1);
    expect(log).toEqual(['write id: 1']);
  });

  it('keeps a write that throws away from the run: the append goes on, the stream fails with the error', async () => {
    const log: string[] = [];
    const res = slowResponse(log);
    const broken = new Error('the socket write threw');
    res.write = () => {
      throw broken;
    };
    const runLog = new MemoryEventLog();
    const sent = sendEventStream(res, runLog.follow(), { heartbeatMs: 60_000 });

    expect(() => runLog.append(event(1))).not.toThrow();
    runLog.append(event(2));

    await expect(sent).rejects.toBe(broken);
    expect(runLog.size).toBe(2);
  });

  it('cuts the response when the events fail, rather than end it as if the run were over', async () => {
    const res = slowResponse([]);
    const failure = new Error('the store is out of reach for good');
    async function* failing() {
      yield event(1);
      await Promise.resolve();
      throw failure;
    }

    await expect(sendEventStream(res, failing(), { heartbeatMs: 60_000 })).rejects.toBe(failure);
    expect(res.destroyed).toBe(true);
    expect(res.writableEnded).toBe(false);
  });

  it('serialises an event once, whatever the number of subscribers', () => {
    const shared = event(1);
    expect(sseFrame(shared)).toBe(sseFrame(shared));
    expect(sseFrame(shared).toString()).toBe(`id: 1\nevent: RunContent\ndata: ${JSON.stringify(shared)}\n\n`);
  });
});
