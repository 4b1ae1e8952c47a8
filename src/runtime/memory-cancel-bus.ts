/* eslint-disable @typescript-eslint/require-await -- in memory nothing is awaited, but the methods are async as the interface is: a throw is a rejection, never a synchronous throw. */
import type { CancelReason } from '../../machines/run-types.js';
import type { CancelBus } from './storage.js';

type CancelListener = (runId: string, reason: CancelReason, agentId?: string) => void;

/**
 * The default {@link CancelBus}: delivers within this process, synchronously, to every subscriber.
 * Orchestrators that share one (and one run store) behave as instances of one service, which is how
 * the cross-instance paths are tested without a broker.
 *
 * @example
 * ```ts
 * const store = createMemoryRunStore();
 * const cancelBus = createMemoryCancelBus();
 * const eventBus = createMemoryEventBus();
 * // Two "instances" of one service: a run of one is cancelled and followed through the other.
 * const a = createOrchestrator({ store, cancelBus, eventBus });
 * const b = createOrchestrator({ store, cancelBus, eventBus });
 * ```
 */
export function createMemoryCancelBus(): CancelBus {
  const listeners = new Set<CancelListener>();
  return {
    async publish(runId, reason, agentId) {
      // A copy: a listener that unsubscribes while being called must not skip another.
      for (const listener of [...listeners]) {
        try {
          listener(runId, reason, agentId);
        } catch (error) {
          console.error('runstate: a cancel listener threw', error);
        }
      }
    },
    async subscribe(listener) {
      // Wrapped, so that one function subscribed twice is two subscriptions.
      const entry: CancelListener = (runId, reason, agentId) => listener(runId, reason, agentId);
      listeners.add(entry);
      return async () => {
        listeners.delete(entry);
      };
    },
    async close() {
      listeners.clear();
    },
  };
}
