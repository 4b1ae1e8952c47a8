/** Options of {@link createAdmission}. */
export interface AdmissionOptions<T> {
  /** Runs started at once; the others wait, first in first out. `Infinity`: no limit. */
  maxConcurrent: number;
  /** Starts an admitted run. */
  start: (run: T) => void;
}

/** The concurrency limit: which runs stream now and which wait in `pending`. */
export interface Admission<T> {
  /** Starts `run` now when a slot is free, or queues it. */
  admit(run: T): void;
  /** `run` ended (started or still waiting), or paused: its slot goes to the first waiting run. */
  release(run: T): void;
  /** A paused run resumes: it takes a slot back at once, even past the limit (a person is waiting on it). */
  resume(run: T): void;
  /** Starts no waiting run from now on (a freed slot must not start a run about to be cancelled). */
  close(): void;
  /** Runs started and not released. */
  readonly running: number;
}

/** Creates the admission of one orchestrator. */
export function createAdmission<T>({ maxConcurrent, start }: AdmissionOptions<T>): Admission<T> {
  const running = new Set<T>();
  // A Set keeps insertion order (first in, first out) and removes a cancelled waiter in O(1).
  const waiting = new Set<T>();
  let closed = false;

  function begin(run: T): void {
    running.add(run);
    start(run);
  }

  return {
    admit(run) {
      if (!closed && running.size < maxConcurrent) begin(run);
      else waiting.add(run);
    },
    release(run) {
      if (!running.delete(run)) {
        waiting.delete(run);
        return;
      }
      while (!closed && running.size < maxConcurrent && waiting.size > 0) {
        const next = waiting.values().next().value as T;
        waiting.delete(next);
        begin(next);
      }
    },
    resume(run) {
      running.add(run);
    },
    close() {
      closed = true;
    },
    get running() {
      return running.size;
    },
  };
}
