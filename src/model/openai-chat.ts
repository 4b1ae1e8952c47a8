import OpenAI, { APIConnectionError, APIError, APIUserAbortError } from 'openai';
import type { Stream } from 'openai/core/streaming';
import type { TokenUsage } from '../../machines/run-types.js';
import { RunstateError } from '../errors.js';
import type { ChatModel, ChatRequest, ModelChunk } from './chat-model.js';
import { OfflineModel } from './offline-model.js';

/** Options of {@link OpenAIChat}. Only `id` is required. */
export interface OpenAIChatOptions {
  /** The model's name, as the server knows it (`gpt-5-mini`, `llama3.1`). */
  id: string;
  /** Default `process.env.OPENAI_API_KEY`. */
  apiKey?: string;
  /** Any OpenAI-compatible server (vLLM, llama.cpp, Ollama). Default `process.env.OPENAI_BASE_URL`, else OpenAI. */
  baseURL?: string;
  organization?: string;
  temperature?: number;
  /** Sent as `max_completion_tokens` (OpenAI's reasoning models reject `max_tokens`; pass that in `extraBody`). */
  maxTokens?: number;
  /** How long to wait for the response headers. Default: the SDK's, 10 minutes. */
  requestTimeoutMs?: number;
  /** A ready client (tests, proxies, Azure). Its own retries are ignored: each request is sent once. */
  client?: OpenAI;
  /** More body fields for the server (`top_p`, `reasoning_effort`, `max_tokens`...). Never overrides ours. */
  extraBody?: Record<string, unknown>;
}

/** Statuses worth sending the same request again for: timeout, conflict, rate limit. And every 5xx. */
const RETRYABLE_STATUSES = new Set([408, 409, 429]);

/** Local OpenAI-compatible servers need no key, but the SDK refuses to start without one. */
const PLACEHOLDER_API_KEY = 'not-needed';

/**
 * A {@link ChatModel} on the OpenAI chat-completions API, through the `openai` SDK: works with OpenAI
 * and any compatible server. Every SDK error is turned into a {@link RunstateError} here, once:
 * `MODEL_REQUEST_FAILED` (with `status`, `isRetryable`, `retryAfterMs`) when no output came yet,
 * `MODEL_STREAM_INCOMPLETE` when the stream broke or ended without a finish reason. An aborted
 * signal ends the stream quietly.
 *
 * With no API key and no base URL (neither in options nor in the environment) it runs the
 * deterministic {@link OfflineModel} instead (`offline` is true, `provider` is `'offline'`), so
 * examples work on a fresh machine.
 *
 * @example
 * ```ts
 * const model = new OpenAIChat({ id: 'gpt-5-mini' }); // OPENAI_API_KEY from the environment
 * const local = new OpenAIChat({ id: 'llama3.1', baseURL: 'http://localhost:11434/v1' });
 *
 * const controller = new AbortController();
 * for await (const chunk of model.stream({ messages: [{ role: 'user', content: 'Hi' }], signal: controller.signal })) {
 *   if (chunk.type === 'delta') process.stdout.write(chunk.content);
 *   else console.log('\n', chunk.finishReason, chunk.usage);
 * }
 * ```
 */
export class OpenAIChat implements ChatModel {
  readonly id: string;
  readonly provider: string;
  /** True when no key or server was configured and the offline model answers instead. */
  readonly offline: boolean;
  readonly #backend: { client: OpenAI } | { offline: OfflineModel };
  readonly #options: OpenAIChatOptions;

  constructor(options: OpenAIChatOptions) {
    this.id = options.id;
    this.#options = options;
    // Empty variables count as unset, as they do in a shell `${VAR:-default}`.
    const apiKey = options.apiKey || process.env.OPENAI_API_KEY || undefined;
    const baseURL = options.baseURL || process.env.OPENAI_BASE_URL || undefined;
    this.offline = !options.client && !apiKey && !baseURL;
    this.provider = this.offline ? 'offline' : 'OpenAI';
    this.#backend = this.offline
      ? { offline: new OfflineModel({ id: options.id }) }
      : {
          client:
            options.client ??
            new OpenAI({
              apiKey: apiKey ?? PLACEHOLDER_API_KEY,
              baseURL,
              organization: options.organization,
              timeout: options.requestTimeoutMs,
              // Retries are states of the run machine: openai 6 sleeps through an abort while it
              // waits to retry, and a retry the inspector can show and a cancel can end is the point.
              maxRetries: 0,
            }),
        };
  }

