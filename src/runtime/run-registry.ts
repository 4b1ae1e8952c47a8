import type { LiveRun } from './live-run.js';

/**
 * The runs this process owns, by id: from `startRun` until the store has their final record. What
 * the model service looks runs up in, what `cancelRun` and `shutdown` reach, and what reads of a
 * live run use before the store (its content so far is only here).
 */
export interface RunRegistry {
  get(runId: string): LiveRun | undefined;
  has(runId: string): boolean;
  add(run: LiveRun): void;
  delete(run: LiveRun): void;
  /** Every run held, oldest first. */
  values(): IterableIterator<LiveRun>;
  /** Runs held that are pending or streaming (not final, not paused). */
  readonly activeCount: number;
}

/** Creates an empty {@link RunRegistry}. */
export function createRunRegistry(): RunRegistry {
  const runs = new Map<string, LiveRun>();
  return {
    get: (runId) => runs.get(runId),
    has: (runId) => runs.has(runId),
    add(run) {
      runs.set(run.identity.runId, run);
    },
    delete(run) {
      if (runs.get(run.identity.runId) === run) runs.delete(run.identity.runId);
    },
    values: () => runs.values(),
    get activeCount() {
      let count = 0;
      for (const run of runs.values()) if (!run.output && run.status() !== 'paused') count++;
      return count;
    },
  };
}
