import { createParser, type EventSourceParser } from 'eventsource-parser';
import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import type OpenAI from 'openai';
import { reasonOf } from './chat-completion-chunk.js';
import { nodeBodyOf } from './node-http-fetch.js';
import { PushedIterator } from './pushed-iterator.js';

/**
 * One event of a streamed chat completion, as the server sent it: a chunk, or (from servers that
 * report a failure inside the stream) an object with an `error`. Nothing is checked or copied.
 */
export type ChatCompletionEvent = OpenAI.Chat.Completions.ChatCompletionChunk & {
  error?: unknown;
  /** Groq's: the usage of the stream, in its last chunk, also when the request did not ask for it. */
  x_groq?: { usage?: OpenAI.CompletionUsage | null } | null;
};

/** Where {@link pushChatCompletionEvents} hands the events of a body. */
export interface ChatCompletionEventSink {
  /** An event, parsed, in the tick its bytes were read (no promise between the socket and here). */
  event(event: ChatCompletionEvent): void;
  /**
   * The events are over; called once, and nothing follows. No `error` at `data: [DONE]` (then
   * `done` is true) or at the end of the body (the caller judges whether what came was complete);
   * else why the body failed, as fetch reports it (a `TypeError` whose `cause` says why: a reset, an
   * abort of the request's signal), or a `SyntaxError` for an event that is not a JSON object.
   */
  close(error?: unknown, done?: boolean): void;
}

/** The reading of one body (see {@link pushChatCompletionEvents}). */
export interface ChatCompletionReading {
  /** Stops reading: closes the socket; nothing more reaches the sink, not even `close`. */
  stop(): void;
  /** Holds reads back (what the server sends waits in the socket) until {@link resume}. */
  pause(): void;
  resume(): void;
}

/**
 * Reads the events of a streamed chat-completions response body, one `JSON.parse` each, and pushes
 * them to `sink` as the bytes are read: the openai SDK builds and sends the request (auth, headers,
 * HTTP errors), and this reads its `asResponse()` body in place of the SDK's `Stream`, whose three
 * nested async generators cost more per chunk than the parsing does (docs/performance.md). A
 * response of `nodeHttpFetch` (what `OpenAIChat` sends with) is read as its node stream, each
 * `data` event fed to `eventsource-parser` at once; any other, as its web body.
 *
 * The events end at `data: [DONE]` or at the end of the body. At `[DONE]` a body the server keeps
 * open (some do) is closed, and one it ended in the same read is let end, so that its socket goes
 * back to the keep-alive pool.
 */
export function pushChatCompletionEvents(
  response: Response,
  sink: ChatCompletionEventSink,
): ChatCompletionReading {
  const reader = new EventReader(sink);
  const node = nodeBodyOf(response);
  if (node) reader.body = nodeBody(node, reader);
  else if (response.body) reader.body = webBody(response.body, reader);
  else throw new TypeError('the response has no body');
  return reader;
}

/**
 * The events of a body as an async iterator (the pull form of {@link pushChatCompletionEvents}):
 * `next()` rejects with what `close` would be given, after the events read before it. `return()`
 * (a `for await` left early) closes the socket. While many events wait for a slow consumer, the
 * socket is not read.
 *
 * @example
 * ```ts
 * const response = await client.chat.completions.create(body, { signal }).asResponse();
 * for await (const event of readChatCompletionStream(response)) {
 *   if (event.error) throw new Error('the server failed mid-stream');
 *   process.stdout.write(event.choices[0]?.delta.content ?? '');
 * }
 * ```
 */
export function readChatCompletionStream(
  response: Response,
): AsyncIterableIterator<ChatCompletionEvent, undefined> {
  const events = new PushedIterator<ChatCompletionEvent>();
  events.source = pushChatCompletionEvents(response, {
    event: (event) => events.push(event),
    close: (error) => events.close(error),
  });
  return events;
}

/**
 * An event whose data is not a JSON object (`data: {oops`, `data: null`): the server does not speak
 * the protocol, and sending the request again would not change that.
 */
export class MalformedEventError extends SyntaxError {
  override name = 'MalformedEventError';
}

/** One `JSON.parse`, and a {@link MalformedEventError} naming what came when it is not an object. */
function parseEvent(data: string): ChatCompletionEvent {
  let event: unknown;
  try {
    event = JSON.parse(data);
  } catch (error) {
    throw malformed(data, error);
  }
  // (An array is an object too; it has no `choices` or `error`, so it reads as an empty chunk.)
  if (typeof event !== 'object' || event === null) throw malformed(data);
  return event as ChatCompletionEvent;
}

function malformed(data: string, cause?: unknown): MalformedEventError {
  const shown = data.length > 80 ? `${data.slice(0, 80)}…` : data;
  return new MalformedEventError(
    `the model server sent an event that is not a JSON object: data: ${shown}`,
    cause === undefined ? undefined : { cause },
  );
}

