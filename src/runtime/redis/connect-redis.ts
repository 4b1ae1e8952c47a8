import { createClient } from 'redis';
import { RunstateError } from '../../errors.js';
import { describeUrl } from '../sql/open-sql-database.js';

/**
 * How long Redis may leave a connection unanswered. A network path gone silent (packets dropped,
 * nothing refused) would otherwise hold every command, a SUBSCRIBE and the start itself for as long
 * as the silence lasts: TCP has no limit of its own on a connection that waits to read.
 */
const SILENCE_MS = 5_000;

function newClient(url: string, reconnect: () => boolean) {
  return createClient({
    url,
    disableOfflineQueue: true,
    // A PING each second keeps a healthy idle connection (a subscriber's) from looking silent; one
    // left unanswered sends no next one, so a silent path is idle and its socket times out.
    pingInterval: 1_000,
    // Each command too: a connection that keeps writing (a cancel sent again each second) never idles.
    commandOptions: { timeout: SILENCE_MS },
    socket: {
      connectTimeout: SILENCE_MS,
      // Closed, as a lost connection is: its commands fail, and node-redis reconnects.
      socketTimeout: SILENCE_MS,
      reconnectStrategy: (retries, cause) => (reconnect() ? Math.min(50 * 2 ** retries, 2_000) : cause),
    },
  });
}

/** A connected node-redis client. */
export type RedisConnection = ReturnType<typeof newClient>;

/**
 * Connects to Redis. A server that cannot be reached at start (or does not answer within 5 s) rejects with
 * `STORE_UNAVAILABLE` and a message naming its host and port (never its password); once connected,
 * a lost connection is retried forever in the background (node-redis re-subscribes its channels),
 * and commands sent meanwhile fail at once instead of queueing without bound.
 */
export async function connectRedis(url: string): Promise<RedisConnection> {
  let connected = false;
  // Before the first connection, a failure is final (the start fails); after it, a failure is an
  // outage, retried with a backoff of at most 2 s.
  let client: RedisConnection;
  try {
    client = newClient(url, () => connected);
  } catch (error) {
    // A URL node-redis refuses (its scheme, its database number): a setting to fix, not an outage.
    throw new RunstateError('INVALID_INPUT', `bad Redis URL ${describeUrl(url)}: ${messageOf(error)}`, {
      cause: error,
    });
  }
  // Unhandled, an 'error' event would crash the process; the reconnect strategy deals with it.
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (error) {
    client.destroy();
    throw new RunstateError(
      'STORE_UNAVAILABLE',
      `cannot reach Redis at ${describeUrl(url)}: ${messageOf(error)}`,
      {
        cause: error,
      },
    );
  }
  connected = true;
  return client;
}

function messageOf(error: unknown): string {
  const { code, message } = error as { code?: string; message?: string };
  if (code && /^E[A-Z]+$/.test(code)) return code;
  return (message ?? String(error)).split('\n')[0]!;
}
