import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import { checkOptionNames } from '../option-names.js';
import { numberWhere } from '../runtime/run-limits.js';
import type { ToolCallRequest } from '../../machines/run-types.js';
import { ToolCallAssembler } from '../model/tool-call-assembler.js';

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

/**
 * What a reasoning model streams before its answer: deltas in `delta.reasoning_content` (vLLM,
 * llama.cpp, DeepSeek) or `delta.reasoning` (Ollama, OpenRouter), each with no `content`.
 */
export interface FakeReasoning {
  deltas: readonly string[];
  /** Default `'reasoning_content'`. */
  field?: 'reasoning_content' | 'reasoning';
  /** Milliseconds between two reasoning deltas (and before the first content). Default 0. */
  delayMs?: number;
}

/** A normal answer: the chunks, a final chunk with `finish_reason`, the usage chunk, `[DONE]`. */
export interface FakeStreamResponse extends FakeStreamShape {
  fault?: 'none';
  /** Reasoning deltas sent before the chunks, as a reasoning model thinks before it answers. */
  reasoning?: FakeReasoning;
  /** Default `'stop'` (`'length'` when the request's token limit cut the chunks). */
  finishReason?: string;
  /**
   * Reported usage (sent when the request asks with `stream_options.include_usage`, and always in a
   * JSON answer); `false` sends none at all, as many compatible servers do.
   */
  usage?: FakeUsage | false;
  /** After `[DONE]`, keep the body open instead of ending it (a server seen to do so). */
  keepOpen?: boolean;
  /**
   * Tool-call deltas sent after the chunks, one chunk each, as they go in `delta.tool_calls[]`
   * (`{ index, id?, type?, function: { name?, arguments? } }`): split them to test how a client joins
   * them. With them, the finish reason defaults to `'tool_calls'`. A request that is not streamed
   * gets them joined by `index`, in its message's `tool_calls`.
   */
  toolCalls?: readonly object[];
}

/** The shape of an error body: OpenAI's `{error: {...}}`, FastAPI's `{detail}`, a bare `{message}`, or plain text. */
export type FakeErrorBody = 'openai' | 'detail' | 'message' | 'text';

/** An HTTP error with an OpenAI-shaped JSON body, `{ error: { message, type, param, code } }`. */
export interface FakeStatusResponse {
  fault: 'status';
  status: number;
  message?: string;
  /** Sent as the `retry-after` header, in seconds. */
  retryAfter?: number;
  /** Sent as the `retry-after-ms` header. */
  retryAfterMs?: number;
  /** Default `'openai'`. */
  body?: FakeErrorBody;
}

/**
 * A 200 stream that reports an error inside it, after its chunks (none by default), as llama.cpp
 * does: `data: {"error": {"code": <status>, "message", "type"}}`, then the body ends without
 * `[DONE]`.
 */
export interface FakeStreamErrorResponse extends FakeStreamShape {
  fault: 'error';
  /** The error's `code`. Default 500. */
  status?: number;
  message?: string;
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
  /**
   * `false`: no chunks, and for `reset` and `stall` not even the status line (the connection drops, or
   * waits, before any answer); a `truncate` then ends an empty 200 body. Default `true`.
   */
  headers?: boolean;
}

/** What the fake server answers to one chat-completions request. */
export type FakeResponse =
  FakeStreamResponse | FakeStatusResponse | FakeStreamErrorResponse | FakeFaultResponse;

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
  /** Sends tool-call deltas now, in one chunk (`delta.tool_calls`). */
  sendToolCalls(deltas: readonly object[]): void;
  /** Sends one reasoning delta now (`delta.reasoning_content`, or `delta.reasoning`). */
  sendReasoning(text: string, field?: 'reasoning_content' | 'reasoning'): void;
  /** Sends `data: {"error": error}` and ends the body, as a server failing mid-stream does. */
  sendError(error: object): void;
  /**
   * Sends the final chunk, the usage chunk (when asked for and `usage` is not `false`), `[DONE]`,
   * and ends the response (unless `keepOpen`: the body stays open after `[DONE]`).
   */
  finish(finishReason?: string, usage?: FakeUsage | false, keepOpen?: boolean): void;
  /** Ends the body cleanly without a finish reason or `[DONE]`. */
  truncate(): void;
  /** Closes the socket mid-body. */
  reset(): void;
}

