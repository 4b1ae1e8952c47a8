import type { RunEvent } from './run-events.js';

/**
 * The ordered events of one run. Readers replay from any `seq` and then follow live appends until
 * the log is closed. Kept behind this small interface so that a shared backend (Redis streams) can
 * replace the in-memory one without touching the machine.
 */
export interface RunEventLog {
  /** Number of events, which is also the `seq` of the last one. */
  readonly size: number;
  readonly closed: boolean;
  append(event: RunEvent): void;
  /** Ends every follower once it has read what was appended. */
  close(): void;
  /** Events with `seq > afterSeq` appended so far. */
  read(afterSeq?: number): RunEvent[];
  /**
   * Replays events with `seq > afterSeq`, then follows; ends after the log is closed, or after an
   * event for which `endsAfter` (asked when the reader wants the next one) says so.
   */
  follow(
    afterSeq?: number,
    endsAfter?: (event: RunEvent) => boolean,
  ): AsyncIterableIterator<RunEvent, undefined>;
}

/** The in-memory {@link RunEventLog}. */
export class MemoryEventLog implements RunEventLog {
  readonly #events: RunEvent[] = [];
  #closed = false;
  // One shared wake-up for all followers, created only when somebody waits: no listener per reader.
  #wake: { promise: Promise<void>; resolve: () => void } | undefined;

  get size(): number {
    return this.#events.length;
  }

  get closed(): boolean {
    return this.#closed;
  }

  append(event: RunEvent): void {
    if (this.#closed) throw new Error(`event log of run ${event.run_id} is closed`);
    this.#events.push(event);
    this.#notify();
  }

  close(): void {
    this.#closed = true;
    this.#notify();
  }

  read(afterSeq = 0): RunEvent[] {
    return this.#events.slice(Math.max(0, afterSeq));
  }

  follow(afterSeq = 0, endsAfter?: (event: RunEvent) => boolean): AsyncIterableIterator<RunEvent, undefined> {
    // seq n lives at index n - 1, so "after seq k" starts at index k.
    return new LogFollower(this.#events, Math.max(0, afterSeq), endsAfter, this);
  }

  /** Resolves at the next append or close. */
  changed(): Promise<void> {
    if (!this.#wake) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.#wake = { promise, resolve };
    }
    return this.#wake.promise;
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.resolve();
  }
}

const DONE: IteratorReturnResult<undefined> = Object.freeze({ done: true, value: undefined });

/**
 * One reader of a {@link MemoryEventLog}. Written out rather than as an async generator: it sits on
 * every token's path, and an event already in the log is handed out with no promise turn but the
 * one `next()` returns (a generator's `yield` costs several, and one more per generator wrapping it).
 */
class LogFollower implements AsyncIterableIterator<RunEvent, undefined> {
  readonly #events: readonly RunEvent[];
  readonly #log: MemoryEventLog;
  readonly #endsAfter: ((event: RunEvent) => boolean) | undefined;
  #next: number;
  /** The event this reader was handed last. */
  #last: RunEvent | undefined;
  #ended = false;
  // Bound once: the continuation of a reader that waited for an append.
  readonly #afterWait = ():
    IteratorResult<RunEvent, undefined> | Promise<IteratorResult<RunEvent, undefined>> =>
    this.#take() ?? this.#wait();

  constructor(
    events: readonly RunEvent[],
    next: number,
    endsAfter: ((event: RunEvent) => boolean) | undefined,
    log: MemoryEventLog,
  ) {
    this.#events = events;
    this.#next = next;
    this.#endsAfter = endsAfter;
    this.#log = log;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<RunEvent, undefined>> {
    const result = this.#take();
    return result ? Promise.resolve(result) : this.#wait();
  }

  return(): Promise<IteratorResult<RunEvent, undefined>> {
    this.#ended = true;
    return Promise.resolve(DONE);
  }

  /** The next result when there is one now (an event, or the end); `undefined` to wait. */
  #take(): IteratorResult<RunEvent, undefined> | undefined {
    if (this.#ended) return DONE;
    // Asked now, not when the event was handed out: a pause the run has left since is read through.
    if (this.#last && this.#endsAfter?.(this.#last)) this.#ended = true;
    else if (this.#next < this.#events.length) {
      const value = this.#events[this.#next++]!;
      this.#last = value;
      return { done: false, value };
    } else if (this.#log.closed) this.#ended = true;
    else return undefined;
    return DONE;
  }

  #wait(): Promise<IteratorResult<RunEvent, undefined>> {
    return this.#log.changed().then(this.#afterWait);
  }
}
