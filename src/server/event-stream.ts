/**
 * The one server-sent-events primitive: headers, framing, heartbeat, backpressure, end once. The
 * run stream and the inspector feed are thin uses of it.
 *
 * It imports node types only, never express: the inspector (part of the `runstate` library, usable
 * with plain node:http) uses it as well as the server.
 *
 * @packageDocumentation
 */
import { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Writable } from 'node:stream';
import { clampDelay } from '../../machines/run.machine.js';

/**
 * Headers of an event stream. `no-transform` and `X-Accel-Buffering: no` stop proxies (nginx,
 * compression middleware) from buffering the stream, which would hold events back. No
 * `Connection`: Node says `keep-alive` or `close` as the request allows; set here, it would keep
 * the connection of a client that asked for `close` open after the stream (RFC 9112 §9.6).
 */
export const EVENT_STREAM_HEADERS = {
  // Always UTF-8: the SSE format allows no other encoding, so no charset parameter is needed.
  'Content-Type': 'text/event-stream',
  'Cache-Control': 'no-cache, no-transform',
  'X-Accel-Buffering': 'no',
} as const;

const HEARTBEAT = ': ping\n\n';

/** One server-sent event. */
export interface EventFrame {
  /** The `id:` line (what `Last-Event-ID` sends back on reconnect); none when absent. */
  id?: string | number;
  /** The `event:` line. */
  event: string;
  /** The `data:` line: one line of text (JSON, whose `stringify` escapes line breaks). */
  data: string;
}

/**
 * The characters besides CR and LF that some line readers take for a line break (Python's
 * `str.splitlines`, which Agno's client reads a stream with through httpx): JSON leaves them raw in
 * its strings, where they are written `\uXXXX` instead, which means the same.
 */
