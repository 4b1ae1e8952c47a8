/**
 * One client of the benchmark in a process of its own: `client-main.js <kind> <options JSON>`.
 * Nothing else runs here, so the process's CPU time and memory are the client's.
 *
 * @packageDocumentation
 */
import { cancelAtFirstContent, CLIENTS, type ClientOptions, type Outcome } from './clients.js';
import type { Kind, Workload } from './config.js';
import { notifyParent, serveTasks } from './processes.js';

/** Answer to a `batch` task. */
export interface BatchResult {
  wallMs: number;
  completed: number;
  /** Most runs streaming (first content read, not finished) at once. */
  peakStreaming: number;
  /** A few distinct reasons why runs failed. */
  failures: string[];
}

const [kind, options] = process.argv.slice(2);
const client = CLIENTS[kind as Kind](JSON.parse(options ?? '{}') as ClientOptions);

async function batch(
  workload: Workload,
  runs: number,
  startPerSecond: number,
  tag: string,
  preconnect: boolean,
): Promise<BatchResult> {
  let streaming = 0;
  let peakStreaming = 0;
  const failures = new Set<string>();
  const start = performance.now();
  // Each run's connection is opened first (timed with the batch), whether the runs then start all at
  // once or in a ramp: the server takes its runs over connections it has, as behind a balancer.
  if (preconnect) await client.connect?.(runs);
  const outcomes = await Promise.all(
    Array.from({ length: runs }, async (_, i): Promise<Outcome['status']> => {
      // A ramp in 10 ms steps: run i starts i / startPerSecond seconds in.
      if (startPerSecond > 0)
        await new Promise((resolve) => setTimeout(resolve, Math.floor((i * 100) / startPerSecond) * 10));
      let first = true;
      try {
        const outcome = await client.run(workload, `${tag}-${i}`, () => {
          if (!first) return;
          first = false;
          peakStreaming = Math.max(peakStreaming, ++streaming);
        });
        if (outcome.error) failures.add(outcome.error);
        return outcome.status;
      } catch (error) {
        // fetch's own message ("fetch failed") says nothing: what failed is its cause.
        const cause = (error as { cause?: Error } | null)?.cause;
        failures.add(
          cause === undefined ? String(error) : `${String(error)} (${cause.name}: ${cause.message})`,
        );
        return 'failed';
      } finally {
        if (!first) streaming--;
      }
    }),
  );
  return {
    wallMs: performance.now() - start,
    completed: outcomes.filter((status) => status === 'completed').length,
    peakStreaming,
    failures: [...failures].slice(0, 3),
  };
}

serveTasks(
  async (task) => {
    const workload = task.workload as Workload;
    const tag = String(task.tag);
    switch (task.type) {
      case 'stream':
        return client.run(workload, tag);
      case 'batch':
        return batch(
          workload,
          Number(task.runs),
          Number(task.startPerSecond),
          tag,
          task.preconnect !== false,
        );
      case 'cancel':
        return cancelAtFirstContent(client, workload, tag);
      default:
        throw new Error(`unknown task ${task.type}`);
    }
  },
  () => client.close(),
);
notifyParent({ type: 'ready' });
