/**
 * Redis behind a network path that goes silent (every packet dropped, nothing refused or closed):
 * node-redis would wait for an answer as long as the silence lasts. Unanswered for 5 s, a
 * connection is closed as a lost one is: the start fails in one line, a publish and a subscribe
 * reject STORE_UNAVAILABLE, an unsubscribe (what a shutdown awaits) ends, and once the path is back
 * the buses work again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectRedis } from '../../src/runtime/redis/connect-redis.js';
import { createRedisCancelBus, createRedisEventBus } from '../../src/runtime/redis/create-redis-buses.js';
import { eventually } from '../support/eventually.js';
import { redisPrefix, startPrivateRedis, type PrivateRedis } from '../support/redis-server.js';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js';

let redis: PrivateRedis;
let proxy: TcpProxy;
let url: string;
beforeAll(async () => {
  redis = await startPrivateRedis();
  const { hostname, port } = new URL(redis.url);
  proxy = await startTcpProxy(hostname, Number(port));
  url = `redis://127.0.0.1:${proxy.port}`;
});
afterAll(async () => {
  await proxy.close();
  await redis.stop();
});

/**
 * Runs `during` in a silence; then drops the connections that met it (as a path back after a long
 * outage finds them) and forwards again.
 */
async function silenceWhile<T>(during: () => Promise<T>): Promise<T> {
  proxy.silence();
  try {
    return await during();
  } finally {
    await proxy.cut();
    await proxy.restore();
  }
}

const STORE_UNAVAILABLE = { code: 'STORE_UNAVAILABLE' };

describe('Redis behind a silent network path', () => {
  it('fails a start in one line naming the server, instead of waiting for ever', async () => {
    await silenceWhile(async () => {
      const started = performance.now();
      await expect(connectRedis(url)).rejects.toMatchObject({
        code: 'STORE_UNAVAILABLE',
        message: expect.stringMatching(/^cannot reach Redis at 127\.0\.0\.1:\d+: [^\n]+$/) as unknown,
      });
      // 5 s without an answer, and the start gives up (not a minute: a timer, not TCP's retries).
      expect(performance.now() - started).toBeLessThan(15_000);
    });
  });

  it('rejects a publish and a subscribe STORE_UNAVAILABLE, ends an unsubscribe, and works again once the path is back', async () => {
    const prefix = redisPrefix();
    const cancelBus = await createRedisCancelBus({ url, prefix });
    const eventBus = await createRedisEventBus({ url, prefix });
    const heard: string[] = [];
    const leave = await cancelBus.subscribe((runId) => heard.push(runId));
    try {
      await silenceWhile(async () => {
        const [published, followed, left] = await Promise.allSettled([
          cancelBus.publish('r1', 'api'),
          eventBus.subscribe('r1', () => undefined),
          // What a shutdown awaits: it ends (resolves), answered or not.
          leave(),
        ]);
        expect(published).toMatchObject({ status: 'rejected', reason: STORE_UNAVAILABLE });
        expect(followed).toMatchObject({ status: 'rejected', reason: STORE_UNAVAILABLE });
        expect(left).toMatchObject({ status: 'fulfilled' });
      });
      // node-redis reconnects on its own (each connection in its own time): the buses work again.
      let again: (() => Promise<void>) | undefined;
      await eventually(
        async () => {
          again ??= await cancelBus.subscribe((runId) => heard.push(runId)).catch(() => undefined);
          const stop = await eventBus.subscribe('r2', () => undefined).catch(() => undefined);
          stop?.();
          return again !== undefined && stop !== undefined;
        },
        { what: 'subscribes answered again' },
      );
      await eventually(
        () =>
          cancelBus.publish('r3', 'api').then(
            () => true,
            () => false,
          ),
        {
          what: 'a publish answered again',
        },
      );
      await eventually(() => heard.includes('r3'), { what: 'the cancel heard' });
      await again!();
      // (The listener whose UNSUBSCRIBE went unanswered may hear it too: node-redis subscribes its
      // channel again on reconnecting. A cancel bus is left only at shutdown.)
      expect(new Set(heard)).toEqual(new Set(['r3']));
    } finally {
      await cancelBus.close();
      await eventBus.close();
    }
  });
});
