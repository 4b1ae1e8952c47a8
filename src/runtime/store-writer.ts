import { setTimeout as delay } from 'node:timers/promises';
import { RunstateError } from '../errors.js';
import type { RunEvent, RunOutput, RunRecord } from './run-events.js';
import type { EventBus, ParkedRun, RunPatch, RunStore } from './storage.js';

/** What {@link RunWriter.finish} resolves with. Neither promise rejects. */
export interface FinalWrite {
  /**
   * Resolves once the run's end may be told: its final record is stored (so every instance reads it
   * final), or the store reported an outage (the writes go on once it is back), or
   * `settleMs` passed (a store that hangs). What a run's readers wait for before its terminal event.
   */
  readonly settled: Promise<void>;
  /** Resolves once every write of the run is done, or given up (reported to `onError`). */
  readonly stored: Promise<void>;
}

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
  /** Writes the events still queued, then the final record. */
  finish(record: RunOutput): FinalWrite;
  /**
   * Parks the paused run (`RunStore.parkRun`): the events still queued and `paused` (its RunPaused),
   * `patch` and `parked` in one store call, then the events go to the event bus. Resolves `true` once
   * stored, `false` when the store refused it (reported) or the run ended before it was written (then
   * its events are appended, in order, and nothing is parked); never rejects. Events appended after
   * it (the run's end) are written after it.
   */
  park(patch: RunPatch, parked: ParkedRun, paused: RunEvent): Promise<boolean>;
}

/** Options of {@link createStoreWriter}. */
export interface StoreWriterOptions {
  store: RunStore;
  eventBus: EventBus;
  /**
   * A write the store refused after the run was recorded (three times, 50 and 100 ms apart):
   * reported (once per run), the run goes on. After a refused batch of events no later event of the
   * run is written: the stored log ends before the hole, and its readers say so.
   */
  onError: (error: unknown, runId: string) => void;
  /** How long a run's end waits for its final record to be stored at most. Default 5 s. */
  settleMs?: number | undefined;
}

/** Backoff between tries of a write during an outage: doubling from 50 ms to 2 s. */
const RETRY_MIN_MS = 50;
const RETRY_MAX_MS = 2_000;

/** How many times a write the store refuses (not an outage) is tried before it is given up. */
const REFUSED_TRIES = 3;

const unavailable = (error: unknown) => error instanceof RunstateError && error.code === 'STORE_UNAVAILABLE';

/**
 * Writes the runs an orchestrator owns to its store: per run, one chain of writes in order, and at
 * most one batch of events in flight. A batch takes every event appended until it starts, so a run
 * costs one store call per tick at most, and fewer when the store is slower than the model (never
 * a call per token). A batch is published on the event bus once the store has it (what makes
 * following from another instance gap-free); the last one once the final record is stored too.
 *
 * During an outage (`STORE_UNAVAILABLE`), writes are tried again, in order, until the store is back
 * or {@link close} is called: what was accepted is written late, not dropped.
 */