  stream(request: ChatRequest): AsyncIterable<ModelChunk> {
    return 'offline' in this.#backend
      ? this.#backend.offline.stream(request)
      : this.#stream(this.#backend.client, request);
  }

  #stream(client: OpenAI, request: ChatRequest): AsyncIterable<ModelChunk> {
    const { temperature, maxTokens, extraBody } = this.#options;
    const body = {
      ...extraBody,
      model: this.id,
      messages: request.messages,
      stream: true as const,
      stream_options: { include_usage: true },
      ...(temperature === undefined ? {} : { temperature }),
      ...(maxTokens === undefined ? {} : { max_completion_tokens: maxTokens }),
    };
    return { [Symbol.asyncIterator]: () => new CompletionChunks(client, this.id, body, request.signal) };
  }
}

type CompletionStream = Stream<OpenAI.Chat.Completions.ChatCompletionChunk>;

/**
 * The deltas of one streamed chat completion, then its `end`. An iterator written out rather than
 * an async generator: it sits on every token's path, and a generator's `yield` costs a few more
 * promise turns per delta than parsing the delta does.
 */
class CompletionChunks implements AsyncIterator<ModelChunk> {
  #stream: CompletionStream | undefined;
  #chunks: AsyncIterator<OpenAI.Chat.Completions.ChatCompletionChunk> | undefined;
  #finishReason: string | undefined;
  #usage: TokenUsage | undefined;
  #delivered = false;
  #finished = false;

  readonly #client: OpenAI;
  readonly #modelId: string;
  readonly #body: OpenAI.Chat.Completions.ChatCompletionCreateParamsStreaming;
  readonly #signal: AbortSignal;

  constructor(
    client: OpenAI,
    modelId: string,
    body: OpenAI.Chat.Completions.ChatCompletionCreateParamsStreaming,
    signal: AbortSignal,
  ) {
    this.#client = client;
    this.#modelId = modelId;
    this.#body = body;
    this.#signal = signal;
  }