/**
 * An `event: error` (some servers and proxies name their failures so, with an `error` object or
 * with the reason itself as the data), as the error object {@link readChunk} reports.
 */
function errorEvent(data: string): ChatCompletionEvent {
  let parsed: unknown;
  try {
    parsed = JSON.parse(data);
  } catch {
    parsed = data;
  }
  const error = (parsed as { error?: unknown } | null)?.error;
  return { error: error ?? parsed } as ChatCompletionEvent;
}

function tooLong(): MalformedEventError {
  return new MalformedEventError(
    `the model server sent an event or a line over ${MAX_EVENT_CHARS / (1 << 20)} MiB: not a chat-completions event stream (is the base URL right?)`,
  );
}

/** Whether a body that held no event still speaks the protocol (comments, keep-alives). */
function looksLikeEvents(text: string): boolean {
  return text.trim() === '' || /^\s*(?::|data:|event:|id:|retry:)/.test(text);
}

/** A 200 whose body is no event stream (a web page at a wrong `baseURL`), named for what it is. */
function notAnEventStream(text: string): MalformedEventError {
  return new MalformedEventError(
    `the model server answered with a body that is not an event stream (is the base URL right?): ${reasonOf(text)}`,
  );
}

/**
 * The most characters of one event (or of one line not yet ended) held while it is read: a body
 * with no line break (a wrong `baseURL` serving a file, a broken proxy) would otherwise grow in
 * memory until the process runs out. Far above any chunk a model sends.
 */
export const MAX_EVENT_CHARS = 16 << 20;

/**
 * The most of a body without events kept to read it as one JSON answer: as much as one event may
 * hold, so that a whole answer sent despite `stream: true` is read whatever its length.
 */
const MAX_UNSTREAMED = MAX_EVENT_CHARS;

/** A body without events longer than {@link MAX_UNSTREAMED}, named for what it is. */
function tooLongToRead(): MalformedEventError {
  return new MalformedEventError(
    `the model server answered with over ${MAX_UNSTREAMED / (1 << 20)} MiB that holds no event: not a chat-completions event stream (is the base URL right?)`,
  );
}

/**
 * A 200 whose body held no event at all, read as one JSON answer, as some servers send one despite
 * `stream: true`: an error (`{"error": {...}}`, reported as one sent inside the stream would be), or
 * a whole `chat.completion`, handed on as one chunk whose delta is its message. `undefined` for
 * anything else (an empty body, text that is not JSON): the reading ends as it did.
 */
function unstreamedAnswer(text: string): ChatCompletionEvent | undefined {
  let answer: unknown;
  try {
    answer = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof answer !== 'object' || answer === null || Array.isArray(answer)) return undefined;
  const completion = answer as { choices?: unknown; error?: unknown };
  if (!Array.isArray(completion.choices)) {
    return completion.error === undefined ? undefined : (completion as ChatCompletionEvent);
  }
  const choices = (completion.choices as Array<Record<string, unknown>>).map((choice) =>
    choice.message === undefined ? choice : { ...choice, delta: choice.message },
  );
  return { ...completion, choices } as unknown as ChatCompletionEvent;
}

/** How a body is read: the node stream's or the web body's way. */
interface Body {
  /** Stops reading and closes the socket, now. */
  close(): void;
  /**
   * The events are over (`[DONE]`): a body that is complete ends on its own and its socket goes back
   * to the pool; one the server keeps open is closed.
   */
  release(): void;
  pause(): void;
  resume(): void;
}

class EventReader implements ChatCompletionReading {
  readonly #sink: ChatCompletionEventSink;
  readonly #parser: EventSourceParser;
  /** `[DONE]`, the end, a failure or a stop: nothing more is handed out. */
  #over = false;
  /** Whether an event came; until one does, the text read (see {@link unstreamedAnswer}). */
  #events = false;
  #unparsed = '';
  /** Whether text past {@link MAX_UNSTREAMED} was left out of {@link #unparsed}. */
  #unparsedCut = false;
  body: Body | undefined;

  constructor(sink: ChatCompletionEventSink) {
    this.#sink = sink;
    this.#parser = createParser({
      maxBufferSize: MAX_EVENT_CHARS,
      onError: (error) => {
        // Thrown into `feed`, which ends the reading with it; other parse errors (a bad `retry:`) are
        // not the chunks' business.
        if (error.type === 'max-buffer-size-exceeded') throw tooLong();
        // llama.cpp's server sends a failure as a line of a field of its own, `error: {...}` (then
        // `data: [DONE]`), which SSE does not know: it is the error it says, as `event: error` is.
        if (error.type === 'unknown-field' && error.field === 'error' && error.value) {
          if (this.#over) return;
          this.#eventCame();
          this.#sink.event(errorEvent(error.value));
        }
      },
      onEvent: ({ event, data }) => {
        // An event with empty data is not dispatched, says the SSE standard (a keep-alive).
        if (this.#over || data === '') return;
        this.#eventCame();
        if (event === 'error') this.#sink.event(errorEvent(data));
        else if (data !== '[DONE]') this.#sink.event(parseEvent(data));
        else {
          this.#over = true;
          this.body?.release();
          this.#sink.close(undefined, true);
        }
      },
    });
  }