/** Options of {@link createFakeOpenAIServer}. */
export interface FakeOpenAIServerOptions {
  /** Default 0: an ephemeral port. The server always binds to 127.0.0.1. */
  port?: number | undefined;
  /**
   * The token-limit fields the server honours: a streamed answer longer than the limit is cut to
   * it, with finish reason `length`; other fields are ignored, as `transformers serve` ignores
   * `max_completion_tokens`. Default both. (One chunk counts as one token.)
   */
  maxTokensFields?: readonly ('max_tokens' | 'max_completion_tokens')[] | undefined;
  /**
   * The listen queue's length. Default Node's 511: past it, a burst of new connections loses SYNs,
   * which the client's kernel sends again after 1 s (a benchmark opening 1,000 streams at once wants
   * more; the system's `somaxconn` caps it).
   */
  backlog?: number | undefined;
}

/** A local OpenAI-compatible server for tests. Create it with {@link createFakeOpenAIServer}. */
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

const FAULTS = new Set(['none', 'status', 'error', 'reset', 'truncate', 'stall']);
const ERROR_BODIES = new Set(['openai', 'detail', 'message', 'text']);
/** The keys each fault reads: another one would be dropped without a word. */
const FAULT_KEYS: Readonly<Record<string, ReadonlySet<string>>> = {
  none: new Set(['chunks', 'delayMs', 'finishReason', 'usage', 'reasoning', 'keepOpen']),
  status: new Set(['status', 'message', 'retryAfter', 'retryAfterMs', 'body']),
  error: new Set(['chunks', 'delayMs', 'status', 'message']),
  reset: new Set(['chunks', 'delayMs', 'headers']),
  truncate: new Set(['chunks', 'delayMs', 'headers']),
  stall: new Set(['chunks', 'delayMs', 'headers']),
};
const MODEL_KEYS: ReadonlySet<string> = new Set([
  'fault',
  ...Object.values(FAULT_KEYS).flatMap((keys) => [...keys]),
]);

