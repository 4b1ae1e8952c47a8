import { once } from 'node:events';
import { createServer, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** A node:http server on 127.0.0.1 and an ephemeral port. */
export interface Listening {
  server: Server;
  /** `http://127.0.0.1:<port>`, without a trailing slash. */
  url: string;
  /** Ends open connections and closes the server. */
  close(): Promise<void>;
}

/**
 * Serves `handler` (a node:http handler, an express app) on 127.0.0.1. Free of Vitest, so that
 * scripts can use it too: the caller closes it.
 */
export async function listen(handler?: RequestListener): Promise<Listening> {
  const server = createServer(handler);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    server,
    url: `http://127.0.0.1:${port}`,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