  async next(): Promise<IteratorResult<ModelChunk, undefined>> {
    if (this.#finished || this.#signal.aborted) return this.#end();
    const chunks = this.#chunks ?? (await this.#request());
    if (!chunks) return this.#end();
    for (;;) {
      let result: IteratorResult<OpenAI.Chat.Completions.ChatCompletionChunk>;
      try {
        result = await chunks.next();
      } catch (error) {
        // The body failed: close the socket, never leak the request.
        this.#stream?.controller.abort();
        if (isAbort(error, this.#signal)) return this.#end();
        this.#finished = true;
        throw toRunstateError(error, { started: true, delivered: this.#delivered });
      }
      // The SDK ends its iteration quietly when the signal aborts, as if the body had ended.
      if (this.#signal.aborted) return this.#end();
      if (result.done) return this.#last();
      const chunk = result.value;
      const choice = chunk.choices[0];
      if (choice?.finish_reason) this.#finishReason = choice.finish_reason;
      if (chunk.usage) this.#usage = usageOf(chunk.usage);
      const delta: ReasoningDelta | undefined = choice?.delta;
      const content = delta?.content;
      // vLLM, llama.cpp and DeepSeek name it `reasoning_content`; Ollama, OpenRouter and newer vLLM `reasoning`.
      const reasoning = delta?.reasoning_content || delta?.reasoning;
      if (reasoning && typeof reasoning === 'string') {
        this.#delivered = true;
        return { done: false, value: { type: 'delta', content: content || '', reasoning } };
      }
      if (content) {
        this.#delivered = true;
        return { done: false, value: { type: 'delta', content } };
      }
    }
  }

  /** The consumer stopped early: close the socket. */
  return(): Promise<IteratorResult<ModelChunk, undefined>> {
    if (!this.#finished) this.#stream?.controller.abort();
    return Promise.resolve(this.#end());
  }

  async #request(): Promise<AsyncIterator<OpenAI.Chat.Completions.ChatCompletionChunk> | undefined> {
    try {
      // `maxRetries` also per request: an injected client may have retries of its own.
      this.#stream = await this.#client.chat.completions.create(this.#body, {
        signal: this.#signal,
        maxRetries: 0,
      });
    } catch (error) {
      if (isAbort(error, this.#signal)) return undefined;
      this.#finished = true;
      throw toRunstateError(error, { started: false, delivered: false });
    }
    this.#chunks = this.#stream[Symbol.asyncIterator]();
    return this.#chunks;
  }

  /** The body ended: with a finish reason it is the `end`, without one the stream is incomplete. */
  #last(): IteratorResult<ModelChunk, undefined> {
    if (this.#finished) return this.#end();
    this.#finished = true;
    if (this.#finishReason === undefined) {
      throw new RunstateError(
        'MODEL_STREAM_INCOMPLETE',
        `The stream of ${this.#modelId} ended without a finish reason (the body closed early)`,
      );
    }
    return { done: false, value: { type: 'end', finishReason: this.#finishReason, usage: this.#usage } };
  }

  #end(): IteratorResult<ModelChunk, undefined> {
    this.#finished = true;
    return { done: true, value: undefined };
  }
}

/** A delta as reasoning models' servers send it: the SDK's type knows no reasoning. */
type ReasoningDelta = OpenAI.Chat.Completions.ChatCompletionChunk.Choice.Delta & {
  reasoning_content?: unknown;
  reasoning?: unknown;
};

/** A count the server did not send (or sent as something else than a number) is unknown, not 0. */
function usageOf(usage: OpenAI.CompletionUsage): TokenUsage {
  const count = (value: unknown) => (typeof value === 'number' && Number.isFinite(value) ? value : null);
  const input = count(usage.prompt_tokens);
  const output = count(usage.completion_tokens);
  const total = count(usage.total_tokens) ?? (input !== null && output !== null ? input + output : null);
  return { input_tokens: input, output_tokens: output, total_tokens: total };
}

function isAbort(error: unknown, signal: AbortSignal): boolean {
  return signal.aborted || error instanceof APIUserAbortError;
}

/**
 * Maps an SDK failure to the one error type. `started`: the response headers arrived; `delivered`:
 * a delta was yielded, so sending the request again would repeat output the consumer already has.
 */
function toRunstateError(error: unknown, { started, delivered }: { started: boolean; delivered: boolean }) {
  const message = error instanceof Error ? error.message : String(error);
  if (delivered) {
    return new RunstateError('MODEL_STREAM_INCOMPLETE', `The stream broke: ${message}`, { cause: error });
  }
  // `instanceof` on the generic class types the fields as `any`: widen to the declared defaults.
  const apiError: APIError | undefined = error instanceof APIError ? error : undefined;
  if (typeof apiError?.status === 'number') {
    const { status } = apiError;
    return new RunstateError('MODEL_REQUEST_FAILED', message, {
      status,
      retryable: RETRYABLE_STATUSES.has(status) || status >= 500,
      retryAfterMs: retryAfterMs(apiError.headers),
      cause: error,
    });
  }
  // The connection failed or dropped before any output (fetch reports a dropped body as a
  // TypeError): the same request may well succeed.
  const dropped = error instanceof APIConnectionError || (started && error instanceof TypeError);
  return new RunstateError('MODEL_REQUEST_FAILED', message, { retryable: dropped, cause: error });
}

/** `retry-after-ms` (OpenAI's), else `retry-after` in seconds or as an HTTP date. */
function retryAfterMs(headers: Headers | undefined): number | undefined {
  // `||`: a header sent empty reads as '', which Number() would take for 0.
  const ms = Number(headers?.get('retry-after-ms') || NaN);
  if (Number.isFinite(ms) && ms >= 0) return ms;
  const value = headers?.get('retry-after');
  if (!value) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}
