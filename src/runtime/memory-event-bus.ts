/* eslint-disable @typescript-eslint/require-await -- in memory nothing is awaited, but the methods are async as the interface is: a throw is a rejection, never a synchronous throw. */
import type { RunEvent } from './run-events.js';
import type { EventBus } from './storage.js';

type EventsListener = (events: readonly RunEvent[]) => void;

/**
 * The default {@link EventBus}: delivers a run's event batches within this process, synchronously,
 * to the followers of that run. Holds nothing for a run nobody follows.
 *
 * @example
 * ```ts
 * const bus = createMemoryEventBus();
 * const unsubscribe = await bus.subscribe(runId, (events) => console.log(events.map((e) => e.event)));
 * ```
 */
export function createMemoryEventBus(): EventBus {
  const followers = new Map<string, Set<EventsListener>>();
  return {
    publish(runId, events) {
      const listeners = followers.get(runId);
      if (!listeners) return;
      for (const listener of [...listeners]) {
        try {
          listener(events);
        } catch (error) {
          console.error(`runstate: a follower of run ${runId} threw`, error);
        }
      }
    },
    async subscribe(runId, listener) {
      const entry: EventsListener = (events) => listener(events);
      let listeners = followers.get(runId);
      if (!listeners) followers.set(runId, (listeners = new Set()));
      listeners.add(entry);
      return () => {
        listeners.delete(entry);
        if (listeners.size === 0 && followers.get(runId) === listeners) followers.delete(runId);
      };
    },
    async close() {
      followers.clear();
    },
  };
}
