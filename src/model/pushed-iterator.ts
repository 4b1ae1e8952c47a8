/** What a {@link PushedIterator} asks of the source that pushes into it. */
export interface PushedSource {
  /** Called at the first `next()`: a source that starts then does no work for a consumer that never reads. */
  start?(): void;
  /** Too many values wait for the consumer: stop reading until {@link PushedSource.resume}. */
  pause(): void;
  resume(): void;
  /** The consumer left early (`return()`, a `break` out of `for await`): stop, push nothing more. */
  stop(): void;
}

/** Most values waiting for a slow consumer before the source is paused. */
const HIGH_WATER = 256;

const DONE: IteratorReturnResult<undefined> = Object.freeze({ done: true, value: undefined });

/**
 * An async iterator over values a source pushes ({@link PushedIterator.push}, then
 * {@link PushedIterator.close} once): the pull form of a push stream, for whoever wants to
 * `for await` it. Values wait in a queue (emptied, not shifted: no copy per value); past
 * {@link HIGH_WATER} of them the source is paused, and resumed once the consumer caught up. An error
 * given to `close` rejects the `next()` after the values pushed before it.
 */
export class PushedIterator<T> implements AsyncIterableIterator<T, undefined> {
  readonly #queue: T[] = [];
  #head = 0;
  #closed = false;
  #failure: { error: unknown } | undefined;
  #paused = false;
  #started = false;
  #waiting:
    { resolve: (result: IteratorResult<T, undefined>) => void; reject: (error: unknown) => void } | undefined;
  /** Set once the source is known (it is made after the iterator it pushes into). */
  source: PushedSource | undefined;

  [Symbol.asyncIterator](): this {
    return this;
  }

  /** A value from the source; ignored once closed. */
  push(value: T): void {
    if (this.#closed) return;
    const waiting = this.#waiting;
    if (waiting) {
      this.#waiting = undefined;
      waiting.resolve({ done: false, value });
      return;
    }
    this.#queue.push(value);
    if (!this.#paused && this.#queue.length - this.#head >= HIGH_WATER) {
      this.#paused = true;
      this.source?.pause();
    }
  }

  /** The source is over: the consumer reads what waits, then the end (or `error`). Once. */
  close(error?: unknown): void {
    if (this.#closed) return;
    this.#closed = true;
    if (error !== undefined) this.#failure = { error };
    const waiting = this.#waiting;
    this.#waiting = undefined;
    if (!waiting) return;
    if (this.#failure) waiting.reject(error);
    else waiting.resolve(DONE);
  }

  next(): Promise<IteratorResult<T, undefined>> {
    if (!this.#started) {
      this.#started = true;
      this.source?.start?.();
    }
    if (this.#head < this.#queue.length) {
      const value = this.#queue[this.#head++]!;
      if (this.#head === this.#queue.length) {
        this.#queue.length = 0;
        this.#head = 0;
        if (this.#paused) {
          this.#paused = false;
          this.source?.resume();
        }
      }
      return Promise.resolve({ done: false, value });
    }
    if (this.#closed) {
      const failure = this.#failure;
      this.#failure = undefined;
      // The source's error as it came (fetch rejects with a TypeError, a parser with a SyntaxError).
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors
      return failure ? Promise.reject(failure.error) : Promise.resolve(DONE);
    }
    return new Promise((resolve, reject) => (this.#waiting = { resolve, reject }));
  }

  return(): Promise<IteratorResult<T, undefined>> {
    if (!this.#closed) {
      this.#closed = true;
      this.source?.stop();
    } else if (this.#paused) {
      // Over, but held back while its values waited: let the source finish (a body that ended
      // then gives its socket back).
      this.#paused = false;
      this.source?.resume();
    }
    const waiting = this.#waiting;
    this.#waiting = undefined;
    waiting?.resolve(DONE);
    this.#queue.length = 0;
    this.#head = 0;
    this.#failure = undefined;
    return Promise.resolve(DONE);
  }
}
