import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { setTimeout as delay, setImmediate as afterIo } from 'node:timers/promises';

/** How a wait for a full stream ended. */
export type DrainOutcome = 'drained' | 'closed' | 'stalled';

/**
 * Resolves when `stream` drained, closed (its reader went away) or, given `stallMs`, read nothing
 * for that long; leaves no listener or timer behind: a command writing a long answer into a slow
 * pipe waits once per full pipe.
 */
export async function drainedOrClosed(stream: Writable, stallMs?: number): Promise<DrainOutcome> {
  const done = new AbortController();
  const { signal } = done;
  const waits: Promise<DrainOutcome>[] = [
    once(stream, 'drain', { signal }).then(() => 'drained' as const),
    once(stream, 'close', { signal }).then(() => 'closed' as const),
  ];
  if (stallMs !== undefined) {
    // Stalled only if a turn's I/O after the timer brings no drain either: a process that was not
    // scheduled for a while runs its timers before it sees that the reader has read meanwhile.
    waits.push(delay(stallMs, undefined, { signal }).then(() => afterIo('stalled' as const, { signal })));
  }
  try {
    return await Promise.race(waits);
  } catch {
    return 'closed'; // an 'error' event: the stream is gone
  } finally {
    done.abort();
  }
}