const OTHER_LINE_BREAK = /[\u0085\u2028\u2029]/;
const OTHER_LINE_BREAKS = /[\u0085\u2028\u2029]/g;
const escapeLineBreak = (char: string): string => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`;

/**
 * The text of one frame. `data` is written on one `data:` line, since clients such as Agno's Agent
 * UI scan the body for whole JSON objects; it must not hold a line break (CR or LF). JSON text may
 * hold U+0085, U+2028 and U+2029 only in strings: those are escaped.
 */
export function eventFrame({ id, event, data }: EventFrame): string {
  const line = OTHER_LINE_BREAK.test(data) ? data.replace(OTHER_LINE_BREAKS, escapeLineBreak) : data;
  return `${id === undefined ? '' : `id: ${id}\n`}event: ${event}\ndata: ${line}\n\n`;
}

/** Options of {@link openEventStream}. */
export interface OpenEventStreamOptions {
  /** A `: ping` comment is sent once nothing else was written for this long, so proxies keep it open. */
  heartbeatMs: number;
  /** Sent first as `retry: <ms>`: how long a browser's EventSource waits before it reconnects. */
  retryMs?: number;
}

/** An open event stream on one response. Create it with {@link openEventStream}. */
export interface EventStream {
  /**
   * Writes a frame (see {@link eventFrame}). `false`: the socket's buffer is full; write nothing
   * more before {@link EventStream.drained} resolves, or a slow client fills the server's memory.
   * Ignored once the stream is over.
   */
  write(frame: string | Buffer): boolean;
  /**
   * Resolves `true` once the buffer drained, `false` if the stream is over first. Never within the
   * `write()` that filled it: `drain` comes from the socket, so waiting for it always yields.
   */
  drained(): Promise<boolean>;
  /** True once the stream ended or its client went away. */
  readonly over: boolean;
  /**
   * Calls `listener` once when the client goes away before {@link EventStream.end} (never after
   * it). Returns a function that removes the listener.
   */
  onClientGone(listener: () => void): () => void;
  /** Ends the response, stops the heartbeat; calling it again does nothing. */
  end(): void;
}

/**
 * Starts an event stream on `res`: writes the headers in this tick (the client learns that it was
 * accepted before the first event), keeps it alive with heartbeats, and ends it exactly once. The
 * stream of a `HEAD` request is over at once, its headers sent.
 */
export function openEventStream(res: ServerResponse, options: OpenEventStreamOptions): EventStream {
  // Corked, the headers wait for the frames of this tick: they leave in one socket write.
  const socket = res.socket;
  // (A stand-in response may have no `socket` at all.)
  const corked = !!socket && !socket.writableCorked && canOwnSocket(res);
  if (corked) socket.cork();
  res.writeHead(200, EVENT_STREAM_HEADERS);
  if (options.retryMs === undefined) res.flushHeaders();
  else res.write(`retry: ${options.retryMs}\n\n`);

  const writer = ownsChunkedSocket(res) ? new TickWriter(socket!, res, corked) : undefined;
  if (corked && !writer) process.nextTick(uncork, socket);
  const send = writer ? (frame: string | Buffer) => writer.write(frame) : res.write.bind(res);
  // Whatever is written ends up in the socket's buffer: its `drain` is the one to wait for.
  const drainer: Pick<Writable, 'writableNeedDrain' | 'on' | 'off'> = socket && writer ? socket : res;
  let over = false;
  // When something was last written: a ping goes out once the stream was quiet for `heartbeatMs`,
  // exactly, whenever in the timer's period the last frame came. (A flag reset at each tick of an
  // interval would let up to twice that pass.) One timer, armed again only when it fires.
  let lastWrite = performance.now();
  // A longer period (`Infinity`) is as long as a timer holds, not a ping a turn.
  const heartbeatMs = clampDelay(options.heartbeatMs);
  const goneListeners = new Set<() => void>();
  const beat = () => {
    const quietFor = performance.now() - lastWrite;
    if (quietFor >= heartbeatMs) {
      // A full buffer is not a quiet connection: the client still has bytes coming.
      if (!drainer.writableNeedDrain && !res.destroyed) send(HEARTBEAT);
      lastWrite = performance.now();
    }
    heartbeat = setTimeout(beat, Math.ceil(lastWrite + heartbeatMs - performance.now()));
    // The socket keeps the process alive while the stream is open; the timer need not.
    heartbeat.unref();
  };
  let heartbeat = setTimeout(beat, heartbeatMs);
  heartbeat.unref();

  const finish = (): boolean => {
    if (over) return false;
    over = true;
    clearTimeout(heartbeat);
    return true;
  };
  res.once('close', () => {
    if (!finish()) return;
    writer?.drop();
    const listeners = [...goneListeners];
    goneListeners.clear();
    for (const listener of listeners) listener();
  });

  const stream: EventStream = {
    write(frame) {
      if (over || res.destroyed) return false;
      lastWrite = performance.now();
      return send(frame);
    },
    drained() {
      if (over || res.destroyed) return Promise.resolve(false);
      if (!drainer.writableNeedDrain) return Promise.resolve(true);
      return new Promise((resolve) => {
        const done = (ok: boolean) => {
          drainer.off('drain', onDrain);
          res.off('close', onClose);
          resolve(ok);
        };
        const onDrain = () => done(true);
        const onClose = () => done(false);
        drainer.on('drain', onDrain);
        res.on('close', onClose);
      });
    },
    get over() {
      return over || res.destroyed;
    },
    onClientGone(listener) {
      if (over) return () => undefined;
      goneListeners.add(listener);
      return () => goneListeners.delete(listener);
    },
    end() {
      if (!finish()) return;
      goneListeners.clear();
      if (res.destroyed) writer?.drop();
      else if (writer) writer.end();
      else res.end();
    },
  };
  // A HEAD request is answered with the headers only: held open, it would tie up its connection
  // (and every request queued behind it) until the stream ended.
  if (res.req?.method === 'HEAD') stream.end();
  return stream;
}

const uncork = (socket: Socket): void => socket.uncork();

/**
 * Whether frames may go to the socket of `res` directly (see {@link ownsChunkedSocket}), as far as
 * can be told before the headers are written: a plain `ServerResponse` (a `write` wrapped by
 * middleware, such as compression, must see every frame) that is not waiting behind an earlier
 * response on a pipelined connection (its socket is not its own yet).
 */
function canOwnSocket(res: ServerResponse): boolean {
  return res.write === ServerResponse.prototype.write && !res.headersSent && queuedOutput(res) === 0;
}

/** Node's own queue of what a response could not hand to its socket yet (-1: not a plain response). */
function queuedOutput(res: ServerResponse): number {
  const queued = (res as unknown as { outputData?: unknown[] }).outputData;
  return Array.isArray(queued) ? queued.length : -1;
}

/**
 * Whether the headers of `res` are out and its body is chunked, so that frames may be written to
 * its socket directly; otherwise they go through `res.write`.
 *
 * Why: for each write of a chunked body, Node corks the socket, queues the chunk's size line, the
 * data and two CRLFs, and sends the four with one `writev` on the next tick. An event stream writes
 * small frames (a paced model streams one token per socket read), and that bookkeeping was a good
 * part of the server's cost per event; {@link TickWriter} frames the chunks itself. Only for a plain
 * `ServerResponse` (see {@link canOwnSocket}); HTTP/1.0 and HEAD responses are not chunked.
 */
function ownsChunkedSocket(res: ServerResponse): boolean {
  if (!res.socket || res.write !== ServerResponse.prototype.write || !res.headersSent) return false;
  if ((res as { chunkedEncoding?: boolean }).chunkedEncoding !== true) return false;
  // Anything in Node's queue must go first.
  return queuedOutput(res) === 0;
}

/** The writers with text to write at the end of this tick; one `nextTick` flushes them all. */
let unflushed: TickWriter[] = [];

function flushTick(): void {
  const writers = unflushed;
  unflushed = [];
  for (const writer of writers) writer.flush();
}

/**
 * The frames of one stream written in one tick, sent as one HTTP chunk in one socket write at the
 * end of the tick (the first with the headers, the last with the end of the body). A socket write
 * is a system call, and the events of one run may come several to a tick (the run's own events
 * next to a delta, a replay from `Last-Event-ID`); the end of the tick keeps the latency: the frames
 * go out before the process waits for I/O again. Past the socket's high-water mark the text is written at once,
 * so that `write()` reports a full buffer as the socket does: a tick never holds more than that.
 */
class TickWriter {
  readonly #socket: Socket;
  readonly #res: ServerResponse;
  /** Text of this tick not written yet, and its size in bytes. */
  #text = '';
  #bytes = 0;
  /** Corked by {@link openEventStream} so that the headers wait for this tick's frames. */
  #corked: boolean;
  #queued = false;
  #done = false;

  constructor(socket: Socket, res: ServerResponse, corked: boolean) {
    this.#socket = socket;
    this.#res = res;
    this.#corked = corked;
    if (corked) this.#queue();
  }

  write(frame: string | Buffer): boolean {
    if (this.#done) return false;
    // A Buffer (rare: the inspector and the run stream write strings) keeps Node's own framing,
    // after what this tick wrote so far.
    if (typeof frame !== 'string') {
      this.#writeOut();
      return this.#res.write(frame);
    }
    const bytes = Buffer.byteLength(frame);
    // (An empty chunk would end the body.)
    if (bytes === 0) return !this.#socket.writableNeedDrain;
    // One frame in a tick, the common case: `'' + frame` is `frame`, no copy.
    this.#text += frame;
    this.#bytes += bytes;
    if (this.#bytes >= this.#socket.writableHighWaterMark) return this.#writeOut();
    this.#queue();
    return !this.#socket.writableNeedDrain;
  }

  /** At the end of the tick: the text as one chunk, and the headers with it the first time. */
  flush(): void {
    this.#queued = false;
    if (this.#done) return;
    this.#writeOut();
    if (this.#corked) {
      this.#corked = false;
      this.#socket.uncork();
    }
  }

  /** Ends the response, with the text of this tick in the same socket write. */
  end(): void {
    if (this.#done) return;
    this.#done = true;
    const text = this.#text;
    this.#text = '';
    this.#bytes = 0;
    // `end` fully uncorks the socket: our cork, if still there, goes with it.
    this.#corked = false;
    if (text === '') this.#res.end();
    else this.#res.end(text);
  }

  /** The client went away: nothing more is written. */
  drop(): void {
    this.#done = true;
    this.#text = '';
    this.#bytes = 0;
    if (this.#corked) {
      this.#corked = false;
      this.#socket.uncork();
    }
  }

  #queue(): void {
    if (this.#queued) return;
    this.#queued = true;
    if (unflushed.push(this) === 1) process.nextTick(flushTick);
  }

  /** One chunk (size in hex, CRLF, data, CRLF) in one socket write. */
  #writeOut(): boolean {
    if (this.#bytes === 0) return !this.#socket.writableNeedDrain;
    const chunk = `${this.#bytes.toString(16)}\r\n${this.#text}\r\n`;
    this.#text = '';
    this.#bytes = 0;
    // Destroyed within the tick, before the response's `close` came: nothing to write to.
    return !this.#socket.destroyed && this.#socket.write(chunk);
  }
}