/**
 * Reads the behaviour a request asks for in its `model` field, so a client in another process (or a
 * request passing through another server) can pick it. Syntax: `<name>?<key>=<value>&...`; a name
 * without `?` (`gpt-5-mini`) gets a short normal stream. Keys:
 * - `fault`: `none` (default), `status`, `reset`, `truncate` or `stall`; `status=<code>` alone implies
 *   `fault=status`;
 * - `chunks=<n>`: number of deltas (see {@link fakeChunks}); `delayMs=<ms>` between them;
 * - normal streams: `finishReason=<reason>`, `usage=false`, `reasoning=<n>` (that many reasoning
 *   deltas first, in `reasoning_content`), `keepOpen=true` (the body stays open after `[DONE]`);
 * - `fault=status`: `status=<code>` (default 500), `message=<text>`, `retryAfter=<seconds>`,
 *   `retryAfterMs=<ms>`, `body=openai|detail|message|text`;
 * - `fault=error` (an error object inside a 200 stream, after the chunks): `status=<code>` (default
 *   500), `message=<text>`;
 * - `reset`, `truncate`, `stall`: `headers=false` sends nothing at all before the fault.
 *
 * Unknown keys, keys the fault does not read, or bad values throw (the server answers 400 with the
 * reason).
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
  for (const key of params.keys()) {
    if (key !== 'fault' && !FAULT_KEYS[fault]!.has(key))
      throw new Error(`fake model parameter '${key}' does not apply to fault '${fault}' in '${model}'`);
  }
  // `true` or `false`, or absent.
  const flag = (key: string): boolean | undefined => {
    const value = params.get(key);
    if (value === null) return undefined;
    if (value !== 'true' && value !== 'false')
      throw new Error(`fake model parameter '${key}' must be true or false, got '${value}'`);
    return value === 'true';
  };
  const status = int('status');
  if (status !== undefined) checkStatus(status);
  const shape: FakeStreamShape = {};
  const chunks = int('chunks');
  const delayMs = int('delayMs');
  if (chunks !== undefined) shape.chunks = chunks;
  if (delayMs !== undefined) shape.delayMs = delayMs;

  const message = params.get('message');
  if (fault === 'status') {
    const response: FakeStatusResponse = { fault, status: status ?? 500 };
    const retryAfter = int('retryAfter');
    const retryAfterMs = int('retryAfterMs');
    const body = params.get('body');
    if (message !== null) response.message = message;
    if (retryAfter !== undefined) response.retryAfter = retryAfter;
    if (retryAfterMs !== undefined) response.retryAfterMs = retryAfterMs;
    if (body !== null) {
      if (!ERROR_BODIES.has(body)) throw new Error(`unknown error body '${body}' in '${model}'`);
      response.body = body as FakeErrorBody;
    }
    return response;
  }
  if (fault === 'error') {
    const response: FakeStreamErrorResponse = { fault, ...shape };
    if (status !== undefined) response.status = status;
    if (message !== null) response.message = message;
    return response;
  }
  if (fault === 'none') {
    const response: FakeStreamResponse = { fault, ...shape };
    const finishReason = params.get('finishReason');
    const reasoning = int('reasoning');
    if (finishReason !== null) response.finishReason = finishReason;
    if (flag('usage') === false) response.usage = false;
    if (reasoning !== undefined) {
      response.reasoning = { deltas: Array.from({ length: reasoning }, (_, i) => `Thought ${i + 1}. `) };
    }
    if (flag('keepOpen')) response.keepOpen = true;
    return response;
  }
  const response: FakeFaultResponse = { fault: fault as FakeFaultResponse['fault'], ...shape };
  if (flag('headers') === false) response.headers = false;
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
  toolCalls(deltas: readonly object[], first: boolean): Buffer {
    const role = first ? '"role":"assistant",' : '';
    return Buffer.from(
      `${this.#prefix}[{"index":0,"delta":{${role}"content":null,"tool_calls":${JSON.stringify(deltas)}},"finish_reason":null}]}\n\n`,
    );
  }
  reasoning(text: string, field: string, first: boolean): Buffer {
    const role = first ? '"role":"assistant",' : '';
    return Buffer.from(
      `${this.#prefix}[{"index":0,"delta":{${role}"content":null,${JSON.stringify(field)}:${JSON.stringify(text)}},"finish_reason":null}]}\n\n`,
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

/** A recorded request and the state of its answer. */
class RecordedRequest implements FakeRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  readonly closed: Promise<void>;
  readonly frames: Frames;
  /** Deltas sent so far (the first one carries the role). */
  sent = 0;
  /** The one timer that paces this answer, re-armed with `refresh()`. */
  timer: NodeJS.Timeout | undefined;
  /** Set once the server itself ended or dropped the answer, or is closing. */
  serverDone = false;
  #clientAborted = false;
  readonly #res: ServerResponse;

  constructor(
    req: IncomingMessage,
    res: ServerResponse,
    readonly body: FakeRequestBody,
    readonly response: FakeResponse,
    readonly id: string,
  ) {
    this.method = req.method ?? 'POST';
    this.path = req.url ?? '/';
    this.headers = req.headers;
    this.#res = res;
    this.frames = new Frames(id, Math.floor(Date.now() / 1000), body.model ?? 'fake');
    this.closed = new Promise((resolve) => {
      res.once('close', () => {
        if (!this.serverDone && !res.writableEnded) this.#clientAborted = true;
        this.serverDone = true;
        clearTimeout(this.timer);
        resolve();
      });
    });
  }

  get clientAborted(): boolean {
    return this.#clientAborted;
  }

  get open(): boolean {
    return !this.serverDone && !this.#res.destroyed;
  }

  /** Sends the status line and SSE headers now (Node otherwise holds them until the first write). */
  startStream(): void {
    if (this.#res.headersSent) return;
    this.#res.writeHead(200, { ...SSE_HEADERS, 'x-request-id': this.id });
    this.#res.flushHeaders();
  }

  /** Writes frames; false means the socket buffer is full: wait for {@link onDrain}. */
  write(frames: Buffer): boolean {
    this.startStream();
    return this.#res.write(frames);
  }

  onDrain(then: () => void): void {
    this.#res.once('drain', then);
  }

  send(content: string): void {
    this.#assertStreaming('send');
    this.write(this.frames.delta(content, this.sent === 0));
    this.sent++;
  }

  sendToolCalls(deltas: readonly object[]): void {
    this.#assertStreaming('sendToolCalls');
    this.write(this.frames.toolCalls(deltas, this.sent === 0));
    this.sent++;
  }

  sendReasoning(text: string, field: FakeReasoning['field'] = 'reasoning_content'): void {
    this.#assertStreaming('sendReasoning');
    this.write(this.frames.reasoning(text, field, this.sent === 0));
    this.sent++;
  }

  sendError(error: object): void {
    this.#assertStreaming('sendError');
    this.serverDone = true;
    this.startStream();
    this.#res.end(`data: ${JSON.stringify({ error })}\n\n`);
  }

  finish(finishReason = 'stop', usage?: FakeUsage | false, keepOpen = false): void {
    this.#assertStreaming('finish');
    this.startStream();
    // In one write, as servers end a stream: the finish reason, the usage, `[DONE]` (and the body's
    // end) reach the client in one read.
    const frames = [this.frames.finish(finishReason)];
    if (this.body.stream_options?.include_usage === true && usage !== false) {
      frames.push(
        this.frames.usage(usage ?? { prompt_tokens: promptTokens(this.body), completion_tokens: this.sent }),
      );
    }
    frames.push(DONE);
    if (keepOpen) {
      // The answer is complete, but the body stays open until the client (or the server) closes it.
      this.write(Buffer.concat(frames));
      return;
    }
    this.serverDone = true;
    this.#res.end(Buffer.concat(frames));
  }

  truncate(): void {
    this.#assertStreaming('truncate');
    this.startStream();
    this.serverDone = true;
    this.#res.end();
  }

  reset(): void {
    if (!this.open) throw new Error('reset(): the response is already over');
    this.serverDone = true;
    const socket = this.#res.socket;
    if (!socket) return;
    if (!this.#res.headersSent) {
      socket.destroy();
      return;
    }
    // Flush what was written, then close without ending the chunked body: the client sees the
    // connection drop mid-stream, after the chunks it was sent (a bare destroy() could drop them).
    socket.end(() => socket.destroy());
  }

  #assertStreaming(method: string): void {
    if (this.body.stream !== true) throw new Error(`${method}(): not a streaming request`);
    if (!this.open) throw new Error(`${method}(): the response is already over`);
  }
}

