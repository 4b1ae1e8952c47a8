import type { RunContentEvent, RunEvent } from './run-events.js';

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

/**
 * The events of one run, in `seq` order, kept small. Most of a run's events are `RunContent` with
 * only a delta: such an event is kept as its `content` (one array slot; its `created_at` once per
 * second) and built again when read, instead of an object of eight fields that lives as long as the
 * run and that every scavenge of a busy process would copy and promote. Any other event (and a
 * `RunContent` with more than those fields) is kept as it is. The last event appended is kept too,
 * so that a reader that keeps up gets the very object that was appended.
 *
 * A list that is complete (a finished run's, in a store) can be {@link RunEventList.compact}ed:
 * its deltas joined into one string, a character per event for its length.
 */
export class RunEventList {
  /** Per event: its delta (a plain `RunContent`) or the event itself; `undefined` once compacted. */
  #items: (RunEvent | string)[] | undefined = [];
  #compacted: CompactedEvents | undefined;
  /**
   * The `created_at` of the plain `RunContent`s, as pairs (index of the first, seconds) written when
   * it changes: whole seconds change a few times per run, not per event.
   */
  readonly #times: number[] = [];
  /** An event of the run (its first): the run's fields a plain `RunContent` is built with. */
  #run: RunEvent | undefined;
  #last: RunEvent | undefined;
  /** The `seq` before the first event (0, or where a log taken back from the store starts). */
  readonly #before: number;

  constructor(before = 0) {
    this.#before = before;
  }

  get size(): number {
    return this.#items?.length ?? this.#compacted!.lengths.length;
  }

