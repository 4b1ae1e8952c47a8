import type { CancelReason } from '../../../machines/run-types.js';
import { RunstateError } from '../../errors.js';
import type { RunEvent } from '../run-events.js';
import type { CancelBus, EventBus } from '../storage.js';
import { connectRedis, type RedisConnection } from './connect-redis.js';

/** Options of {@link createRedisCancelBus} and {@link createRedisEventBus}. */
export interface RedisBusOptions {
  /** `redis://[:password@]host:port[/db]`. */
  url: string;
  /** Starts every channel name, so that deployments (or tests) can share one Redis. Default `runstate:`. */
  prefix?: string | undefined;
}

/** A publishing connection and a subscribing one (a subscribed connection can do nothing else). */
async function connectPair(url: string): Promise<{ pub: RedisConnection; sub: RedisConnection }> {
  const pub = await connectRedis(url);
  try {
    return { pub, sub: await connectRedis(url) };
  } catch (error) {
    pub.destroy();
    throw error;
  }
}

function unavailable(error: unknown): never {
  if (error instanceof RunstateError) throw error;
  throw new RunstateError('STORE_UNAVAILABLE', `Redis is unavailable: ${(error as Error).message}`, {
    cause: error,
  });
}

/**
 * A {@link CancelBus} over Redis pub/sub: one channel (`<prefix>cancel`) that every instance
 * subscribes to on a connection of its own; the owner of the run acts on it. A cancel sent while
 * Redis is down rejects `STORE_UNAVAILABLE` at once.
 */
export async function createRedisCancelBus(options: RedisBusOptions): Promise<CancelBus> {
  const channel = `${options.prefix ?? 'runstate:'}cancel`;
  const { pub, sub } = await connectPair(options.url);
  // The last listener's UNSUBSCRIBE, until Redis answers it (see `createRedisEventBus`).
  let leaving: Promise<unknown> | undefined;
  return {
    async publish(runId, reason, agentId) {
      const message = JSON.stringify({ run_id: runId, reason, agent_id: agentId });
      await pub.publish(channel, message).catch(unavailable);
    },
    async subscribe(listener) {
      const handler = (message: string) => {
        const { run_id, reason, agent_id } = JSON.parse(message) as {
          run_id: string;
          reason: CancelReason;
          agent_id?: string;
        };
        listener(run_id, reason, agent_id);
      };
      await leaving;
      await sub.subscribe(channel, handler).catch(unavailable);
      return async () => {
        if (!sub.isOpen) return;
        const left = sub.unsubscribe(channel, handler).catch(() => undefined);
        leaving = left;
        await left;
      };
    },
    async close() {
      pub.destroy();
      sub.destroy();
      await Promise.resolve();
    },
  };
}

/**
 * An {@link EventBus} over Redis pub/sub: a channel per run (`<prefix>events:<runId>`), one message
 * per batch, serialised once however many followers. Followers of one run on an instance share one
 * Redis subscription. What pub/sub loses while a connection is down (it keeps nothing), followers
 * read from the store: they resume by `seq`.
 */
export async function createRedisEventBus(options: RedisBusOptions): Promise<EventBus> {
  const prefix = `${options.prefix ?? 'runstate:'}events:`;
  const { pub, sub } = await connectPair(options.url);
  // Each run's followers here, and their one SUBSCRIBE: every follower's `subscribe` resolves once
  // Redis answered it (a second follower must not think it listens while the first still waits).
  const followers = new Map<
    string,
    { listeners: Set<(events: readonly RunEvent[]) => void>; listening: Promise<unknown> }
  >();
  // Channels whose last follower left, until Redis answered the UNSUBSCRIBE: node-redis drops a
  // listener added to such a channel meanwhile (the answer removes it), so the run's next follower
  // here would hear nothing. It subscribes once the UNSUBSCRIBE is answered.
  const leaving = new Map<string, Promise<unknown>>();
  // Runs whose UNSUBSCRIBE failed (Redis was down): node-redis keeps their channels in its list and
  // subscribes to them again when it reconnects, for the life of the process. They are left once
  // Redis is back (node-redis has subscribed again by `ready`), unless a follower came meanwhile.
  const strays = new Set<string>();
  sub.on('ready', () => {
    for (const runId of strays) if (!followers.has(runId)) leave(runId);
    strays.clear();
  });

  function leave(runId: string): void {
    if (!sub.isOpen) return;
    const left: Promise<unknown> = sub
      .unsubscribe(prefix + runId)
      .catch(() => strays.add(runId))
      .finally(() => {
        if (leaving.get(runId) === left) leaving.delete(runId);
      });
    leaving.set(runId, left);
  }

  return {
    publish(runId, events) {
      if (events.length === 0) return;
      // Never waits and never throws: a lost batch is read from the store by the followers.
      pub.publish(prefix + runId, JSON.stringify(events)).catch(() => undefined);
    },
    async subscribe(runId, listener) {
      let channel = followers.get(runId);
      if (!channel) {
        const listeners = new Set<(events: readonly RunEvent[]) => void>();
        const listening = (async () => {
          await leaving.get(runId);
          await sub.subscribe(prefix + runId, (message) => {
            const events = JSON.parse(message) as RunEvent[];
            for (const follower of listeners) follower(events);
          });
        })();
        channel = { listeners, listening };
        followers.set(runId, channel);
      }
      const joined = channel;
      const set = joined.listeners;
      // Added at once: a last follower that leaves meanwhile leaves the channel to this one.
      set.add(listener);
      try {
        await joined.listening;
      } catch (error) {
        // Refused: the next follower tries again (those waiting with this one are refused too).
        set.delete(listener);
        if (followers.get(runId) === joined && set.size === 0) followers.delete(runId);
        unavailable(error);
      }
      return () => {
        set.delete(listener);
        if (set.size > 0 || followers.get(runId) !== joined) return;
        followers.delete(runId);
        leave(runId);
      };
    },
    async close() {
      followers.clear();
      pub.destroy();
      sub.destroy();
      await Promise.resolve();
    },
  };
}