/** A rough count, enough for usage numbers: about four characters a token. */
function promptTokens(body: FakeRequestBody): number {
  if (!Array.isArray(body.messages)) return 0;
  let chars = 0;
  for (const message of body.messages as unknown[]) {
    const content = (message as { content?: unknown } | null)?.content;
    if (typeof content === 'string') chars += content.length;
  }
  return Math.ceil(chars / 4);
}

/** A status Node can send (100 to 999): another would throw inside the server, not in the test. */
function checkStatus(status: number): void {
  if (!Number.isInteger(status) || status < 100 || status > 999) {
    throw new Error(`a fake status must be an HTTP status code (100 to 999), got ${status}`);
  }
}

const whole = numberWhere((n) => Number.isInteger(n) && n >= 0, 'a whole number ≥ 0');
const milliseconds = numberWhere((n) => n >= 0 && n < Infinity, 'a number ≥ 0');
const httpStatus = numberWhere(
  (n) => Number.isInteger(n) && n >= 100 && n <= 999,
  'an HTTP status code (100 to 999)',
);
const streamShape = {
  chunks: z
    .custom<readonly string[] | number>(
      (chunks) =>
        Array.isArray(chunks)
          ? chunks.every((chunk) => typeof chunk === 'string')
          : typeof chunks === 'number' && Number.isInteger(chunks) && chunks >= 0,
      {
        error: ({ input }) =>
          `expected a list of deltas or a whole number ≥ 0, got ${typeof input === 'number' ? String(input) : shownJson(input)}`,
      },
    )
    .optional(),
  delayMs: milliseconds.optional(),
};
/** A value in an error message: as JSON, or as `String` gives it where JSON cannot. */
function shownJson(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}

