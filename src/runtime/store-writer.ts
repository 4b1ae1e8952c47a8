import { setTimeout as delay } from 'node:timers/promises';
import { RunstateError } from '../errors.js';
import type { RunEvent, RunOutput, RunRecord } from './run-events.js';
import type { EventBus, RunPatch, RunStore } from './storage.js';

/** What an owner writes about one run; every write goes to the store in the order it was made. */
export interface RunWriter {
  /**
   * Resolves once the store recorded the run; rejects with the store's error (`INVALID_INPUT` for a
   * session of another agent, ...), and then nothing more of this run is written.
   */
  readonly recorded: Promise<void>;
  /** Queues an event; the events of one tick go to the store as one batch, then to the event bus. */
  append(event: RunEvent): void;
  /** Queues a change of the record, after the events appended before it. */
  update(patch: RunPatch): void;
  /** Writes the events still queued, then the final record. Resolves when done; never rejects. */
  finish(record: RunOutput): Promise<void>;
}

/** Options of {@link createStoreWriter}. */
export interface StoreWriterOptions {
  store: RunStore;
  eventBus: EventBus;
  /** A write the store refused after the run was recorded: reported, the run goes on. */
  onError: (error: unknown, runId: string) => void;
  /**
   * How long a write is tried again while the store is unavailable (`STORE_UNAVAILABLE`: a database
   * restarting) before it is reported and dropped. Writes of a run stay in order. Default 60 s.
   */
  retryForMs?: number;
}

/** Backoff between tries of a write during an outage: doubling from 50 ms to 2 s. */
const RETRY_MIN_MS = 50;
const RETRY_MAX_MS = 2_000;

const unavailable = (error: unknown) => error instanceof RunstateError && error.code === 'STORE_UNAVAILABLE';

/**
 * Writes the runs an orchestrator owns to its store: per run, one chain of writes in order; for all
 * runs, one timer per tick that sends each run's new events as one batch (never a store call per
 * token), then publishes the batch on the event bus (after the store has it: what makes following
 * from another instance gap-free).
 */
export function createStoreWriter({ store, eventBus, onError, retryForMs = 60_000 }: StoreWriterOptions): {
  open(record: RunRecord): RunWriter;
} {
  const dirty = new Set<Writer>();
  let scheduled: ReturnType<typeof setImmediate> | undefined;

  interface Writer {
    flush(): void;
  }

  function flushAll(): void {
    scheduled = undefined;
    const writers = [...dirty];
    dirty.clear();
    for (const writer of writers) writer.flush();
  }

  function open(record: RunRecord): RunWriter {
    const runId = record.run_id;
    let failed = false;
    let pending: RunEvent[] = [];
    const recorded = store.createRun(record);
    // Handled here, so that nobody awaiting `recorded` is not a crash; awaiting it still rejects.
    let chain: Promise<void> = recorded.then(
      () => undefined,
      () => {
        failed = true;
      },
    );

    function enqueue(write: () => Promise<unknown>): void {
      chain = chain.then(async () => {
        if (failed) return;
        const deadline = Date.now() + retryForMs;
        for (let waitMs = RETRY_MIN_MS; ; waitMs = Math.min(2 * waitMs, RETRY_MAX_MS)) {
          try {
            await write();
            return;
          } catch (error) {
            // An outage: what was accepted is written once the store is back (in order), not dropped.
            if (!unavailable(error) || Date.now() + waitMs > deadline) {
              onError(error, runId);
              return;
            }
            await delay(waitMs);
          }
        }
      });
    }

    const writer: Writer = {
      flush() {
        if (pending.length === 0) return;
        const batch = pending;
        pending = [];
        enqueue(async () => {
          await store.appendEvents(runId, batch);
          eventBus.publish(runId, batch);
        });
      },
    };

    return {
      recorded,
      append(event) {
        pending.push(event);
        if (pending.length > 1) return;
        dirty.add(writer);
        scheduled ??= setImmediate(flushAll);
      },
      update(patch) {
        writer.flush();
        dirty.delete(writer);
        enqueue(() => store.updateRun(runId, patch));
      },
      finish(output) {
        writer.flush();
        dirty.delete(writer);
        enqueue(() => store.finishRun(output));
        return chain;
      },
    };
  }

  return { open };
}
