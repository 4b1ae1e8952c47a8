import { createParser, type EventSourceParser } from 'eventsource-parser';
import type { Readable } from 'node:stream';
import type OpenAI from 'openai';
import { nodeBodyOf } from './node-http-fetch.js';

/**
 * One event of a streamed chat completion, as the server sent it: a chunk, or (from servers that
 * report a failure inside the stream) an object with an `error`. Nothing is checked or copied.
 */
export type ChatCompletionEvent = OpenAI.Chat.Completions.ChatCompletionChunk & { error?: unknown };

/**
 * The events of a streamed chat-completions response body, read with one `JSON.parse` each: the
 * openai SDK builds and sends the request (auth, headers, HTTP errors), and this reads its
 * `asResponse()` body in place of the SDK's `Stream`, whose three nested async generators cost
 * more per chunk than the parsing does (docs/performance.md). A response of `nodeHttpFetch` (what
 * `OpenAIChat` sends with) is read as its node stream; any other, as its web body.
 *
 * Each socket read is decoded and fed to `eventsource-parser` at once; its events wait in a queue
 * that `next()` hands out without another read. Iteration ends at `data: [DONE]` (without waiting
 * for the body to close: some servers keep it open) or at the end of the body; the caller decides
 * whether what came was complete. `return()` (a `for await` left early) cancels the body, which
 * closes the socket. A body that fails (a reset, an abort of the request's signal) rejects `next()`
 * with the error as fetch reports it (a `TypeError` whose `cause` says why); an event that is not JSON rejects it with the `SyntaxError`.
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
export function readChatCompletionStream(response: Response): AsyncIterableIterator<ChatCompletionEvent> {
  const node = nodeBodyOf(response);
  if (node) return new ChatCompletionStream((feed, backlog) => nodeBodyText(node, feed, backlog));
  const { body } = response;
  if (!body) throw new TypeError('the response has no body');
  return new ChatCompletionStream((feed) => webBodyText(body, feed));
}

/** Most events parsed ahead of the consumer before a node body stops reading the socket. */
const HIGH_WATER = 256;

/** The text of a body, handed to `feed` as it is read. */
interface BodyText {
  /**
   * Resolves once more text was fed, with `true` once the body ended (all of it fed); rejects when
   * the body failed.
   */
  pull(): Promise<boolean>;
  /** Stops reading: closes the socket. */
  cancel(): void;
}

class ChatCompletionStream implements AsyncIterableIterator<ChatCompletionEvent> {
  readonly #body: BodyText;
  readonly #parser: EventSourceParser;
  /** Parsed events not handed out yet, from `#head` on (emptied, not shifted: no copy per event). */
  readonly #queue: ChatCompletionEvent[] = [];
  #head = 0;
  /** `[DONE]` arrived: later events are ignored. */
  #done = false;
  /** The body ended, failed or was cancelled: nothing more is read. */
  #closed = false;

  constructor(open: (feed: (text: string) => void, backlog: () => number) => BodyText) {
    this.#parser = createParser({
      onEvent: ({ data }) => {
        if (this.#done) return;
        if (data === '[DONE]') this.#done = true;
        else this.#queue.push(JSON.parse(data) as ChatCompletionEvent);
      },
    });
    this.#body = open(
      (text) => this.#parser.feed(text),
      () => this.#queue.length - this.#head,
    );
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  async next(): Promise<IteratorResult<ChatCompletionEvent, undefined>> {
    for (;;) {
      if (this.#head < this.#queue.length) {
        const value = this.#queue[this.#head++]!;
        if (this.#head === this.#queue.length) {
          this.#queue.length = 0;
          this.#head = 0;
        }
        return { done: false, value };
      }
      if (this.#done || this.#closed) return this.#finish();
      const ended = await this.#body.pull().catch((error: unknown) => {
        this.#closed = true;
        throw error;
      });
      if (ended) this.#closed = true;
    }
  }

  return(): Promise<IteratorResult<ChatCompletionEvent, undefined>> {
    this.#queue.length = 0;
    this.#head = 0;
    return Promise.resolve(this.#finish());
  }

  /** Ends the iteration; a body still open is cancelled, which closes its socket. */
  #finish(): IteratorResult<ChatCompletionEvent, undefined> {
    this.#done = true;
    if (!this.#closed) {
      this.#closed = true;
      this.#body.cancel();
    }
    return { done: true, value: undefined };
  }
}

/** A `fetch` body: one read, decoded, per pull. */
function webBodyText(body: ReadableStream<Uint8Array>, feed: (text: string) => void): BodyText {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  return {
    async pull() {
      const read = await reader.read();
      feed(read.done ? decoder.decode() : decoder.decode(read.value, { stream: true }));
      return read.done;
    },
    cancel() {
      reader.cancel().catch(() => undefined);
    },
  };
}

/**
 * A node stream (from `nodeHttpFetch`): every `data` event is fed as it comes, so a pull waits only
 * when nothing is parsed ahead, and costs one promise, not a web stream's read. Reading stops while
 * {@link HIGH_WATER} events wait for the consumer.
 */
function nodeBodyText(stream: Readable, feed: (text: string) => void, backlog: () => number): BodyText {
  let ended = false;
  let failure: Error | undefined;
  let wake: (() => void) | undefined;
  const woken = () => {
    const resolve = wake;
    wake = undefined;
    resolve?.();
  };
  stream.setEncoding('utf8');
  stream.on('data', (text: string) => {
    try {
      feed(text);
    } catch (error) {
      // An event that is not JSON: the reader's error, and nothing more is read.
      failure = error as Error;
      stream.destroy();
    }
    if (backlog() >= HIGH_WATER) stream.pause();
    woken();
  });
  stream.once('end', () => {
    ended = true;
    woken();
  });
  stream.once('error', (error) => {
    // Reported as fetch reports a body that broke: a TypeError with the cause.
    failure = new TypeError('terminated', { cause: error });
    woken();
  });
  stream.once('close', () => {
    failure ??= ended ? undefined : new TypeError('terminated: the body closed before its end');
    woken();
  });
  return {
    pull() {
      // Called once every parsed event was handed out.
      if (stream.isPaused()) stream.resume();
      if (failure) return Promise.reject(failure);
      if (ended) return Promise.resolve(true);
      return new Promise<boolean>((resolve, reject) => {
        wake = () => (failure ? reject(failure) : resolve(ended));
      });
    },
    cancel() {
      stream.destroy();
    },
  };
}