/** Each fault's answer as {@link FakeResponse} types it: a key it does not read is refused. */
const RESPONSE_SCHEMAS: Readonly<Record<string, z.ZodType>> = {
  none: z.strictObject({
    fault: z.literal('none').optional(),
    ...streamShape,
    reasoning: z
      .strictObject({
        deltas: z.array(z.string()),
        field: z.enum(['reasoning_content', 'reasoning']).optional(),
        delayMs: milliseconds.optional(),
      })
      .optional(),
    finishReason: z.string().optional(),
    usage: z
      .union([z.strictObject({ prompt_tokens: whole, completion_tokens: whole }), z.literal(false)], {
        error: 'must be { prompt_tokens, completion_tokens } (whole numbers ≥ 0) or false',
      })
      .optional(),
    keepOpen: z.boolean().optional(),
    toolCalls: z.array(z.object({})).optional(),
  }),
  status: z.strictObject({
    fault: z.literal('status'),
    status: httpStatus,
    message: z.string().optional(),
    retryAfter: milliseconds.optional(),
    retryAfterMs: milliseconds.optional(),
    body: z.enum(['openai', 'detail', 'message', 'text']).optional(),
  }),
  error: z.strictObject({
    fault: z.literal('error'),
    ...streamShape,
    status: httpStatus.optional(),
    message: z.string().optional(),
  }),
  ...Object.fromEntries(
    (['reset', 'truncate', 'stall'] as const).map((fault) => [
      fault,
      z.strictObject({ fault: z.literal(fault), ...streamShape, headers: z.boolean().optional() }),
    ]),
  ),
};

/**
 * Refuses a scripted answer the server could not play as written, when it is scripted: an unknown
 * fault or key, or a value out of range would otherwise be dropped or misplayed without a word, as
 * {@link parseFakeModel} refuses them in a model name.
 */
function checkResponse(response: FakeResponse): void {
  const fault = (response as { fault?: unknown } | null)?.fault ?? 'none';
  const schema =
    typeof fault === 'string' && Object.hasOwn(RESPONSE_SCHEMAS, fault) ? RESPONSE_SCHEMAS[fault] : undefined;
  if (!schema) {
    throw new Error(
      `a fake response's fault must be one of ${Object.keys(RESPONSE_SCHEMAS).join(', ')}, got ${JSON.stringify(fault)}`,
    );
  }
  const result = schema.safeParse(response);
  if (result.success) return;
  const problems = result.error.issues.map((issue) =>
    issue.path.length ? `${issue.path.join('.')}: ${issue.message}` : issue.message,
  );
  throw new Error(`a fake response of fault '${fault as string}' cannot be played: ${problems.join('; ')}`);
}

function errorType(status: number): string {
  if (status === 429) return 'rate_limit_exceeded';
  if (status >= 500) return 'server_error';
  if (status === 401) return 'authentication_error';
  return 'invalid_request_error';
}

function sendJson(
  res: ServerResponse,
  status: number,
  value: unknown,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(value));
}

function sendError(res: ServerResponse, response: FakeStatusResponse): void {
  const headers: Record<string, string> = {};
  if (response.retryAfter !== undefined) headers['retry-after'] = String(response.retryAfter);
  if (response.retryAfterMs !== undefined) headers['retry-after-ms'] = String(response.retryAfterMs);
  const message = response.message ?? `Fake error ${response.status}`;
  switch (response.body ?? 'openai') {
    case 'openai':
      return sendJson(
        res,
        response.status,
        { error: { message, type: errorType(response.status), param: null, code: null } },
        headers,
      );
    case 'detail':
      return sendJson(res, response.status, { detail: message }, headers);
    case 'message':
      return sendJson(res, response.status, { message }, headers);
    case 'text':
      res.writeHead(response.status, { 'content-type': 'text/plain', ...headers });
      return void res.end(message);
  }
}

