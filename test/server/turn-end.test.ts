/**
 * The end of a turn of the event loop, where the run route starts the runs whose requests the turn
 * read (src/server/turn-end.ts).
 */
import { once } from 'node:events';
import { createConnection, createServer, type AddressInfo, type Socket } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { atTurnEnd } from '../../src/server/turn-end.js';

afterEach(() => {
  vi.useRealTimers();
});

describe('atTurnEnd', () => {
  it('is one moment for every caller of a turn, who go on in the order they called', async () => {
    const order: string[] = [];
    const waits = ['first', 'second', 'third'].map((name) => {
      const wait = atTurnEnd();
      return wait.then(() => order.push(name));
    });
    expect(atTurnEnd()).toBe(atTurnEnd());
    await Promise.all(waits);
    expect(order).toEqual(['first', 'second', 'third']);
  });

  it('comes before the immediates queued after it, and a call after it waits for the next turn’s end', async () => {
    const order: string[] = [];
    const before = atTurnEnd();
    // An immediate queued after the first call runs after it: both are the same check phase.
    setImmediate(() => order.push('immediate queued after'));
    await before.then(() => order.push('turn end'));
    const next = atTurnEnd();
    expect(next).not.toBe(before);
    await next.then(() => order.push('next turn end'));
    expect(order).toEqual(['turn end', 'immediate queued after', 'next turn end']);
  });

  it('comes after every socket read of its turn, as the run route needs: the requests a turn read start together', async () => {
    const order: string[] = [];
    let turnEnded!: () => void;
    const ended = new Promise<void>((resolve) => (turnEnded = resolve));
    let accepted!: () => void;
    const bothAccepted = new Promise<void>((resolve) => (accepted = resolve));
    const sockets: Socket[] = [];
    const server = createServer((socket) => {
      sockets.push(socket);
      if (sockets.length === 2) accepted();
      socket.once('data', (data) => {
        order.push(`read ${data.toString()}`);
        // The first read of the turn asks for its end; the other socket's read still comes first.
        if (order.length === 1)
          void atTurnEnd()
            .then(() => order.push('turn end'))
            .then(turnEnded);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const clients = [createConnection(port, '127.0.0.1'), createConnection(port, '127.0.0.1')];
    // Connected at both ends, so that each write goes out as it is made.
    await Promise.all([bothAccepted, ...clients.map((client) => once(client, 'connect'))]);
    // Both written in this turn: on 127.0.0.1 both are in the server's sockets before its next poll.
    clients[0]!.write('a');
    clients[1]!.write('b');
    await ended;
    expect(order.slice(0, 2).sort()).toEqual(['read a', 'read b']);
    expect(order[2]).toBe('turn end');
    for (const client of clients) client.destroy();
    await new Promise((resolve) => server.close(resolve));
  });

  it('comes with every timer faked (a test’s fake timers never hold a run back)', async () => {
    vi.useFakeTimers({
      toFake: ['setImmediate', 'clearImmediate', 'setTimeout', 'clearTimeout', 'queueMicrotask'],
    });
    let ended = false;
    await atTurnEnd().then(() => {
      ended = true;
    });
    expect(ended).toBe(true);
  });
});
