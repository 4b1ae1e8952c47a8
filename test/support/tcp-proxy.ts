/**
 * A TCP proxy to a real server (PostgreSQL) that a test cuts and restores: an outage of the network
 * path, with the server itself untouched (it is shared by every test).
 */
import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';

/** A proxy on 127.0.0.1: `cut()` drops every connection and refuses new ones; `restore()` listens again. */
export interface TcpProxy {
  readonly port: number;
  cut(): Promise<void>;
  /**
   * Drops the next connection whose client sends bytes holding `marker` (latin1), before they reach
   * the server: a connection broken in the middle of one given query. Resolves once one was dropped.
   */
  breakOn(marker: string): Promise<void>;
  /**
   * From now on forwards nothing either way and closes nothing, as a network path that drops every
   * packet: the connections stay open and unanswered, new ones are accepted and left unanswered.
   * With `requests: true`, the client's bytes still reach the server and only its answers are lost
   * (a query that commits, its answer never read).
   */
  silence(options?: { requests?: boolean }): void;
  /**
   * From now on keeps what clients send on the connections open now, unforwarded, and drops the
   * server's answers to them: packets the network delays. A client that closes such a connection
   * does not close its server side: what it sent reaches the server first, as TCP sends again what
   * was not acknowledged after a close. {@link deliverHeld} forwards it.
   */
  hold(): void;
  /**
   * Forwards what {@link hold} kept, each to its server side, and closes those a client closed.
   * Resolves once the server answered (or closed) on each: what was held is done.
   */
  deliverHeld(): Promise<void>;
  /**
   * Resolves once a client's bytes holding `marker` (latin1) were forwarded and the server answered
   * on that connection: a given query done.
   */
  answered(marker: string): Promise<void>;
  restore(): Promise<void>;
  close(): Promise<void>;
}

/** Starts a proxy on a free port to `target` (`host:port`). */
export async function startTcpProxy(targetHost: string, targetPort: number): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  let port = 0;
  let breaking: { marker: string; broke: () => void } | undefined;
  // What is dropped: nothing, the server's answers, or both ways.
  let silent: false | 'replies' | 'both' = false;
  /** What `hold()` keeps: for each connection open then, its client's bytes and whether it closed. */
  const held = new Map<Socket, { bytes: Buffer[]; clientClosed: boolean }>();
  const upstreams = new Set<Socket>();
  const awaited = new Set<{ marker: string; answered: () => void }>();

  async function listen(): Promise<void> {
    const listening = createServer((client) => {
      const upstream = connect(targetPort, targetHost);
      upstreams.add(upstream);
      upstream.once('close', () => upstreams.delete(upstream));
      /** What awaits this connection's next answer (see `answered`). */
      const asked: Array<() => void> = [];
      for (const socket of [client, upstream]) {
        sockets.add(socket);
        socket.once('close', () => sockets.delete(socket));
        socket.on('error', () => undefined);
      }
      client.on('data', (bytes: Buffer) => {
        const holding = held.get(upstream);
        if (holding) return void holding.bytes.push(bytes);
        if (silent === 'both') return;
        if (breaking && bytes.toString('latin1').includes(breaking.marker)) {
          breaking.broke();
          breaking = undefined;
          client.destroy();
          return;
        }
        for (const wanted of awaited) {
          if (!bytes.toString('latin1').includes(wanted.marker)) continue;
          awaited.delete(wanted);
          asked.push(wanted.answered);
        }
        if (!upstream.write(bytes)) client.pause();
      });
      upstream.on('drain', () => client.resume());
      upstream.on('data', (bytes: Buffer) => {
        if (silent || held.has(upstream)) return;
        for (const answered of asked.splice(0)) answered();
        if (!client.write(bytes)) upstream.pause();
      });
      client.on('drain', () => upstream.resume());
      client.once('close', () => {
        const holding = held.get(upstream);
        if (holding) holding.clientClosed = true;
        else upstream.destroy();
      });
      upstream.once('close', () => client.destroy());
    });
    listening.listen(port, '127.0.0.1');
    await once(listening, 'listening');
    port = (listening.address() as { port: number }).port;
    server = listening;
  }

  async function cut(): Promise<void> {
    silent = false;
    const running = server;
    server = undefined;
    if (!running) return;
    const closed = once(running, 'close');
    running.close();
    for (const socket of sockets) socket.destroy();
    await closed;
  }

  await listen();
  return {
    get port() {
      return port;
    },
    cut,
    breakOn: (marker) =>
      new Promise((broke) => {
        breaking = { marker, broke };
      }),
    silence: ({ requests = false } = {}) => {
      silent = requests ? 'replies' : 'both';
    },
    hold: () => {
      for (const upstream of upstreams) held.set(upstream, { bytes: [], clientClosed: false });
    },
    deliverHeld: async () => {
      const done: Array<Promise<unknown>> = [];
      for (const [upstream, { bytes, clientClosed }] of held) {
        if (bytes.length === 0) continue;
        done.push(Promise.race([once(upstream, 'data'), once(upstream, 'close')]));
        upstream.write(Buffer.concat(bytes));
        if (clientClosed) upstream.end();
      }
      held.clear();
      await Promise.all(done);
    },
    answered: (marker) =>
      new Promise((answered) => {
        awaited.add({ marker, answered });
      }),
    restore: () => {
      silent = false;
      return server ? Promise.resolve() : listen();
    },
    close: cut,
  };
}
