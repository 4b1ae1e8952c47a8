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
  /** Replays events with `seq > afterSeq`, then follows; ends after the log is closed. */
  follow(afterSeq?: number): AsyncIterable<RunEvent>;
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

  async *follow(afterSeq = 0): AsyncGenerator<RunEvent> {
    // seq n lives at index n - 1, so "after seq k" starts at index k.
    let next = Math.max(0, afterSeq);
    for (;;) {
      while (next < this.#events.length) yield this.#events[next++]!;
      if (this.#closed) return;
      await this.#changed();
    }
  }

  #changed(): Promise<void> {
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
