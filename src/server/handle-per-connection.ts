import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/**
 * At most this many requests of one connection are handled at once; the next ones start as earlier
 * ones are answered. Node's HTTP server calls the app for every request a client pipelines in one
 * packet (HTTP/1.1 pipelining), all at once, their answers queued behind the first: 500 run lists
 * asked for in one write would otherwise each be read and held in memory together. A client that
 * waits for its answers (every browser, `fetch`) never has more than one.
 */
export const MAX_REQUESTS_PER_CONNECTION = 8;

/** What runstate's app knows of a connection: its responses not over yet, and the requests waiting. */
interface Connection {
  readonly responses: Set<ServerResponse>;
  /** Requests handed to the app whose responses are not over yet. */
  handling: number;
  /** Requests past the limit, in the order they came: each starts its handling. */
  readonly waiting: Array<() => void>;
}

const connections = new WeakMap<Socket, Connection>();

/**
 * Middleware that hands a request to the app once fewer than {@link MAX_REQUESTS_PER_CONNECTION}
 * requests of its connection are being handled (a request whose connection closed while it waited
 * is dropped: nobody reads its answer), and makes `res` emit `close` when its connection drops
 * before the response is over, as Node does for the response that holds the connection. Node 20
 * does not for one queued behind it (pipelining): that response would never close, so the run it
 * streams would not be cancelled when its client goes away, and a shutdown would wait its whole
 * grace for it.
 */
export function handlePerConnection(req: IncomingMessage, res: ServerResponse, next: () => void): void {
  const socket = req.socket as Socket | null;
  if (!socket) return next();
  let connection = connections.get(socket);
  if (!connection) {
    const mine: Connection = { responses: new Set(), handling: 0, waiting: [] };
    connection = mine;
    connections.set(socket, mine);
    // Only the responses still waiting for the socket: one that holds it is closed by Node (whose
    // listener may come after this one, registered when the socket was handed to it).
    socket.once('close', () => {
      for (const queued of [...mine.responses]) {
        if (queued.socket) continue;
        queued.destroy();
        queued.emit('close');
      }
      mine.responses.clear();
    });
  }
  const current = connection;
  let handled = false;
  const handle = () => {
    // The client went away while it waited (Node aborts the requests it had read ahead).
    if (socket.destroyed || req.destroyed) return;
    handled = true;
    current.handling++;
    next();
  };
  current.responses.add(res);
  res.once('close', () => {
    current.responses.delete(res);
    if (!handled) return;
    current.handling--;
    while (current.handling < MAX_REQUESTS_PER_CONNECTION && current.waiting.length > 0)
      current.waiting.shift()!();
  });
  if (current.handling < MAX_REQUESTS_PER_CONNECTION) handle();
  else current.waiting.push(handle);
}