  /** Appends `event`, whose `seq` the caller checked (the next one). */
  push(event: RunEvent): void {
    const items = (this.#items ??= this.#expand());
    const run = (this.#run ??= event);
    this.#last = event;
    const index = items.length;
    if (event.seq === this.#before + index + 1 && isPlainContent(event, run)) {
      if (this.#times.at(-1) !== event.created_at) this.#times.push(index, event.created_at);
      items.push(event.content);
    } else {
      items.push(event);
    }
  }

  /**
   * Joins the deltas into one string, for a list that grows no more (a {@link push} later undoes
   * it): 100 deltas cost one string and 200 bytes of lengths instead of 100 strings and slots.
   * A list with a delta of 65,535 characters or more stays as it is.
   */
  compact(): void {
    const items = this.#items;
    if (!items) return;
    const deltas: string[] = [];
    const whole: RunEvent[] = [];
    const lengths: number[] = [];
    for (const item of items) {
      if (typeof item !== 'string') {
        whole.push(item);
        lengths.push(WHOLE);
      } else if (item.length < WHOLE) {
        deltas.push(item);
        lengths.push(item.length);
      } else return;
    }
    this.#compacted = { text: deltas.join(''), lengths: charCodes(lengths), whole };
    this.#items = undefined;
    this.#last = undefined;
  }

  /** The items of a compacted list again: its deltas apart. */
  #expand(): (RunEvent | string)[] {
    const { text, lengths, whole } = this.#compacted!;
    this.#compacted = undefined;
    const items: (RunEvent | string)[] = [];
    let end = 0;
    let wholeIndex = 0;
    for (let i = 0; i < lengths.length; i++) {
      const length = lengths.charCodeAt(i);
      if (length === WHOLE) items.push(whole[wholeIndex++]!);
      else items.push(text.slice(end, (end += length)));
    }
    return items;
  }

  /** The event at `index` (its `seq` minus the one before the first); in a compacted list, O(size). */
  at(index: number): RunEvent {
    if (!this.#items) return this.slice(index)[0]!;
    const item = this.#items[index]!;
    if (typeof item !== 'string') return item;
    if (index === this.#items.length - 1) return this.#last!;
    return this.#content(index, item);
  }

  /** The events from `index` on. */
  slice(index = 0): RunEvent[] {
    const out: RunEvent[] = [];
    const items = this.#items;
    if (items) {
      for (let i = Math.max(0, index); i < items.length; i++) out.push(this.at(i));
      return out;
    }
    const { text, lengths, whole } = this.#compacted!;
    let end = 0;
    let wholeIndex = 0;
    for (let i = 0; i < lengths.length; i++) {
      const length = lengths.charCodeAt(i);
      if (length === WHOLE) {
        if (i >= index) out.push(whole[wholeIndex]!);
        wholeIndex++;
      } else {
        end += length;
        if (i >= index) out.push(this.#content(i, text.slice(end - length, end)));
      }
    }
    return out;
  }

  /** The plain `RunContent` at `index`, in the key order of `toWireEvent`'s: the same JSON on the wire. */
  #content(index: number, content: string): RunContentEvent {
    const run = this.#run!;
    return {
      event: 'RunContent',
      run_id: run.run_id,
      agent_id: run.agent_id,
      agent_name: run.agent_name,
      session_id: run.session_id,
      created_at: this.#timeAt(index),
      seq: this.#before + index + 1,
      content,
    };
  }

  /** The `created_at` of the plain `RunContent` at `index`: that of the last change at or before it. */
  #timeAt(index: number): number {
    const times = this.#times;
    // Binary search over the pairs for the last one starting at or before `index`.
    let low = 0;
    let high = times.length / 2 - 1;
    while (low < high) {
      const middle = (low + high + 1) >> 1;
      if (times[2 * middle]! <= index) low = middle;
      else high = middle - 1;
    }
    return times[2 * low + 1]!;
  }
}

/** A string of the char codes `codes` (in pieces: a spread of many arguments overflows the stack). */
function charCodes(codes: readonly number[]): string {
  let out = '';
  for (let i = 0; i < codes.length; i += 4096) out += String.fromCharCode(...codes.slice(i, i + 4096));
  return out;
}

/** In {@link CompactedEvents.lengths}: an event kept whole. */
const WHOLE = 0xffff;

/** A complete list's events: the deltas joined, and per event its delta's length or {@link WHOLE}. */
interface CompactedEvents {
  text: string;
  lengths: string;
  /** The events kept whole, in order. */
  whole: RunEvent[];
}

/** The fields of a `RunContent` built by `toWireEvent`, in its order. */
const PLAIN_CONTENT_KEYS = [
  'event',
  'run_id',
  'agent_id',
  'agent_name',
  'session_id',
  'created_at',
  'seq',
  'content',
] as const;

/**
 * A `RunContent` that {@link RunEventList} can build again, the same to the last key's order, from
 * its delta, its time and its place (`seq`, checked by the caller): the eight fields of
 * `toWireEvent`'s in its order, none more, of the same run.
 */
function isPlainContent(event: RunEvent, run: RunEvent): event is RunContentEvent {
  if (
    event.event !== 'RunContent' ||
    typeof event.content !== 'string' ||
    event.run_id !== run.run_id ||
    event.agent_id !== run.agent_id ||
    event.agent_name !== run.agent_name ||
    event.session_id !== run.session_id
  )
    return false;
  let index = 0;
  for (const key in event) if (key !== PLAIN_CONTENT_KEYS[index++]) return false;
  return index === PLAIN_CONTENT_KEYS.length && Object.getPrototypeOf(event) === Object.prototype;
}

/** The in-memory {@link RunEventLog}. */
export class MemoryEventLog implements RunEventLog {
  readonly #events: RunEventList;
  #closed = false;
  // One shared wake-up for all followers, created only when somebody waits: no listener per reader.
  #wake: { promise: Promise<void>; resolve: () => void } | undefined;
  /** What followers listening ({@link LogFollower.listen}) do at each append or close. */
  readonly #listeners = new Set<() => void>();

  /**
   * `before`: the `seq` before the first event appended (a run taken back from the store starts
   * after its RunPaused). `read` and `follow` count from the log's start whatever it is.
   */
  constructor(before = 0) {
    this.#events = new RunEventList(before);
  }

  get size(): number {
    return this.#events.size;
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
    return this.#events.slice(afterSeq);
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

  /** Calls `listener` at every append and at the close, in that call, until the returned function is called. */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.resolve();
    for (const listener of this.#listeners) listener();
  }
}

const DONE: IteratorReturnResult<undefined> = Object.freeze({ done: true, value: undefined });

/** A reader of a run's events that can also have them pushed. */
export interface ListenableEvents {
  /**
   * Calls `listener` with each event `next()` would give, in the call that appends it (those
   * already in the log first, before `listen` returns), and with `undefined` where the iteration
   * ends. Stops when `listener` returns false, or when the returned function is called; reading
   * (by `next()` or by listening again) goes on from there. No promise per event: what a reader
   * that writes each event to a socket wants. `listener` must not throw.
   */
  listen(listener: (event: RunEvent | undefined) => boolean): () => void;
}

/** Whether `events` can push ({@link ListenableEvents}): the reader of a run this process holds. */
export function isListenable(
  events: AsyncIterator<RunEvent>,
): events is AsyncIterator<RunEvent> & ListenableEvents {
  return events instanceof LogFollower;
}

/**
 * One reader of a {@link MemoryEventLog}. Written out rather than as an async generator: it sits on
 * every token's path, and an event already in the log is handed out with no promise turn but the
 * one `next()` returns (a generator's `yield` costs several, and one more per generator wrapping it).
 */
class LogFollower implements AsyncIterableIterator<RunEvent, undefined>, ListenableEvents {
  readonly #events: RunEventList;
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
    events: RunEventList,
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

  /** The push form of this reader (see {@link ListenableEvents.listen}). */
  listen(listener: (event: RunEvent | undefined) => boolean): () => void {
    let listening = true;
    let stopListening: (() => void) | undefined;
    const stop = () => {
      listening = false;
      stopListening?.();
    };
    const drain = () => {
      while (listening) {
        const result = this.#take();
        if (!result) return;
        if (!listener(result.done ? undefined : result.value) || result.done) stop();
      }
    };
    drain();
    if (listening) stopListening = this.#log.onChange(drain);
    return stop;
  }

  /** The next result when there is one now (an event, or the end); `undefined` to wait. */
  #take(): IteratorResult<RunEvent, undefined> | undefined {
    if (this.#ended) return DONE;
    // Asked now, not when the event was handed out: a pause the run has left since is read through.
    if (this.#last && this.#endsAfter?.(this.#last)) this.#ended = true;
    else if (this.#next < this.#events.size) {
      const value = this.#events.at(this.#next++);
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