/** The error object a server sends inside a stream (llama.cpp's shape). */
function streamErrorObject(response: FakeStreamErrorResponse): object {
  const status = response.status ?? 500;
  return { code: status, message: response.message ?? `Fake error ${status}`, type: errorType(status) };
}

/** The request's token limit, from the fields this server honours. */
function tokenLimit(body: FakeRequestBody, fields: readonly string[]): number | undefined {
  for (const field of fields) {
    const value = body[field];
    if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return value;
  }
  return undefined;
}

/** Sends reasoning deltas one after the other, `delayMs` apart, then calls `done`. */
function pumpReasoning(request: RecordedRequest, reasoning: FakeReasoning, done: () => void): void {
  let i = 0;
  const step = (): void => {
    if (!request.open) return;
    if (i >= reasoning.deltas.length) return done();
    request.sendReasoning(reasoning.deltas[i++] ?? '', reasoning.field);
    setTimeout(step, reasoning.delayMs ?? 0);
  };
  if (reasoning.deltas.length === 0) return done();
  step();
}

/**
 * Streams the scripted chunks of a request with pacing and backpressure, then calls `done`. Callback
 * style with one reused timer, so that a long stream (tests send 10,000 chunks) costs the server
 * little: a promise or a timer per chunk would be most of its cost.
 */
function pump(request: RecordedRequest, shape: FakeStreamShape, done: () => void): void {
  const texts = typeof shape.chunks === 'number' ? undefined : (shape.chunks ?? DEFAULT_CHUNKS);
  const count = texts ? texts.length : (shape.chunks as number);
  const delayMs = shape.delayMs ?? 0;
  // Generated chunks repeat the default sentence, so their frames are serialised once per request,
  // and without a delay they go out a whole sentence per write.
  const generated = texts ? undefined : DEFAULT_CHUNKS.map((text) => request.frames.delta(text, false));
  const block = generated && delayMs === 0 ? Buffer.concat(generated) : undefined;
  let i = 0;
  const step = (): void => {
    while (request.open) {
      if (i >= count) return done();
      let ok: boolean;
      if (block && request.sent > 0 && i % BLOCK_SIZE === 0 && count - i >= BLOCK_SIZE) {
        ok = request.write(block);
        i += BLOCK_SIZE;
        request.sent += BLOCK_SIZE;
      } else {
        const cached = request.sent > 0 ? generated?.[i % BLOCK_SIZE] : undefined;
        const text = texts?.[i] ?? DEFAULT_CHUNKS[i % BLOCK_SIZE] ?? '';
        ok = request.write(cached ?? request.frames.delta(text, request.sent === 0));
        i++;
        request.sent++;
      }
      if (delayMs > 0 && i < count) return ok ? delayed() : request.onDrain(delayed);
      if (!ok) return request.onDrain(step);
    }
  };
  const delayed = (): void => {
    if (!request.open) return;
    if (request.timer) request.timer.refresh();
    else request.timer = setTimeout(step, delayMs);
  };
  step();
}

function isNormal(response: FakeResponse): response is FakeStreamResponse {
  return response.fault === undefined || response.fault === 'none';
}

