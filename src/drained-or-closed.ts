import { once } from 'node:events';
import type { Writable } from 'node:stream';

/**
 * Resolves when `stream` drained or closed (its reader went away), and leaves no listener behind:
 * a command writing a long answer into a slow pipe waits once per full pipe.
 */
export async function drainedOrClosed(stream: Writable): Promise<void> {
  const done = new AbortController();
  const { signal } = done;
  await Promise.race([once(stream, 'drain', { signal }), once(stream, 'close', { signal })]).catch(
    () => undefined,
  );
  done.abort();
}
