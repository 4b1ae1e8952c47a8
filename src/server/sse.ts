import type { ServerResponse } from 'node:http';
import { isTerminalEvent, type RunEvent } from '../runtime/run-events.js';
import { isListenable, type ListenableEvents } from '../runtime/event-log.js';
import { eventFrame, openEventStream, type EventStream } from './event-stream.js';

// The frame of the last event written. Every subscriber of a run is handed the same event object
// in the same turn, so this one entry serialises it once for all of them; a WeakMap entry and a
// Buffer copy per event cost more than the serialisation (and the WeakMap's entries slow the
// garbage collector), and a string goes to the socket without a copy in JavaScript.
let lastEvent: RunEvent | undefined;
let lastFrame = '';

/**
 * The SSE frame of an event: `id: <seq>`, `event: <Name>`, and the JSON (which has `event` too) on
 * one `data:` line.
 *
 * @example
 * ```ts
 * for await (const event of agent.run('Hi', { stream: true })) res.write(sseFrame(event));
 * // id: 1\nevent: RunStarted\ndata: {"event":"RunStarted",...}\n\n
 * ```
 */
export function sseFrame(event: RunEvent): string {
  if (event !== lastEvent) {
    lastFrame = eventFrame({ id: event.seq, event: event.event, data: JSON.stringify(event) });
    lastEvent = event;
  }
  return lastFrame;
}

let lastIndexedEvent: RunEvent | undefined;
let lastIndexedFrame = '';

/**
 * The SSE frame of an event of a resumable stream (AgentOS's `background` streams and `/resume`):
 * as {@link sseFrame}, its JSON with `event_index` too, the 0-based index AgentOS's clients send
 * back as `last_event_index` (`seq - 1`).
 */
export function indexedFrame(event: RunEvent): string {
  if (event !== lastIndexedEvent) {
    const data = JSON.stringify({ ...event, event_index: event.seq - 1 });
    lastIndexedFrame = eventFrame({ id: event.seq, event: event.event, data });
    lastIndexedEvent = event;
  }
  return lastIndexedFrame;
}

/** Options of {@link sendEventStream}. */
export interface EventStreamOptions {
  /** The frame of an event: {@link sseFrame} unless told otherwise ({@link indexedFrame}). */
  frame?: ((event: RunEvent) => string) | undefined;
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

/**
 * Writes run events to `res` as a server-sent event stream, then ends it: after the terminal
 * event, when the events run out, or when the client goes away (then `onClientGone` runs, once).
 * Waits for `drain` whenever the socket buffer is full, so a slow client holds the stream back
 * instead of filling the server's memory.
 *
 * The events of a run this process holds are written as they are appended, with no promise per
 * event ({@link ListenableEvents}); any other source (a run followed from the store) is iterated.
 *
 * @example
 * ```ts
 * // A route of your own that streams a run of the orchestrator's, as runstate's events route does.
 * app.get('/my/runs/:id/events', async (req, res) => {
 *   const events = await orchestrator.events(req.params.id);
 *   await sendEventStream(res, events, { heartbeatMs: 15_000 });
 * });
 * ```
 */
export async function sendEventStream(
  res: ServerResponse,
  events: AsyncIterable<RunEvent>,
  options: EventStreamOptions,
): Promise<EventStreamEnd> {
  const stream = openEventStream(res, { heartbeatMs: options.heartbeatMs });
  const iterator = events[Symbol.asyncIterator]();
  let outcome: EventStreamEnd = 'completed';
  try {
    // A HEAD request got the headers only (`openEventStream`): no event is read for it.
    if (res.req?.method !== 'HEAD') {
      if (isListenable(iterator)) await writePushed(stream, iterator, options);
      else await writePulled(stream, iterator, options);
      // Over before the terminal event, and not because the events ran out: the client went away.
      if (stream.over) outcome = 'client_gone';
    }
  } catch (error) {
    // The events failed (a follower's store out of reach for good): ended cleanly, the stream would
    // look complete to its client; cut, it is an error (and a browser's EventSource reconnects).
    res.destroy();
    throw error;
  } finally {
    stream.end();
    // However the stream ended, the events are read no more: a reader of the store keeps a bus
    // subscription until its `finally` runs (after the terminal event it waits at its `yield`), and
    // a reader parked waiting for the run's next event is let go when that comes.
    iterator.return?.().catch(() => undefined);
  }
  if (outcome === 'client_gone') options.onClientGone?.();
  return outcome;
}

/** Why {@link writePushed} stopped listening. */
type Pause =
  { why: 'end' } | { why: 'full' } | { why: 'terminal'; event: RunEvent } | { why: 'failed'; error: unknown };

/**
 * Writes each event in the call that appends it, until something must be waited for: a full
 * socket (then `drain`), the terminal event (written once `beforeEnd` resolved), the end of the
 * events or the client.
 */
async function writePushed(
  stream: EventStream,
  events: ListenableEvents,
  { beforeEnd, frame = sseFrame }: EventStreamOptions,
): Promise<void> {
  let stopListening: (() => void) | undefined;
  let wake: ((pause: Pause) => void) | undefined;
  const removeGoneListener = stream.onClientGone(() => {
    stopListening?.();
    wake?.({ why: 'end' });
  });
  try {
    while (!stream.over) {
      const pause = await new Promise<Pause>((resolve) => {
        wake = resolve;
        // Resolves the wait and stops listening.
        const stop = (why: Pause): false => {
          resolve(why);
          return false;
        };
        stopListening = events.listen((event) => {
          try {
            if (!event) return stop({ why: 'end' });
            const terminal = isTerminalEvent(event);
            if (terminal && beforeEnd) return stop({ why: 'terminal', event });
            const flushed = stream.write(frame(event));
            if (terminal) return stop({ why: 'end' });
            return flushed || stop({ why: 'full' });
          } catch (error) {
            // Called from the run's append: a throw must not reach the run.
            return stop({ why: 'failed', error });
          }
        });
      });
      stopListening = undefined;
      wake = undefined;
      if (pause.why === 'failed') throw pause.error;
      if (pause.why === 'end') return;
      if (pause.why === 'terminal') {
        await beforeEnd!();
        stream.write(frame(pause.event));
        return;
      }
      if (!(await stream.drained())) return;
    }
  } finally {
    stopListening?.();
    removeGoneListener();
  }
}

const GONE = Symbol('gone');

/** Reads the events one `next()` at a time (a source that cannot push), written as they come. */
async function writePulled(
  stream: EventStream,
  iterator: AsyncIterator<RunEvent>,
  { beforeEnd, frame = sseFrame }: EventStreamOptions,
): Promise<void> {
  let wakeOnGone: ((value: typeof GONE) => void) | undefined;
  const removeGoneListener = stream.onClientGone(() => wakeOnGone?.(GONE));
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
      const flushed = stream.write(frame(next.value));
      if (terminal) break;
      if (!flushed && !(await stream.drained())) break;
    }
  } finally {
    removeGoneListener();
  }
}