function answerStream(request: RecordedRequest, res: ServerResponse, limitFields: readonly string[]): void {
  const response = request.response;
  if (response.fault === 'status') return sendError(res, response);
  if (response.fault === 'error') {
    request.startStream();
    const shape = { ...response, chunks: response.chunks ?? 0 };
    return pump(request, shape, () => request.sendError(streamErrorObject(response)));
  }
  if (isNormal(response)) {
    request.startStream();
    const limit = tokenLimit(request.body, limitFields);
    const count =
      typeof response.chunks === 'number' ? response.chunks : (response.chunks ?? DEFAULT_CHUNKS).length;
    const cut = limit !== undefined && count > limit;
    const shape: FakeStreamResponse = cut
      ? {
          ...response,
          chunks:
            typeof response.chunks === 'number' ? limit : (response.chunks ?? DEFAULT_CHUNKS).slice(0, limit),
        }
      : response;
    const finishReason = cut
      ? 'length'
      : (response.finishReason ?? (response.toolCalls ? 'tool_calls' : undefined));
    const content = () =>
      pump(request, shape, () => {
        for (const delta of response.toolCalls ?? []) if (request.open) request.sendToolCalls([delta]);
        if (request.open) request.finish(finishReason, response.usage, response.keepOpen === true);
      });
    return response.reasoning ? pumpReasoning(request, response.reasoning, content) : content();
  }
  if (response.headers === false) {
    if (response.fault === 'stall') return;
    return response.fault === 'reset' ? request.reset() : request.truncate();
  }
  request.startStream();
  if (response.fault === 'stall') return pump(request, response, () => undefined);
  pump(request, response, () => (response.fault === 'truncate' ? request.truncate() : request.reset()));
}

/**
 * Non-stream requests get a whole `chat.completion` (or the same fault, applied to the JSON body):
 * the script a stream would play, joined (its reasoning, its text cut to the token limit, its tool
 * calls whole, its finish reason, its usage unless `false`).
 */
function answerJson(request: RecordedRequest, res: ServerResponse, limitFields: readonly string[]): void {
  const response = request.response;
  if (response.fault === 'status') return sendError(res, response);
  if (response.fault === 'error') return sendJson(res, 200, { error: streamErrorObject(response) });
  if (response.fault === 'stall') return;
  if (response.fault === 'reset') return request.reset();
  const all =
    typeof response.chunks === 'number' ? fakeChunks(response.chunks) : (response.chunks ?? DEFAULT_CHUNKS);
  const normal = isNormal(response) ? response : undefined;
  const limit = normal ? tokenLimit(request.body, limitFields) : undefined;
  const cut = limit !== undefined && all.length > limit;
  const chunks = cut ? all.slice(0, limit) : all;
  const toolCalls = normal?.toolCalls ? joinToolCalls(normal.toolCalls) : [];
  // As a stream counts them: every delta it would send (reasoning and tool-call deltas too).
  const usage = normal?.usage ?? {
    prompt_tokens: promptTokens(request.body),
    completion_tokens:
      chunks.length + (normal?.reasoning?.deltas.length ?? 0) + (normal?.toolCalls?.length ?? 0),
  };
  const message = {
    role: 'assistant',
    content: chunks.join(''),
    refusal: null,
    ...(normal?.reasoning
      ? { [normal.reasoning.field ?? 'reasoning_content']: normal.reasoning.deltas.join('') }
      : {}),
    ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}),
  };
  const finishReason = cut
    ? 'length'
    : (normal?.finishReason ?? (toolCalls.length > 0 ? 'tool_calls' : 'stop'));
  const completion = JSON.stringify({
    id: request.id,
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model: request.body.model ?? 'fake',
    choices: [{ index: 0, message, logprobs: null, finish_reason: normal ? finishReason : null }],
    ...(usage === false
      ? {}
      : { usage: { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens } }),
  });
  res.writeHead(200, { 'content-type': 'application/json', 'x-request-id': request.id });
  // A truncated JSON answer stops halfway through its body.
  res.end(response.fault === 'truncate' ? completion.slice(0, completion.length >> 1) : completion);
}

/** Scripted tool-call deltas joined as a client joins them (runstate's own assembler): whole calls, in order. */
function joinToolCalls(deltas: readonly object[]): ToolCallRequest[] {
  const calls = new ToolCallAssembler();
  for (const delta of deltas) calls.add(delta);
  return calls.calls();
}