export function createStoreWriter({ store, eventBus, onError, settleMs = 5_000 }: StoreWriterOptions): {
  /** Records a new run and writes it; with `recorded`, a run the store has already (taken back from it). */
  open(record: RunRecord, options?: { recorded?: boolean }): RunWriter;
  /** Stops trying again: a write that fails from now on is reported and given up (at shutdown). */
  close(): void;
} {
  const dirty = new Set<Writer>();
  let scheduled: ReturnType<typeof setImmediate> | undefined;
  let closed = false;

  interface Writer {
    flush(): void;
  }

  function flushAll(): void {
    scheduled = undefined;
    const writers = [...dirty];
    dirty.clear();
    for (const writer of writers) writer.flush();
  }

  function open(record: RunRecord, options: { recorded?: boolean } = {}): RunWriter {
    const runId = record.run_id;
    let failed = false;
    let pending: RunEvent[] = [];
    // The batch queued in the chain that has not taken its events yet, if any.
    let queuedBatch: object | undefined;
    // The seq of the RunPaused of a park not written yet: no batch takes an event past it before the
    // park has (the run may end while its park is in flight: its pause ran out, its lease was lost).
    let parkSeq = Infinity;
    // A write of this run is failing with an outage: a run ending now need not wait for the store.
    let outage = false;
    let onOutage: (() => void) | undefined;
    // A write was refused and reported (see `enqueue`).
    let refused = false;
    // A batch of events was refused for good: the log ends before it, and no later event is written
    // (a batch must continue the log without a gap), nor published (its followers read the store's).
    let eventsLost = false;
    // Once the run ends, its last events are published after its final record is stored: a
    // follower on another instance that saw the end reads the run final.
    let ending = false;
    let held: RunEvent[] = [];
    const recorded = options.recorded ? Promise.resolve() : store.createRun(record);
    // Handled here, so that nobody awaiting `recorded` is not a crash; awaiting it still rejects.
    let chain: Promise<void> = recorded.then(
      () => undefined,
      () => {
        failed = true;
      },
    );

    function enqueue(write: () => Promise<unknown>, events = false): void {
      chain = chain.then(async () => {
        if (failed) return;
        let refusals = 0;
        for (let waitMs = RETRY_MIN_MS; ; waitMs = Math.min(2 * waitMs, RETRY_MAX_MS)) {
          try {
            await write();
            outage = false;
            return;
          } catch (error) {
            // A refusal may be passing (a conflict, a lock): the write is tried again, twice.
            if (!unavailable(error) && !closed && ++refusals < REFUSED_TRIES) {
              await delay(waitMs);
              continue;
            }
            if (!unavailable(error) || closed) {
              // Once per run: a store that refuses one write (closed under it) refuses the rest.
              if (!refused) onError(error, runId);
              refused = true;
              if (events) eventsLost = true;
              // At shutdown, a store still down gets one more try per run, not one per write: each
              // may take a connection timeout (a network path gone silent answers nothing).
              if (closed && unavailable(error)) failed = true;
              return;
            }
            outage = true;
            onOutage?.();
            await delay(waitMs);
          }
        }
      });
    }

    /** The queued events before `parkSeq`, in order; the rest stay queued. */
    function take(): RunEvent[] {
      if (pending.length === 0 || pending.at(-1)!.seq < parkSeq) {
        const taken = pending;
        pending = [];
        return taken;
      }
      const at = pending.findIndex((event) => event.seq >= parkSeq);
      return pending.splice(0, at);
    }

    const writer: Writer = {
      flush() {
        if (pending.length === 0 || queuedBatch) return;
        const token = {};
        queuedBatch = token;
        let batch: RunEvent[] | undefined;
        enqueue(async () => {
          // Taken when the write starts (not when it was queued): what came meanwhile goes too.
          if (!batch) {
            batch = take();
            if (queuedBatch === token) queuedBatch = undefined;
          }
          if (batch.length === 0 || eventsLost) return;
          await store.appendEvents(runId, batch);
          if (ending) held.push(...batch);
          else eventBus.publish(runId, batch);
        }, true);
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
        ending = true;
        writer.flush();
        dirty.delete(writer);
        enqueue(() => store.finishRun(output));
        enqueue(() => {
          if (held.length > 0) eventBus.publish(runId, held);
          held = [];
          return Promise.resolve();
        });
        const stored = chain;
        let timer: ReturnType<typeof setTimeout> | undefined;
        const settled = new Promise<void>((resolve) => {
          onOutage = resolve;
          if (outage) resolve();
          timer = setTimeout(resolve, settleMs);
          void stored.then(resolve);
        }).finally(() => clearTimeout(timer));
        return { settled, stored };
      },
      park(patch, parked, paused) {
        dirty.delete(writer);
        // A batch queued before takes nothing past the RunPaused: what comes after it is queued anew.
        queuedBatch = undefined;
        parkSeq = paused.seq;
        let written = false;
        let batch: RunEvent[] | undefined;
        let parking = true;
        enqueue(async () => {
          if (!batch) {
            // What is still queued (a batch queued earlier took the rest) and the RunPaused go with
            // the park: another instance that sees the pause finds the run parked.
            batch = [...take(), paused];
            parkSeq = Infinity;
            // A run that ended before its park was written is not parked: its events go in order,
            // and its final record follows.
            parking = !ending;
          }
          // After a hole in the log, a park (its events) would leave a gap: the run is not parked.
          if (eventsLost) return;
          if (!parking) {
            await store.appendEvents(runId, batch);
            held.push(...batch);
            return;
          }
          await store.parkRun(runId, patch, batch, parked);
          eventBus.publish(runId, batch);
          written = true;
        }, true);
        return chain.then(() => written);
      },
    };
  }

  return {
    open,
    close() {
      closed = true;
    },
  };
}
