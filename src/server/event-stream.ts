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

/**
 * Headers of an event stream. `no-transform` and `X-Accel-Buffering: no` stop proxies (nginx,
 * compression middleware) from buffering the stream, which would hold events back.
 */
export const EVENT_STREAM_HEADERS = {
  // Always UTF-8: the SSE format allows no other encoding, so no charset parameter is needed.
  'Content-Type': 'text/event-stream',
  'Cache-Control': 'no-cache, no-transform',
  'X-Accel-Buffering': 'no',
  Connection: 'keep-alive',
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
 * The text of one frame. `data` is written on one `data:` line, since clients such as Agno's Agent
 * UI scan the body for whole JSON objects; it must not hold a line break.
 */
export function eventFrame({ id, event, data }: EventFrame): string {
  return `${id === undefined ? '' : `id: ${id}\n`}event: ${event}\ndata: ${data}\n\n`;
}

/** Options of {@link openEventStream}. */
export interface OpenEventStreamOptions {
  /** A `: ping` comment is sent when nothing else was written for this long, so proxies keep it open. */
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
 * Starts an event stream on `res`: writes the headers at once (the client learns that it was
 * accepted before the first event), keeps it alive with heartbeats, and ends it exactly once.
 */
export function openEventStream(res: ServerResponse, options: OpenEventStreamOptions): EventStream {
  res.writeHead(200, EVENT_STREAM_HEADERS);
  if (options.retryMs === undefined) res.flushHeaders();
  else res.write(`retry: ${options.retryMs}\n\n`);

  const socket = ownChunkedSocket(res);
  const send = socket ? (frame: string | Buffer) => writeChunk(socket, res, frame) : res.write.bind(res);
  // Whatever is written ends up in the socket's buffer: its `drain` is the one to wait for.
  const drainer: Pick<Writable, 'writableNeedDrain' | 'on' | 'off'> = socket ?? res;
  let over = false;
  let quiet = true;
  const goneListeners = new Set<() => void>();
  const heartbeat = setInterval(() => {
    if (quiet && !drainer.writableNeedDrain && !res.destroyed) send(HEARTBEAT);
    quiet = true;
  }, options.heartbeatMs);
  // The socket keeps the process alive while the stream is open; the timer need not.
  heartbeat.unref();

  const finish = (): boolean => {
    if (over) return false;
    over = true;
    clearInterval(heartbeat);
    return true;
  };
  res.once('close', () => {
    if (!finish()) return;
    const listeners = [...goneListeners];
    goneListeners.clear();
    for (const listener of listeners) listener();
  });

  return {
    write(frame) {
      if (over || res.destroyed) return false;
      quiet = false;
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
      if (!res.destroyed) res.end();
    },
  };
}

/**
 * The socket of a response whose headers are out and whose body is chunked, when frames may be
 * written to it directly; otherwise `undefined`, and they go through `res.write`.
 *
 * Why: for each write of a chunked body, Node corks the socket, queues the chunk's size line, the
 * data and two CRLFs, and sends the four with one `writev` on the next tick. An event stream writes
 * one small frame per event (a paced model streams one token per socket read), and that bookkeeping
 * was a good part of the server's cost per event; {@link writeChunk} frames the chunk itself and
 * makes one write. Only for a plain `ServerResponse`: a `write` wrapped by middleware (compression)
 * must see every frame, HTTP/1.0 and HEAD responses are not chunked, and a response waiting behind
 * an earlier one on a pipelined connection does not own its socket yet (its headers are queued).
 */
function ownChunkedSocket(res: ServerResponse): Socket | undefined {
  const socket = res.socket;
  if (!socket || res.write !== ServerResponse.prototype.write || !res.headersSent) return undefined;
  if ((res as { chunkedEncoding?: boolean }).chunkedEncoding !== true) return undefined;
  // Node's own queue of what it could not hand to the socket yet: anything there must go first.
  const queued = (res as unknown as { outputData?: unknown[] }).outputData;
  return Array.isArray(queued) && queued.length === 0 ? socket : undefined;
}

/** One frame as one HTTP chunk (size in hex, CRLF, data, CRLF) in one socket write. */
function writeChunk(socket: Socket, res: ServerResponse, frame: string | Buffer): boolean {
  // A Buffer (rare: the inspector and the run stream write strings) keeps Node's own framing.
  if (typeof frame !== 'string') return res.write(frame);
  const size = Buffer.byteLength(frame);
  // An empty chunk would end the body.
  if (size === 0) return !socket.writableNeedDrain;
  return socket.write(`${size.toString(16)}\r\n${frame}\r\n`);
}
