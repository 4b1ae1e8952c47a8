import { createParser, type EventSourceParser } from 'eventsource-parser';
import type OpenAI from 'openai';

/**
 * One event of a streamed chat completion, as the server sent it: a chunk, or (from servers that
 * report a failure inside the stream) an object with an `error`. Nothing is checked or copied.
 */
export type ChatCompletionEvent = OpenAI.Chat.Completions.ChatCompletionChunk & { error?: unknown };

/**
 * The events of a streamed chat-completions response body, read with one `JSON.parse` each: the
 * openai SDK builds and sends the request (auth, headers, HTTP errors), and this reads its
 * `asResponse()` body in place of the SDK's `Stream`, whose three nested async generators cost
 * more per chunk than the parsing does (docs/performance.md).
 *
 * Each socket read is decoded and fed to `eventsource-parser` at once; its events wait in a queue
 * that `next()` hands out without another read. Iteration ends at `data: [DONE]` (without waiting
 * for the body to close: some servers keep it open) or at the end of the body; the caller decides
 * whether what came was complete. `return()` (a `for await` left early) cancels the body, which
 * closes the socket. A body that fails (a reset, an abort of the request's signal) rejects `next()`
 * with the fetch error; an event that is not JSON rejects it with the `SyntaxError`.
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
  if (!response.body) throw new TypeError('the response has no body');
  return new ChatCompletionStream(response.body.getReader());
}

class ChatCompletionStream implements AsyncIterableIterator<ChatCompletionEvent> {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #decoder = new TextDecoder();
  readonly #parser: EventSourceParser;
  /** Parsed events not handed out yet, from `#head` on (emptied, not shifted: no copy per event). */
  readonly #queue: ChatCompletionEvent[] = [];
  #head = 0;
  /** `[DONE]` arrived: later events are ignored. */
  #done = false;
  /** The body ended, failed or was cancelled: nothing more is read. */
  #closed = false;

  constructor(reader: ReadableStreamDefaultReader<Uint8Array>) {
    this.#reader = reader;
    this.#parser = createParser({
      onEvent: ({ data }) => {
        if (this.#done) return;
        if (data === '[DONE]') this.#done = true;
        else this.#queue.push(JSON.parse(data) as ChatCompletionEvent);
      },
    });
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
      const read = await this.#reader.read().catch((error: unknown) => {
        this.#closed = true;
        throw error;
      });
      if (read.done) {
        this.#closed = true;
        this.#parser.feed(this.#decoder.decode());
      } else {
        this.#parser.feed(this.#decoder.decode(read.value, { stream: true }));
      }
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
      this.#reader.cancel().catch(() => undefined);
    }
    return { done: true, value: undefined };
  }
}
