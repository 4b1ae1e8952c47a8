/**
 * Redis for tests: a key prefix of one test on the shared local server, and a private
 * `redis-server` on a free port that a test stops and starts to play an outage.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, connect } from 'node:net';

/** The shared local server. */
export const REDIS_URL = process.env.RUNSTATE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** A key and channel prefix no other test uses. */
export function redisPrefix(): string {
  return `runstate-test:${randomBytes(6).toString('hex')}:`;
}

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

/** Resolves once something accepts connections on the port; rejects after `timeoutMs`. */
async function accepting(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`redis-server on port ${port} did not start`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A private redis-server: `stop()` and `start()` it again on the same port. */
export interface PrivateRedis {
  readonly url: string;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** Starts a redis-server of the test's own, without persistence, on a free port. */
export async function startPrivateRedis(): Promise<PrivateRedis> {
  const port = await freePort();
  let child: ChildProcess | undefined;
  const redis: PrivateRedis = {
    url: `redis://127.0.0.1:${port}`,
    async start() {
      if (child) return;
      child = spawn(
        'redis-server',
        ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
        {
          stdio: 'ignore',
        },
      );
      await accepting(port);
    },
    async stop() {
      const running = child;
      if (!running) return;
      child = undefined;
      const exited = once(running, 'exit');
      running.kill('SIGKILL');
      await exited;
    },
  };
  await redis.start();
  return redis;
}
