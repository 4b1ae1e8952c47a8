import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { z } from 'zod';
import { clampDelay } from '../../machines/run.machine.js';
import { checkOption, checkOptionNames, duration } from '../runtime/run-limits.js';
import type { RunstateApp } from './create-app.js';
import { answerClientError, answerConnect, answerExpectation } from './http-errors.js';

/** Options of {@link startServer}. */
export interface StartServerOptions {
  /** Default 7777, AgentOS's port; 0 picks a free one. */
  port?: number | undefined;
  /** Default `127.0.0.1`: reachable from this machine only. */
  host?: string | undefined;
  /**
   * How long `close()` waits for open responses to end (clients that stopped reading hold their
   * stream back) before it drops their connections. Default 10 s.
   */
  graceMs?: number | undefined;
  /**
   * Connections the kernel queues for the server while it is busy (Linux caps it at
   * `net.core.somaxconn`, 4096 by default). Default 4096: Node's own 511 overflows when hundreds
   * of clients connect at once, and a connection dropped from a full queue is retried by the
   * client's kernel only after 1, 3, 7, 15 s (or fails its connect timeout).
   */
  backlog?: number | undefined;
}

const wholeNumber = (min: number, max: number) =>
  z
    .number({ error: `must be a whole number from ${min} to ${max}` })
    .int(`must be a whole number from ${min} to ${max}`)
    .min(min, `must be a whole number from ${min} to ${max}`)
    .max(max, `must be a whole number from ${min} to ${max}`);

/**
 * What {@link startServer} takes: a port that is not a number would make Node listen on a Unix
 * socket of that name, and a negative grace would drop every connection at once.
 */
const startServerOptionsSchema = z.object({
  // A port in digits is a port, as Node takes it (`port: process.env.PORT`).
  port: z
    .preprocess(
      (port) => (typeof port === 'string' && /^\d+$/.test(port) ? Number(port) : port),
      wholeNumber(0, 65535),
    )
    .optional(),
  host: z.string({ error: 'must be a host name or an address' }).min(1, 'must not be empty').optional(),
  graceMs: duration.optional(),
  backlog: wholeNumber(1, 2 ** 31 - 1).optional(),
});

/** A listening runstate server. */
export interface RunningServer {
  readonly server: Server;
  /** `http://host:port`, with the port actually bound. */
  readonly url: string;
  readonly port: number;
  /**
   * Graceful shutdown: stops accepting connections, cancels active runs with reason `shutdown`
   * (their streams send `RunCancelled` and end), waits for responses in progress, closes. Idempotent.
   */
  close(): Promise<void>;
}

/**
 * Listens with a runstate app and gives it a graceful `close()`. A request Node's HTTP parser refuses
 * is answered in JSON too ({@link answerClientError}), and so is a `CONNECT` ({@link answerConnect}).
 *
 * @example
 * ```ts
 * const server = await startServer(createApp({ agents }), { port: 0 });
 * console.log(server.url);
 * process.once('SIGTERM', () => void server.close().then(() => process.exit(0)));
 * ```
 */
export async function startServer(
  runstate: RunstateApp,
  options: StartServerOptions = {},
): Promise<RunningServer> {
  // A misspelt option (`prot`) would listen on the default port without a word.
  checkOptionNames(options, ['port', 'host', 'graceMs', 'backlog'], 'startServer');
  const {
    port = 7777,
    host = '127.0.0.1',
    graceMs: givenGraceMs = 10_000,
    backlog = 4096,
  } = checkOption(startServerOptionsSchema, options, 'options');
  // `Infinity`: wait for ever (as long as a timer holds).
  const graceMs = clampDelay(givenGraceMs);
  // With the app's message classes, express has no prototype to change per request (see `serverOptions`).
  // Node's own refusal of a request without `Host` has no body: the app answers it (`requireHost`).
  const server = createServer({ ...runstate.serverOptions, requireHostHeader: false }, runstate.app).listen(
    port,
    host,
    backlog,
  );
  await new Promise<void>((resolve, reject) => {
    const onError = (error: Error) => reject(error);
    server.once('error', onError);
    server.once('listening', () => {
      server.off('error', onError);
      resolve();
    });
  });
  // A request Node's parser refuses, or a proxy's CONNECT, gets a JSON answer too, where Node would
  // answer with no body or close the connection.
  server.on('clientError', answerClientError);
  // `100 Continue` only to a body the app would read (see `checkContinue`).
  server.on('checkContinue', runstate.checkContinue);
  server.on('connect', answerConnect);
  server.on('checkExpectation', answerExpectation);
  const bound = (server.address() as AddressInfo).port;
  const sockets = new Set<Socket>();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  let closing: Promise<void> | undefined;

  async function close(): Promise<void> {
    // No new connection from now on. Node's `close()` would also destroy at once every connection
    // with no request in progress (its `closeIdleConnections`): a request a client sends on one now
    // would meet a reset, where the app answers it 503 `SHUTTING_DOWN` with `Retry-After` (a client
    // cannot tell from a reset whether its run was taken). They are ended below, once the app is.
    server.closeIdleConnections = () => undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    // (The prototype's again.)
    delete (server as { closeIdleConnections?: unknown }).closeIdleConnections;
    // Clients that stopped reading would hold the shutdown forever: past the grace period, drop them.
    const grace = setTimeout(() => server.closeAllConnections(), graceMs);
    try {
      await runstate.shutdown();
      // Every response is over. The connections left are idle, or were opened ahead of use (fetch
      // does that) and which Node never counts as idle: end them all, after what they still have
      // to write, rather than destroy them.
      for (const socket of sockets) socket.end();
      await closed;
    } finally {
      clearTimeout(grace);
    }
  }

  return {
    server,
    url: `http://${host.includes(':') ? `[${host}]` : host}:${bound}`,
    port: bound,
    close: () => (closing ??= close()),
  };
}
