/**
 * Lists answered a bounded number at a time: a client that asks for a list and never reads it cannot
 * make the server hold one list per connection (hundreds of megabytes, then out of memory).
 */
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { listAnswers } from '../../src/server/json-array.js';
import { eventually } from '../support/eventually.js';
import { listen, type Listening } from '../support/listen.js';

/** ~20 MB of JSON: more than the kernel's socket buffers of both ends take from a client not reading. */
const bigList = Array.from({ length: 10_000 }, (_, i) => ({ run_id: `run-${i}`, input: 'x'.repeat(2_000) }));

let server: Listening | undefined;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  await server?.close();
  server = undefined;
});

/** A client that asks for the list and reads nothing. */
async function askAndNeverRead(url: string): Promise<Socket> {
  const socket = connect(Number(new URL(url).port), '127.0.0.1');
  sockets.push(socket);
  socket.on('error', () => undefined); // cut off by the server
  await once(socket, 'connect');
  socket.pause();
  socket.write('GET /list HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
  return socket;
}

describe('listAnswers', () => {
  it('loads at most `atOnce` lists at a time, cuts off a client that reads nothing for the stall limit, and skips one whose client left while waiting', async () => {
    const stallMs = 1_000; // long enough for the reading client, whose reads share this event loop
    const answerList = listAnswers(2, stallMs);
    const loads: number[] = [];
    let requests = 0;
    server = await listen((_req, res) => {
      requests += 1;
      void answerList(res, () => {
        loads.push(performance.now());
        return Promise.resolve(bigList);
      });
    });
    const { url } = server;

    await askAndNeverRead(url);
    await askAndNeverRead(url);
    await eventually(() => loads.length === 2, { what: 'two lists loaded' });
    // The third waits for a slot, and its client leaves meanwhile: its list is never loaded.
    const leaving = await askAndNeverRead(url);
    await eventually(() => requests === 3, { what: 'the third request received' });
    leaving.destroy();
    const reading = fetch(`${url}/list`).then((response) => response.json() as Promise<unknown[]>);

    const list = await reading;
    expect(list).toHaveLength(bigList.length);
    expect(list.at(-1)).toEqual(bigList.at(-1));
    // The reading client's list waited for a stalled one to be cut off; the leaving client's was not loaded.
    expect(loads).toHaveLength(3);
    expect(loads[2]! - loads[0]!).toBeGreaterThanOrEqual(stallMs);
  });

  it('writes the whole list behind a slower answer on its connection (pipelined): its stall counts from when it has the socket', async () => {
    const stallMs = 200;
    const answerList = listAnswers(1, stallMs);
    let first = true;
    server = await listen((_req, res) => {
      if (first) {
        first = false;
        // Longer than the stall limit: the list waits behind it with no socket of its own.
        setTimeout(() => res.end('first'), stallMs * 3);
        return;
      }
      void answerList(res, () => Promise.resolve(bigList));
    });
    const socket = connect(Number(new URL(server.url).port), '127.0.0.1');
    sockets.push(socket);
    await once(socket, 'connect');
    // The second in HTTP/1.0: its body is not chunked, but all that follows its head.
    socket.write('GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /list HTTP/1.0\r\n\r\n');
    const chunks: Buffer[] = [];
    for await (const chunk of socket) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    const second = text.indexOf('HTTP/1.1 200', 1);
    expect(text.slice(0, second)).toMatch(/\r\n\r\nfirst$/);
    const body = text.slice(text.indexOf('\r\n\r\n', second) + 4);
    expect(JSON.parse(body)).toHaveLength(bigList.length);
  });

  it('lets go of a pipelined list whose connection closes before its turn: never read, its handler settled', async () => {
    const answerList = listAnswers(1, 20_000);
    let settled = false;
    let loaded = false;
    let listAsked!: () => void;
    const asked = new Promise<void>((resolve) => (listAsked = resolve));
    server = await listen((req, res) => {
      if (req.url === '/slow') return; // never answered: the list waits behind it
      listAsked();
      void answerList(res, () => {
        loaded = true;
        return Promise.resolve(bigList);
      }).then(() => (settled = true));
    });
    const socket = connect(Number(new URL(server.url).port), '127.0.0.1');
    sockets.push(socket);
    await once(socket, 'connect');
    socket.write(
      'GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /list HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n',
    );
    await asked;
    socket.destroy();
    await eventually(() => settled, { what: 'the waiting list let go' });
    expect(loaded).toBe(false);
  });

  it('writes the whole list to a client that reads it', async () => {
    const answerList = listAnswers(1, 500);
    server = await listen((_req, res) => void answerList(res, () => Promise.resolve(bigList)));
    const text = await (await fetch(`${server.url}/list`)).text();
    expect(text).toBe(JSON.stringify(bigList));
  });
});