/**
 * Starts a local server, bound to 127.0.0.1, that speaks the OpenAI chat-completions protocol:
 * `POST /v1/chat/completions` (streamed as `text/event-stream` when `stream: true`, else one JSON
 * `chat.completion`) and `GET /v1/models`. Each request is answered with the next scripted response
 * ({@link FakeOpenAIServer.enqueue}), else the default ({@link FakeOpenAIServer.setDefault}), else the
 * behaviour its `model` field asks for ({@link parseFakeModel}). Every chat request is recorded, with a
 * promise that tells when its socket closed and whether the client went away first.
 *
 * @example
 * ```ts
 * const server = await createFakeOpenAIServer();
 * const client = new OpenAI({ apiKey: 'test', baseURL: server.url, maxRetries: 0 });
 *
 * // A held stream, released by hand.
 * server.enqueue({ fault: 'stall', chunks: 0 });
 * const pending = client.chat.completions.create({ model: 'm', messages: [], stream: true });
 * const request = await server.nextRequest();
 * request.send('Hello');
 * request.finish();
 * for await (const chunk of await pending) console.log(chunk.choices[0]?.delta.content);
 *
 * // Scripted answers, one per request: two deltas, then a 429 that asks to retry after 2 s.
 * server.enqueue({ chunks: ['Hel', 'lo'] }, { fault: 'status', status: 429, retryAfter: 2 });
 *
 * await server.close();
 * ```
 */
export async function createFakeOpenAIServer(
  options: FakeOpenAIServerOptions = {},
): Promise<FakeOpenAIServer> {
  const requests: RecordedRequest[] = [];
  const queue: FakeResponse[] = [];
  const waiters: { resolve: (request: FakeRequest) => void; reject: (error: Error) => void }[] = [];
  let taken = 0;
  let fallback: FakeResponse | undefined;
  let closing: Promise<void> | undefined;
  checkOptionNames(options, ['port', 'maxTokensFields', 'backlog'], 'createFakeOpenAIServer');
  const limitFields = options.maxTokensFields ?? ['max_completion_tokens', 'max_tokens'];

  const chat = (req: IncomingMessage, res: ServerResponse, raw: string): void => {
    let body: FakeRequestBody = {};
    let response: FakeResponse;
    try {
      const parsed: unknown = JSON.parse(raw);
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
        throw new Error('the body must be a JSON object');
      }
      body = parsed as FakeRequestBody;
      response =
        queue.shift() ?? fallback ?? parseFakeModel(typeof body.model === 'string' ? body.model : '');
    } catch (error) {
      response = { fault: 'status', status: 400, message: (error as Error).message };
    }
    const request = new RecordedRequest(req, res, body, response, `chatcmpl-fake-${requests.length + 1}`);
    requests.push(request);
    const waiter = waiters.shift();
    if (waiter) {
      taken++;
      waiter.resolve(request);
    }
    if (body.stream === true) answerStream(request, res, limitFields);
    else answerJson(request, res, limitFields);
  };

  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && path === '/v1/models') {
      const model = { id: 'fake', object: 'model', created: 0, owned_by: 'runstate' };
      return sendJson(res, 200, { object: 'list', data: [model] });
    }
    if (req.method !== 'POST' || path !== '/v1/chat/completions') {
      return sendError(res, { fault: 'status', status: 404, message: `Unknown route ${req.method} ${path}` });
    }
    const parts: Buffer[] = [];
    req.on('data', (part: Buffer) => parts.push(part));
    req.on('end', () => chat(req, res, Buffer.concat(parts).toString('utf8')));
    // A client that goes away mid-upload is not an error of the server.
    req.on('error', () => undefined);
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: options.port ?? 0, host: '127.0.0.1', backlog: options.backlog }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}/v1`,
    port,
    requests,
    nextRequest() {
      const request = requests[taken];
      if (request) {
        taken++;
        return Promise.resolve(request);
      }
      if (closing) return Promise.reject(new Error('the fake OpenAI server is closed'));
      return new Promise((resolve, reject) => waiters.push({ resolve, reject }));
    },
    enqueue(...responses) {
      for (const response of responses) checkResponse(response);
      queue.push(...responses);
    },
    setDefault(response) {
      if (response) checkResponse(response);
      fallback = response;
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        // Closing the server is not the client going away.
        for (const request of requests) request.serverDone = true;
        for (const waiter of waiters.splice(0)) waiter.reject(new Error('the fake OpenAI server is closed'));
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
