import type { ServerResponse } from 'node:http';
import { isTerminalEvent, type RunEvent } from '../runtime/run-events.js';
import { eventFrame, openEventStream } from './event-stream.js';

// The frame of the last event written. Every subscriber of a run is handed the same event object
// in the same turn, so this one entry serialises it once for all of them; a WeakMap entry and a
// Buffer copy per event cost more than the serialisation (and the WeakMap's entries slow the
// garbage collector), and a string goes to the socket without a copy in JavaScript.
let lastEvent: RunEvent | undefined;
let lastFrame = '';

/**
 * The SSE frame of an event: `id: <seq>`, `event: <Name>`, and the JSON (which has `event` too) on
 * one `data:` line.
 */
export function sseFrame(event: RunEvent): string {
  if (event !== lastEvent) {
    lastFrame = eventFrame({ id: event.seq, event: event.event, data: JSON.stringify(event) });
    lastEvent = event;
  }
  return lastFrame;
}

/** Options of {@link sendEventStream}. */
export interface EventStreamOptions {
  /** A `: ping` comment is sent when nothing else was written for this long. */
  heartbeatMs: number;
  /** Called once when the client goes away before the terminal event was written. */
  onClientGone?: (() => void) | undefined;
  /**
   * Awaited before the terminal event is written: the run's final record is stored, so that a
   * client that saw the end reads the run final on every instance (see `orchestrator.result`).
   */
  beforeEnd?: (() => Promise<unknown>) | undefined;
}

/** How an event stream ended. */
export type EventStreamEnd = 'completed' | 'client_gone';

const GONE = Symbol('gone');

/**
 * Writes run events to `res` as a server-sent event stream, then ends it: after the terminal
 * event, when the events run out, or when the client goes away (then `onClientGone` runs, once).
 * Waits for `drain` whenever the socket buffer is full, so a slow client holds the stream back
 * instead of filling the server's memory.
 */
export async function sendEventStream(
  res: ServerResponse,
  events: AsyncIterable<RunEvent>,
  { heartbeatMs, onClientGone, beforeEnd }: EventStreamOptions,
): Promise<EventStreamEnd> {
  const stream = openEventStream(res, { heartbeatMs });
  let wakeOnGone: ((value: typeof GONE) => void) | undefined;
  const removeGoneListener = stream.onClientGone(() => wakeOnGone?.(GONE));

  const iterator = events[Symbol.asyncIterator]();
  let outcome: EventStreamEnd = 'completed';
  try {
    while (!stream.over) {
      // A new promise per wait (not `Promise.race` with one long-lived promise, which keeps a
      // reaction per event until the stream ends).
      const next = await new Promise<IteratorResult<RunEvent> | typeof GONE>((resolve, reject) => {
        wakeOnGone = resolve;
        iterator.next().then(resolve, reject);
      });
      wakeOnGone = undefined;
      if (next === GONE || next.done) break;
      const terminal = isTerminalEvent(next.value);
      if (terminal && beforeEnd) await beforeEnd();
      const flushed = stream.write(sseFrame(next.value));
      if (terminal) break;
      if (!flushed && !(await stream.drained())) break;
    }
    // Over before the terminal event, and not because the events ran out: the client went away.
    if (stream.over) outcome = 'client_gone';
  } finally {
    removeGoneListener();
    stream.end();
  }
  if (outcome === 'client_gone') {
    onClientGone?.();
    // The reader may be parked waiting for the run's next event; let it go when that comes.
    iterator.return?.().catch(() => undefined);
  }
  return outcome;
}
