import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/** The responses of a connection that are not over yet. */
const unfinished = new WeakMap<Socket, Set<ServerResponse>>();

/**
 * Makes `res` emit `close` when its connection drops before the response is over, as Node does for
 * the response that holds the connection. Node 20 does not for one queued behind it (HTTP/1.1
 * pipelining: a second request sent before the first was answered): that response never closes,
 * so the run it streams would not be cancelled when its client goes away, and a shutdown would
 * wait its whole grace for it.
 */
export function closeWithConnection(req: IncomingMessage, res: ServerResponse): void {
  const socket = req.socket as Socket | null;
  if (!socket) return;
  let responses = unfinished.get(socket);
  if (!responses) {
    const mine = new Set<ServerResponse>();
    responses = mine;
    unfinished.set(socket, mine);
    // Only the responses still waiting for the socket: one that holds it is closed by Node (whose
    // listener may come after this one, registered when the socket was handed to it).
    socket.once('close', () => {
      for (const queued of [...mine]) {
        if (queued.socket) continue;
        queued.destroy();
        queued.emit('close');
      }
      mine.clear();
    });
  }
  const set = responses;
  set.add(res);
  res.once('close', () => set.delete(res));
}