  get over(): boolean {
    return this.#over;
  }

  /** An event came: the text read before it is no answer sent without a stream. */
  #eventCame(): void {
    if (this.#events) return;
    this.#events = true;
    this.#unparsed = '';
  }

  /** Text read from the body; an event that is not JSON ends the reading with its `SyntaxError`. */
  feed(text: string): void {
    if (this.#over) return;
    if (!this.#events) {
      // A byte order mark may open the body (.NET writes one); the SSE standard skips it.
      if (this.#unparsed === '' && text.charCodeAt(0) === 0xfeff) text = text.slice(1);
      // Kept until the first event: a body that turns out to hold none may be one JSON answer.
      if (this.#unparsed.length + text.length <= MAX_UNSTREAMED) this.#unparsed += text;
      else this.#unparsedCut = true;
    }
    try {
      this.#parser.feed(text);
    } catch (error) {
      this.stop();
      this.#sink.close(error);
    }
  }

  /** The body is over (ended, or failed with `error`): the sink is told, once. */
  ended(error?: unknown): void {
    if (this.#over) return;
    if (error === undefined && !this.#events) {
      try {
        const answer = this.#unparsedCut ? undefined : unstreamedAnswer(this.#unparsed);
        if (answer) this.#sink.event(answer);
        else if (!looksLikeEvents(this.#unparsed))
          error = this.#unparsedCut ? tooLongToRead() : notAnEventStream(this.#unparsed);
      } catch (thrown) {
        error = thrown;
      }
    }
    this.#over = true;
    this.#sink.close(error);
  }

  stop(): void {
    if (this.#over) return;
    this.#over = true;
    this.body?.close();
  }

  pause(): void {
    this.body?.pause();
  }

  resume(): void {
    this.body?.resume();
  }
}

/** A node stream (from `nodeHttpFetch`): every `data` event is fed as it comes. */
function nodeBody(stream: Readable, reader: EventReader): Body {
  let ended = false;
  stream.setEncoding('utf8');
  stream.on('data', (text: string) => reader.feed(text));
  stream.once('end', () => {
    ended = true;
    reader.ended();
  });
  // Reported as fetch reports a body that broke (a TypeError with the cause), with the socket's
  // reason in the message too: a run's error shows only its message ("terminated: read ECONNRESET").
  stream.once('error', (error) =>
    reader.ended(new TypeError(`terminated: ${socketReason(error)}`, { cause: error })),
  );
  stream.once('close', () => {
    if (!ended) reader.ended(new TypeError('terminated: the body closed before its end'));
  });
  // The response's end (`0\r\n\r\n`) comes in the same read as `[DONE]` from most servers, and is
  // parsed right after the `data` event that held it.
  const complete = () => ended || (stream as Partial<IncomingMessage>).complete === true;
  const close = () => {
    if (!complete()) stream.destroy();
  };
  return {
    close: () => stream.destroy(),
    release: () => process.nextTick(close),
    pause: () => stream.pause(),
    resume: () => stream.resume(),
  };
}

/** `aborted (ECONNRESET)`, `read ETIMEDOUT`: the message, and the code when the message lacks it. */
function socketReason(error: Error): string {
  const message = error.message || error.name;
  const code = (error as NodeJS.ErrnoException).code;
  return code && !message.includes(code) ? `${message} (${code})` : message;
}

/** A `fetch` body: read a chunk at a time, decoded, while not paused. */
function webBody(body: ReadableStream<Uint8Array>, reader: EventReader): Body {
  const bytes = body.getReader();
  const decoder = new TextDecoder();
  let resumed: (() => void) | undefined;
  let paused: Promise<void> | undefined;
  const read = async (): Promise<void> => {
    for (;;) {
      if (paused) await paused;
      const chunk = await bytes.read();
      if (reader.over) return;
      reader.feed(chunk.done ? decoder.decode() : decoder.decode(chunk.value, { stream: true }));
      if (chunk.done) return reader.ended();
    }
  };
  // fetch reports a body that broke as `TypeError: terminated`, the socket's reason in its cause
  // only: the message gets it, as nodeBody's does (a run's error shows only the message).
  read().catch((error: unknown) => {
    const cause = (error as { cause?: unknown } | undefined)?.cause;
    reader.ended(
      error instanceof TypeError && cause instanceof Error
        ? new TypeError(`${error.message}: ${socketReason(cause)}`, { cause: error })
        : error,
    );
  });
  const close = () => {
    resumed?.();
    bytes.cancel().catch(() => undefined);
  };
  return {
    close,
    release: close,
    pause() {
      paused ??= new Promise((resolve) => (resumed = resolve));
    },
    resume() {
      const wake = resumed;
      paused = undefined;
      resumed = undefined;
      wake?.();
    },
  };
}
