/**
 * The cancel bus and event bus contracts, against Redis (two bus instances play two runstate
 * instances), and what an outage of Redis does to them.
 */
import { createClient } from 'redis';
import { afterEach, describe, expect, it } from 'vitest';
import type { CancelReason } from '../../machines/run-types.js';
import { createRedisCancelBus, createRedisEventBus } from '../../src/runtime/redis/create-redis-buses.js';
import type { RunEvent } from '../../src/runtime/run-events.js';
import type { CancelBus, EventBus } from '../../src/runtime/storage.js';
import { eventually } from '../support/eventually.js';
import { REDIS_URL, redisPrefix, startPrivateRedis, type PrivateRedis } from '../support/redis-server.js';

const closing: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closing.splice(0).reverse()) await close();
});

interface Buses {
  cancel: CancelBus;
  events: EventBus;
}

/** The buses of one instance; every instance of a test shares its prefix. */
async function instance(prefix: string, url = REDIS_URL): Promise<Buses> {
  const buses = {
    cancel: await createRedisCancelBus({ url, prefix }),
    events: await createRedisEventBus({ url, prefix }),
  };
  closing.push(
    () => buses.cancel.close(),
    () => buses.events.close(),
  );
  return buses;
}

/** Cancels received by a subscriber, and a way to wait for the next one. */
function cancelInbox() {
  const received: [string, CancelReason][] = [];
  let wake: (() => void) | undefined;
  return {
    received,
    listener: (runId: string, reason: CancelReason) => {
      received.push([runId, reason]);
      wake?.();
    },
    /** The `count`th cancel received (1 is the first). */
    async nth(count: number) {
      while (received.length < count) await new Promise<void>((resolve) => (wake = resolve));
      return received[count - 1];
    },
  };
}

function event(runId: string, seq: number): RunEvent {
  return {
    event: 'RunContent',
    run_id: runId,
    agent_id: 'a',
    agent_name: 'A',
    session_id: 's',
    created_at: 1,
    seq,
    content: `${seq}`,
  };
}

function eventInbox() {
  const batches: RunEvent[][] = [];
  let wake: (() => void) | undefined;
  return {
    batches,
    listener: (events: readonly RunEvent[]) => {
      batches.push([...events]);
      wake?.();
    },
    async until(count: number) {
      while (batches.length < count) await new Promise<void>((resolve) => (wake = resolve));
      return batches;
    },
  };
}

