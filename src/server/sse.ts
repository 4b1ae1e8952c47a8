import type { ServerResponse } from 'node:http';
import { isTerminalEvent, type RunEvent } from '../runtime/run-events.js';

/**
 * Headers of an event stream. `no-transform` and `X-Accel-Buffering: no` stop proxies (nginx,
 * compression middleware) from buffering the stream, which would hold tokens back.
 */
export const SSE_HEADERS = {
  'Content-Type': 'text/event-stream',
  'Cache-Control': 'no-cache, no-transform',
  'X-Accel-Buffering': 'no',
  Connection: 'keep-alive',
} as const;

const HEARTBEAT = Buffer.from(': ping\n\n');

// Every subscriber of a run gets the same event objects from its log, so each is serialised once.
const frames = new WeakMap<RunEvent, Buffer>();

/**
 * The SSE frame of an event: `id: <seq>`, `event: <Name>`, and the JSON (which has `event` too) on
 * one `data:` line, since clients such as Agno's Agent UI scan the body for whole JSON objects.
 * `JSON.stringify` escapes line breaks, so the JSON is always one line.
 */
export function sseFrame(event: RunEvent): Buffer {
  let frame = frames.get(event);
  if (!frame) {
    frame = Buffer.from(`id: ${event.seq}\nevent: ${event.event}\ndata: ${JSON.stringify(event)}\n\n`);
    frames.set(event, frame);
  }
  return frame;
}

/** Options of {@link sendEventStream}. */
export interface EventStreamOptions {
  /** A `: ping` comment is sent when nothing else was written for this long. */
  heartbeatMs: number;
  /** Called once when the client goes away before the terminal event was written. */
  onClientGone?: () => void;
}

/** How an event stream ended. */
export type EventStreamEnd = 'completed' | 'client_gone';

const GONE = Symbol('gone');

/**
 * Writes run events to `res` as a server-sent event stream, then ends it: after the terminal
 * event, when the events run out, or when the client goes away (then `onClientGone` runs, once).
 * Waits for `drain` whenever `write()` says the socket buffer is full, so a slow client holds the
 * stream back instead of filling the server's memory.
 */
export async function sendEventStream(
  res: ServerResponse,
  events: AsyncIterable<RunEvent>,
  { heartbeatMs, onClientGone }: EventStreamOptions,
): Promise<EventStreamEnd> {
  res.writeHead(200, SSE_HEADERS);
  // Send the headers now: the client knows the run was accepted before the first token.
  res.flushHeaders();

  let ended = false;
  let gone = false;
  const clientGone = () => {
    if (gone) return;
    gone = true;
    onClientGone?.();
  };
  let wakeOnClose: ((value: typeof GONE) => void) | undefined;
  res.once('close', () => {
    if (!ended) clientGone();
    wakeOnClose?.(GONE);
  });

  let quiet = true;
  const heartbeat = setInterval(() => {
    if (quiet && !res.writableNeedDrain && !res.destroyed) res.write(HEARTBEAT);
    quiet = true;
  }, heartbeatMs);
  // The socket keeps the process alive while the stream is open; the timer need not.
  heartbeat.unref();

  const iterator = events[Symbol.asyncIterator]();
  let outcome: EventStreamEnd = 'completed';
  try {
    for (;;) {
      if (res.destroyed) {
        outcome = 'client_gone';
        break;
      }
      // A new promise per wait (not `Promise.race` with one long-lived close promise, which keeps
      // a reaction per event until the stream ends).
      const next = await new Promise<IteratorResult<RunEvent> | typeof GONE>((resolve, reject) => {
        wakeOnClose = resolve;
        iterator.next().then(resolve, reject);
      });
      wakeOnClose = undefined;
      if (next === GONE) {
        outcome = 'client_gone';
        break;
      }
      if (next.done) break;
      quiet = false;
      const flushed = res.write(sseFrame(next.value));
      if (isTerminalEvent(next.value)) break;
      if (!flushed && !(await drained(res))) {
        outcome = 'client_gone';
        break;
      }
    }
  } finally {
    clearInterval(heartbeat);
    ended = true;
    if (!res.destroyed) res.end();
  }
  if (outcome === 'client_gone') {
    clientGone();
    // The reader may be parked waiting for the run's next event; let it go when that comes.
    iterator.return?.().catch(() => undefined);
  }
  return outcome;
}

/** Resolves `true` on `drain`, `false` if the response closes first. */
function drained(res: ServerResponse): Promise<boolean> {
  if (res.destroyed) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      res.off('drain', onDrain);
      res.off('close', onClose);
      resolve(ok);
    };
    const onDrain = () => done(true);
    const onClose = () => done(false);
    res.on('drain', onDrain);
    res.on('close', onClose);
  });
}
