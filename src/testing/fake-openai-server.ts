import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** Token counts the fake server reports, named as the OpenAI usage object names them. */
export interface FakeUsage {
  prompt_tokens: number;
  completion_tokens: number;
}

/** How the deltas of a streamed answer are made and paced. */
export interface FakeStreamShape {
  /** Explicit deltas, or a number of generated ones (see {@link fakeChunks}). Default: a short sentence. */
  chunks?: readonly string[] | number;
  /** Milliseconds between two chunks. Default 0: as fast as the socket takes them. */
  delayMs?: number;
}

/** A normal answer: the chunks, a final chunk with `finish_reason`, the usage chunk, `[DONE]`. */
export interface FakeStreamResponse extends FakeStreamShape {
  fault?: 'none';
  /** Default `'stop'`. */
  finishReason?: string;
  /** Reported usage (sent when the request asks with `stream_options.include_usage`); `false` omits it. */
  usage?: FakeUsage | false;
}

/** An HTTP error with an OpenAI-shaped JSON body, `{ error: { message, type, param, code } }`. */
export interface FakeStatusResponse {
  fault: 'status';
  status: number;
  message?: string;
  /** Sent as the `retry-after` header, in seconds. */
  retryAfter?: number;
  /** Sent as the `retry-after-ms` header. */
  retryAfterMs?: number;
}

/**
 * A broken or unfinished stream. After its chunks:
 * - `reset`: the socket is closed mid-body (the client sees the connection drop);
 * - `truncate`: the body ends cleanly, with no `finish_reason` and no `[DONE]`;
 * - `stall`: nothing more is sent and the response never ends, until the client goes away, the
 *   server closes, or the test drives it by hand with {@link FakeRequest.send}, `finish()`,
 *   `truncate()` or `reset()` (a stall is the "hold" mode: chunks released one at a time).
 */
export interface FakeFaultResponse extends FakeStreamShape {
  fault: 'reset' | 'truncate' | 'stall';
  /** `false`: send nothing at all, not even the status line. Default `true`. */
  headers?: boolean;
}

/** What the fake server answers to one chat-completions request. */
export type FakeResponse = FakeStreamResponse | FakeStatusResponse | FakeFaultResponse;

/** The JSON body of a chat-completions request, as received. */
export interface FakeRequestBody {
  model?: string;
  messages?: unknown;
  stream?: boolean;
  stream_options?: { include_usage?: boolean } | null;
  [key: string]: unknown;
}

/** One chat-completions request the server received, with handles to watch and drive its answer. */
export interface FakeRequest {
  readonly method: string;
  /** The request path, `/v1/chat/completions`. */
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  /** The parsed JSON body (`{}` when it was not JSON; the request was answered 400). */
  readonly body: FakeRequestBody;
  /** What the server answers (from the queue, the default or the model name). */
  readonly response: FakeResponse;
  /** Resolves when the response is over: finished, or its socket closed. Never rejects. */
  readonly closed: Promise<void>;
  /** True when the client went away before the server finished its answer (an abort). */
  readonly clientAborted: boolean;
  /** Sends one content delta now (streaming requests whose response is still open). */
  send(content: string): void;
  /** Sends the final chunk, the usage chunk (when asked for), `[DONE]`, and ends the response. */
  finish(finishReason?: string): void;
  /** Ends the body cleanly without a finish reason or `[DONE]`. */
  truncate(): void;
  /** Closes the socket mid-body. */
  reset(): void;
}

/** Options of {@link createFakeOpenAIServer}. */
export interface FakeOpenAIServerOptions {
  /** Default 0: an ephemeral port. The server always binds to 127.0.0.1. */
  port?: number;
}

/** A local OpenAI-compatible server for tests and benchmarks. Create it with {@link createFakeOpenAIServer}. */
export interface FakeOpenAIServer {
  /** Base URL ending in `/v1`, what the openai SDK's `baseURL` takes. */
  readonly url: string;
  readonly port: number;
  /** Every chat-completions request received, in arrival order. */
  readonly requests: readonly FakeRequest[];
  /** Resolves with the next request not yet taken (one already arrived, or the next to arrive). */
  nextRequest(): Promise<FakeRequest>;
  /** Scripts the answers of the next requests, one each, in order; they win over everything else. */
  enqueue(...responses: FakeResponse[]): void;
  /** The answer when the queue is empty (instead of the one the model name asks for); `undefined` clears it. */
  setDefault(response: FakeResponse | undefined): void;
  /** Stops the server and destroys every open socket, so it never hangs. */
  close(): Promise<void>;
}

const DEFAULT_CHUNKS = ['Hello', ' from', ' the', ' fake', ' OpenAI', ' server', '.'];

/**
 * The deltas the fake server sends for a count of chunks: the default sentence, repeated.
 *
 * @example
 * ```ts
 * fakeChunks(3).join(''); // 'Hello from the'
 * ```
 */
export function fakeChunks(count: number): string[] {
  return Array.from({ length: count }, (_, i) => DEFAULT_CHUNKS[i % DEFAULT_CHUNKS.length] ?? '');
}