describe('Redis buses', () => {
  it('delivers a cancel from any instance to every subscriber, once, until it unsubscribes', async () => {
    const prefix = redisPrefix();
    const [a, b] = [await instance(prefix), await instance(prefix)];
    const onA = cancelInbox();
    const onB = cancelInbox();
    await a.cancel.subscribe(onA.listener);
    const unsubscribeB = await b.cancel.subscribe(onB.listener);

    await b.cancel.publish('run-1', 'api');
    expect(await onA.nth(1)).toStrictEqual(['run-1', 'api']);
    expect(await onB.nth(1)).toStrictEqual(['run-1', 'api']);

    await unsubscribeB();
    await a.cancel.publish('run-2', 'shutdown');
    expect(await onA.nth(2)).toStrictEqual(['run-2', 'shutdown']);
    // Delivery on one channel is ordered: had B still listened, it had run-2 by now.
    await b.cancel.publish('run-3', 'code');
    await onA.nth(3);
    expect(onB.received).toStrictEqual([['run-1', 'api']]);
    expect(onA.received).toHaveLength(3);
  });

  it('keeps cancels of different prefixes apart', async () => {
    const [a, b] = [await instance(redisPrefix()), await instance(redisPrefix())];
    const onA = cancelInbox();
    await a.cancel.subscribe(onA.listener);
    await b.cancel.publish('other', 'api');
    await a.cancel.publish('mine', 'api');
    expect(await onA.nth(1)).toStrictEqual(['mine', 'api']);
    expect(onA.received).toHaveLength(1);
  });

  it("delivers a run's event batches in order to its followers on every instance, and only its own", async () => {
    const prefix = redisPrefix();
    const [owner, other] = [await instance(prefix), await instance(prefix)];
    const local = eventInbox();
    const remote = eventInbox();
    const remote2 = eventInbox();
    const elsewhere = eventInbox();
    await owner.events.subscribe('run-1', local.listener);
    await other.events.subscribe('run-1', remote.listener);
    const stop2 = await other.events.subscribe('run-1', remote2.listener);
    await other.events.subscribe('run-2', elsewhere.listener);

    owner.events.publish('run-1', [event('run-1', 1)]);
    owner.events.publish('run-1', []);
    owner.events.publish('run-1', [event('run-1', 2), event('run-1', 3)]);
    const expected = [[event('run-1', 1)], [event('run-1', 2), event('run-1', 3)]];
    expect(await local.until(2)).toStrictEqual(expected);
    expect(await remote.until(2)).toStrictEqual(expected);
    expect(await remote2.until(2)).toStrictEqual(expected);

    stop2();
    owner.events.publish('run-1', [event('run-1', 4)]);
    owner.events.publish('run-2', [event('run-2', 1)]);
    await remote.until(3);
    expect(await elsewhere.until(1)).toStrictEqual([[event('run-2', 1)]]);
    expect(remote2.batches).toHaveLength(2);
  });

  // node-redis drops a listener added to a channel whose UNSUBSCRIBE is not answered yet: found by
  // the HTTP model-based test, a follower that came back at once to a run waited for its quiet recheck.
  it('delivers to a subscriber that comes as the last one leaves', async () => {
    const prefix = redisPrefix();
    const [owner, other] = [await instance(prefix), await instance(prefix)];
    const leaving = eventInbox();
    const back = eventInbox();
    const stop = await other.events.subscribe('run-1', leaving.listener);
    stop();
    await other.events.subscribe('run-1', back.listener);
    owner.events.publish('run-1', [event('run-1', 1)]);
    expect(await back.until(1)).toStrictEqual([[event('run-1', 1)]]);
    expect(leaving.batches).toHaveLength(0);

    const gone = cancelInbox();
    const onOther = cancelInbox();
    const unsubscribe = await other.cancel.subscribe(gone.listener);
    const left = unsubscribe();
    await other.cancel.subscribe(onOther.listener);
    await left;
    await owner.cancel.publish('run-1', 'api');
    expect(await onOther.nth(1)).toStrictEqual(['run-1', 'api']);
    expect(gone.received).toHaveLength(0);
  });

  it("resolves every follower's subscribe once Redis listens, also one that comes while the first waits", async () => {
    const prefix = redisPrefix();
    const [owner, other] = [await instance(prefix), await instance(prefix)];
    const [first, second] = [eventInbox(), eventInbox()];
    const resolved: string[] = [];
    const subscribed = [
      other.events.subscribe('run-1', first.listener).then(() => resolved.push('first')),
      other.events.subscribe('run-1', second.listener).then(() => resolved.push('second')),
    ];
    // The second waits for the first's SUBSCRIBE rather than resolving before anybody listens.
    await subscribed[1];
    expect(resolved).toEqual(['first', 'second']);
    await subscribed[0];
    owner.events.publish('run-1', [event('run-1', 1)]);
    expect(await second.until(1)).toStrictEqual([[event('run-1', 1)]]);
    expect(await first.until(1)).toStrictEqual([[event('run-1', 1)]]);
  });

  it('delivers to a follower that joins while the last one leaves in the same turn', async () => {
    const prefix = redisPrefix();
    const [owner, other] = [await instance(prefix), await instance(prefix)];
    const joining = eventInbox();
    const leave = await other.events.subscribe('run-1', () => undefined);
    const joined = other.events.subscribe('run-1', joining.listener);
    leave();
    await joined;
    owner.events.publish('run-1', [event('run-1', 1)]);
    expect(await joining.until(1)).toStrictEqual([[event('run-1', 1)]]);
  });

  describe('an outage', () => {
    let redis: PrivateRedis;
    afterEach(() => redis.stop());

    it('rejects cancels with STORE_UNAVAILABLE while Redis is down, and delivers again once it is back', async () => {
      redis = await startPrivateRedis();
      const prefix = redisPrefix();
      const [a, b] = [await instance(prefix, redis.url), await instance(prefix, redis.url)];
      const onA = cancelInbox();
      const followed = eventInbox();
      await a.cancel.subscribe(onA.listener);
      await a.events.subscribe('run-1', followed.listener);

      await redis.stop();
      const error = await eventually(
        () =>
          b.cancel.publish('run-1', 'api').then(
            () => undefined,
            (e: unknown) => e,
          ),
        {
          what: 'a rejected publish',
        },
      );
      expect(error).toMatchObject({ code: 'STORE_UNAVAILABLE' });
      // Publishing events never throws, even now.
      b.events.publish('run-1', [event('run-1', 1)]);

      await redis.start();
      // node-redis reconnects and subscribes again on its own; cancels published from then on arrive.
      await eventually(
        async () => {
          await b.cancel.publish('run-2', 'api').catch(() => undefined);
          return onA.received.length > 0;
        },
        { what: 'a cancel after the restart' },
      );
      expect(onA.received[0]).toStrictEqual(['run-2', 'api']);
      await eventually(
        () => {
          b.events.publish('run-1', [event('run-1', 2)]);
          return followed.batches.length > 0;
        },
        { what: 'an event batch after the restart' },
      );
      expect(followed.batches[0]).toStrictEqual([event('run-1', 2)]);
    });

    it('leaves, once Redis is back, the channel of a run whose last follower left during the outage', async () => {
      redis = await startPrivateRedis();
      const prefix = redisPrefix();
      const { cancel, events } = await instance(prefix, redis.url);
      await events.subscribe('kept', eventInbox().listener);
      const leave = await events.subscribe('left', eventInbox().listener);

      await redis.stop();
      // Redis is gone (this instance's cancels fail): the UNSUBSCRIBE sent now gets no answer.
      await eventually(
        () =>
          cancel.publish('run', 'api').then(
            () => false,
            () => true,
          ),
        { what: 'a rejected publish' },
      );
      leave();
      // Commands go out in order: once a later one is refused, the UNSUBSCRIBE has failed too.
      await expect(events.subscribe('probe', eventInbox().listener)).rejects.toMatchObject({
        code: 'STORE_UNAVAILABLE',
      });
      await redis.start();

      const admin = createClient({ url: redis.url });
      await admin.connect();
      try {
        // Back: the kept run's channel is subscribed again, and the left run's is not (it was, for
        // the life of the process, before).
        await eventually(
          async () => {
            const channels = await admin.pubSubChannels(`${prefix}events:*`);
            return channels.includes(`${prefix}events:kept`) && !channels.includes(`${prefix}events:left`);
          },
          { what: 'only the kept channel subscribed' },
        );
      } finally {
        admin.destroy();
      }
    });

    it('fails at start with a one-line message naming host and port, not the password', async () => {
      redis = await startPrivateRedis();
      await redis.stop();
      const url = redis.url.replace('redis://', 'redis://:s3cret@');
      const error = await createRedisCancelBus({ url }).catch((e: unknown) => e as Error);
      expect(error).toMatchObject({ code: 'STORE_UNAVAILABLE' });
      expect((error as Error).message).toContain(redis.url.replace('redis://', ''));
      expect((error as Error).message).not.toContain('s3cret');
      expect((error as Error).message).not.toContain('\n');
    });
  });
});