const FAULTS = new Set(['none', 'status', 'reset', 'truncate', 'stall']);
const MODEL_KEYS = new Set([
  'fault',
  'chunks',
  'delayMs',
  'finishReason',
  'usage',
  'status',
  'message',
  'retryAfter',
  'retryAfterMs',
  'headers',
]);

/**
 * Reads the behaviour a request asks for in its `model` field, so a client in another process (or a
 * request passing through another server) can pick it. Syntax: `<name>?<key>=<value>&...`; a name
 * without `?` (`gpt-5-mini`) gets a short normal stream. Keys:
 * - `fault`: `none` (default), `status`, `reset`, `truncate` or `stall`; `status=<code>` alone implies
 *   `fault=status`;
 * - `chunks=<n>`: number of deltas (see {@link fakeChunks}); `delayMs=<ms>` between them;
 * - normal streams: `finishReason=<reason>`, `usage=false`;
 * - `fault=status`: `status=<code>` (default 500), `message=<text>`, `retryAfter=<seconds>`,
 *   `retryAfterMs=<ms>`;
 * - `reset`, `truncate`, `stall`: `headers=false` sends nothing at all before the fault.
 *
 * Unknown keys or bad values throw (the server answers 400 with the reason).
 *
 * @example
 * ```ts
 * parseFakeModel('fake?chunks=10000&delayMs=0'); // { fault: 'none', chunks: 10000, delayMs: 0 }
 * parseFakeModel('fake?fault=truncate&chunks=3'); // { fault: 'truncate', chunks: 3 }
 * parseFakeModel('fake?status=429&retryAfter=2'); // { fault: 'status', status: 429, retryAfter: 2 }
 * parseFakeModel('fake?fault=stall&chunks=0&headers=false');
 * ```
 */
export function parseFakeModel(model: string): FakeResponse {
  const query = model.indexOf('?');
  if (query === -1) return {};
  const params = new URLSearchParams(model.slice(query + 1));
  for (const key of params.keys()) {
    if (!MODEL_KEYS.has(key)) throw new Error(`unknown fake model parameter '${key}' in '${model}'`);
  }
  const int = (key: string): number | undefined => {
    const value = params.get(key);
    if (value === null) return undefined;
    const n = Number(value);
    if (value === '' || !Number.isInteger(n) || n < 0) {
      throw new Error(`fake model parameter '${key}' must be a whole number, got '${value}'`);
    }
    return n;
  };
  const fault = params.get('fault') ?? (params.has('status') ? 'status' : 'none');
  if (!FAULTS.has(fault)) throw new Error(`unknown fault '${fault}' in '${model}'`);
  const shape: FakeStreamShape = {};
  const chunks = int('chunks');
  const delayMs = int('delayMs');
  if (chunks !== undefined) shape.chunks = chunks;
  if (delayMs !== undefined) shape.delayMs = delayMs;

  if (fault === 'status') {
    const response: FakeStatusResponse = { fault, status: int('status') ?? 500 };
    const message = params.get('message');
    const retryAfter = int('retryAfter');
    const retryAfterMs = int('retryAfterMs');
    if (message !== null) response.message = message;
    if (retryAfter !== undefined) response.retryAfter = retryAfter;
    if (retryAfterMs !== undefined) response.retryAfterMs = retryAfterMs;
    return response;
  }
  if (fault === 'none') {
    const response: FakeStreamResponse = { fault, ...shape };
    const finishReason = params.get('finishReason');
    if (finishReason !== null) response.finishReason = finishReason;
    if (params.get('usage') === 'false') response.usage = false;
    return response;
  }
  const response: FakeFaultResponse = { fault: fault as FakeFaultResponse['fault'], ...shape };
  if (params.get('headers') === 'false') response.headers = false;
  return response;
}

const SSE_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
};
const DONE = Buffer.from('data: [DONE]\n\n');

/** Serialises the frames of one completion; the JSON around the content is built once. */
class Frames {
  readonly #prefix: string;
  constructor(id: string, created: number, model: string) {
    this.#prefix =
      `data: {"id":"${id}","object":"chat.completion.chunk","created":${created},` +
      `"model":${JSON.stringify(model)},"system_fingerprint":null,"choices":`;
  }
  delta(content: string, first: boolean): Buffer {
    const role = first ? '"role":"assistant",' : '';
    return Buffer.from(
      `${this.#prefix}[{"index":0,"delta":{${role}"content":${JSON.stringify(content)}},"finish_reason":null}]}\n\n`,
    );
  }
  finish(reason: string): Buffer {
    return Buffer.from(
      `${this.#prefix}[{"index":0,"delta":{},"finish_reason":${JSON.stringify(reason)}}]}\n\n`,
    );
  }
  usage(usage: FakeUsage): Buffer {
    const total = usage.prompt_tokens + usage.completion_tokens;
    return Buffer.from(
      `${this.#prefix}[],"usage":{"prompt_tokens":${usage.prompt_tokens},` +
        `"completion_tokens":${usage.completion_tokens},"total_tokens":${total}}}\n\n`,
    );
  }
}

/** Generated chunks are the default sentence repeated: one frame per word, one block per sentence. */
const BLOCK_SIZE = DEFAULT_CHUNKS.length;

