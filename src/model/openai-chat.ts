import { MAX_TIMER_MS } from '../../machines/run-types.js';
import OpenAI, { APIConnectionError, APIError, APIUserAbortError } from 'openai';
import { RunstateError } from '../errors.js';
import { checkOptionNames } from '../option-names.js';
import {
  isRetryableStatus,
  OUTPUT_WITHOUT_TEXT,
  readChunk,
  reasonOf,
  type CompletionState,
} from './chat-completion-chunk.js';
import {
  pushChatCompletionEvents,
  type ChatCompletionEvent,
  type ChatCompletionReading,
} from './chat-completion-stream.js';
import {
  deliver,
  streamModel,
  type ChatMessage,
  type ChatModel,
  type ChatRequest,
  type ModelChunk,
  type ModelStreamReceiver,
} from './chat-model.js';
import { sendInLaterTurn } from './request-starts.js';
import { nodeHttpFetch, UnreadableResponseError } from './node-http-fetch.js';
import { OfflineModel } from './offline-model.js';
import { PushedIterator, type PushedSource } from './pushed-iterator.js';
import { isCompleteJson } from './tool-call-assembler.js';

/** Options of {@link OpenAIChat}. Only `id` is required. */
export interface OpenAIChatOptions {
  /** The model's name, as the server knows it (`gpt-5-mini`, `llama3.1`). */
  id: string;
  /** Default `process.env.OPENAI_API_KEY`. */
  apiKey?: string | undefined;
  /** Any OpenAI-compatible server (vLLM, llama.cpp, Ollama). Default `process.env.OPENAI_BASE_URL`, else OpenAI. */
  baseURL?: string | undefined;
  organization?: string | undefined;
  temperature?: number | undefined;
  /**
   * Most tokens the model may generate (its reasoning included, on reasoning models). A run cut by
   * it completes with finish reason `length`. Sent as {@link maxTokensField}.
   */
  maxTokens?: number | undefined;
  /**
   * The body field `maxTokens` is sent as. Default: `max_completion_tokens` to OpenAI itself (no
   * base URL, or `api.openai.com`: its reasoning models refuse `max_tokens`), `max_tokens` to any
   * other server (vLLM, llama.cpp, Ollama, `transformers serve`: some ignore `max_completion_tokens`).
   */
  maxTokensField?: 'max_tokens' | 'max_completion_tokens' | undefined;
  /** How long to wait for the response headers. Default: the SDK's, 10 minutes. */
  requestTimeoutMs?: number | undefined;
  /**
   * A ready client (tests, proxies, Azure). Its own retries are ignored: each request is sent once.
   * Its HTTP errors keep the SDK's messages (a client made here reads any common error body).
   */
  client?: OpenAI | undefined;
  /** More body fields for the server (`top_p`, `reasoning_effort`...). Never overrides ours. */
  extraBody?: Record<string, unknown> | undefined;
  /**
   * Ask for the usage chunk (`stream_options: {include_usage: true}`), where a run's token counts
   * come from. Default `true`. `false` for a server that refuses the field (Mistral's API has
   * answered it 422 `extra_forbidden`): the counts are then what the server sends unasked, or null.
   */
  includeUsage?: boolean | undefined;
  /**
   * Send a reasoning model's reasoning back with its turns that asked for tools, in the field the
   * server streamed it in (`reasoning_content` or `reasoning`), and its `reasoning_details`
   * (OpenRouter's). Default `true`: DeepSeek's thinking mode refuses a later request without it, and
   * OpenRouter's Anthropic models with thinking want their signed details back. `false` for a
   * server that refuses the field on an assistant message (Groq's has answered 400 `property
   * 'reasoning' is unsupported`): the conversation is sent without either; the run's `messages`
   * keep them.
   */
  sendReasoning?: boolean | undefined;
}

/**
 * How long the end of a stream (`[DONE]`, or the body's end) may lag a chunk whose only news is the
 * finish reason, or the usage chunk after it, before the answer is taken as whole: servers send them
 * in one write. Half the run's idle timeout if that is shorter (`ChatRequest.idleTimeoutMs`).
 */
const AFTER_FINISH_MS = 1_000;

/**
 * Refuses a server address that is no http(s) URL now, naming where it came from: the SDK would
 * take `localhost:8000/v1` (scheme `localhost:`) and fail every request with a connection error.
 */
function checkBaseURL(baseURL: string, from: 'baseURL' | 'OPENAI_BASE_URL'): void {
  if (!URL.canParse(baseURL) || !/^https?:$/.test(new URL(baseURL).protocol)) {
    throw new RunstateError(
      'INVALID_INPUT',
      `OpenAIChat: ${from} must be an http:// or https:// URL, got ${JSON.stringify(baseURL)}`,
    );
  }
}

/** The options of {@link OpenAIChat}, by name: another is refused (see `checkOptionNames`). */
const OPENAI_CHAT_OPTIONS = [
  'id',
  'apiKey',
  'baseURL',
  'organization',
  'temperature',
  'maxTokens',
  'maxTokensField',
  'requestTimeoutMs',
  'client',
  'extraBody',
  'includeUsage',
  'sendReasoning',
];

/**
 * Refuses options that would not fail loudly later: a `requestTimeoutMs` of `NaN` fails every
 * request at once, a `maxTokens` of `NaN` is sent as `null`, an unknown `maxTokensField` drops the limit.
 */
function checkOptions(options: OpenAIChatOptions): void {
  const refuse = (message: string): never => {
    throw new RunstateError('INVALID_INPUT', `OpenAIChat: ${message}`);
  };
  if (typeof options !== 'object' || options === null) refuse('options must be an object with an id');
  // A misspelt `baseURL` would send the requests to api.openai.com.
  checkOptionNames(options, OPENAI_CHAT_OPTIONS, 'OpenAIChat');
  const { id, temperature, maxTokens, maxTokensField, requestTimeoutMs, extraBody } = options;
  if (typeof id !== 'string' || id.trim() === '')
    refuse('id must be the model name, a string that is not blank');
  for (const name of ['apiKey', 'baseURL', 'organization'] as const) {
    if (options[name] !== undefined && typeof options[name] !== 'string') refuse(`${name} must be a string`);
  }
  if (
    temperature !== undefined &&
    !(typeof temperature === 'number' && temperature >= 0 && temperature < Infinity)
  )
    refuse(`temperature must be a number ≥ 0, got ${String(temperature)}`);
  if (maxTokens !== undefined && !(Number.isInteger(maxTokens) && maxTokens >= 1))
    refuse(`maxTokens must be a whole number ≥ 1, got ${String(maxTokens)}`);
  if (
    maxTokensField !== undefined &&
    maxTokensField !== 'max_tokens' &&
    maxTokensField !== 'max_completion_tokens'
  )
    refuse(`maxTokensField must be 'max_tokens' or 'max_completion_tokens', got ${String(maxTokensField)}`);
  if (
    requestTimeoutMs !== undefined &&
    !(typeof requestTimeoutMs === 'number' && requestTimeoutMs > 0 && requestTimeoutMs <= MAX_TIMER_MS)
  )
    refuse(
      `requestTimeoutMs must be milliseconds > 0 (at most ${MAX_TIMER_MS}), got ${String(requestTimeoutMs)}`,
    );
  if (
    extraBody !== undefined &&
    (typeof extraBody !== 'object' || extraBody === null || Array.isArray(extraBody))
  )
    refuse('extraBody must be an object of body fields');
  for (const name of ['includeUsage', 'sendReasoning'] as const) {
    if (options[name] !== undefined && typeof options[name] !== 'boolean')
      refuse(`${name} must be true or false, got ${String(options[name])}`);
  }
}

/** The body field a token limit is sent as (see {@link OpenAIChatOptions.maxTokensField}). */
type MaxTokensField = NonNullable<OpenAIChatOptions['maxTokensField']>;

/** Local OpenAI-compatible servers need no key, but the SDK refuses to start without one. */
const PLACEHOLDER_API_KEY = 'not-needed';

/**
 * A {@link ChatModel} on the OpenAI chat-completions API, through the `openai` SDK: works with OpenAI
 * and any compatible server (vLLM, llama.cpp, Ollama, `transformers serve`). A reasoning model's
 * reasoning (`delta.reasoning_content` or `delta.reasoning`) comes as the deltas' `reasoning`. Every
 * failure is turned into a {@link RunstateError} here, once: `MODEL_REQUEST_FAILED` (with `status`,
 * `isRetryable`, `retryAfterMs`, and the server's reason from any common error body) when no output
 * came yet, `MODEL_STREAM_INCOMPLETE` when the stream broke after output or ended without a finish
 * reason; an error object sent inside the stream counts as the HTTP error of its `code`. The stream
 * ends at `[DONE]`, even when the server keeps the body open. An aborted signal ends it quietly.
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
  readonly #backend: { client: OpenAI; maxTokensField: MaxTokensField } | { offline: OfflineModel };
  readonly #options: OpenAIChatOptions;

  /** @throws `RunstateError` `INVALID_INPUT` naming an option out of range (checked here, not at each run). */
  constructor(options: OpenAIChatOptions) {
    checkOptions(options);
    this.id = options.id;
    this.#options = options;
    // Empty variables count as unset, as they do in a shell `${VAR:-default}`.
    const apiKey = options.apiKey || process.env.OPENAI_API_KEY || undefined;
    const baseURL = options.baseURL || process.env.OPENAI_BASE_URL || undefined;
    if (baseURL && !options.client) checkBaseURL(baseURL, options.baseURL ? 'baseURL' : 'OPENAI_BASE_URL');
    this.offline = !options.client && !apiKey && !baseURL;
    this.provider = this.offline ? 'offline' : 'OpenAI';
    if (this.offline) this.#backend = { offline: new OfflineModel({ id: options.id }) };
    else {
      const client =
        options.client ??
        new ReasonfulOpenAI({
          apiKey: apiKey ?? PLACEHOLDER_API_KEY,
          baseURL,
          organization: options.organization,
          timeout: options.requestTimeoutMs,
          // Retries are states of the run machine: openai 6 sleeps through an abort while it
          // waits to retry, and a retry the inspector can show and a cancel can end is the point.
          maxRetries: 0,
          // The body is read a socket read at a time for the whole stream: as a node stream,
          // not through undici's web streams (docs/performance.md).
          fetch: nodeHttpFetch,
        });
      // Once: the client's server does not change.
      const maxTokensField = options.maxTokensField ?? defaultMaxTokensField(client.baseURL);
      this.#backend = { client, maxTokensField };
    }
  }

  /** The server the requests go to (the client's base URL); `undefined` for the offline model. */
  get baseURL(): string | undefined {
    return 'client' in this.#backend ? this.#backend.client.baseURL : undefined;
  }

  stream(request: ChatRequest): AsyncIterable<ModelChunk> {
    const backend = this.#backend;
    if ('offline' in backend) return backend.offline.stream(request);
    return {
      [Symbol.asyncIterator]: () => {
        const chunks = new PushedIterator<ModelChunk>();
        const completion = this.#request(backend, request, {
          chunk: (chunk) => chunks.push(chunk),
          close: (error) => chunks.close(error),
        });
        // Asked for at the first `next()`, as a `for await` asks for it (sent a turn later).
        chunks.source = completion;
        return chunks;
      },
    };
  }

  /**
   * The push form of {@link OpenAIChat.stream} (see {@link ChatModel.streamTo}), which runs use: each
   * chunk reaches `receiver` in the tick its socket read came, then `close` once, with the error
   * `stream()` would throw, if any.
   */
  streamTo(request: ChatRequest, receiver: ModelStreamReceiver): void {
    if ('offline' in this.#backend) streamModel(this.#backend.offline, request, receiver);
    else this.#request(this.#backend, request, receiver).start();
  }

  #request(
    { client, maxTokensField }: { client: OpenAI; maxTokensField: MaxTokensField },
    request: ChatRequest,
    receiver: ModelStreamReceiver,
  ): CompletionRequest {
    const { temperature, maxTokens, extraBody, includeUsage, sendReasoning } = this.#options;
    const body = {
      ...extraBody,
      model: this.id,
      messages: sendReasoning === false ? request.messages.map(withoutReasoning) : request.messages,
      ...(request.tools?.length
        ? {
            tools: request.tools.map(({ name, description, parameters }) => ({
              type: 'function' as const,
              function: { name, description, parameters },
            })),
          }
        : {}),
      stream: true as const,
      ...(includeUsage === false ? {} : { stream_options: { include_usage: true } }),
      ...(temperature === undefined ? {} : { temperature }),
      ...(maxTokens === undefined ? {} : { [maxTokensField]: maxTokens }),
    };
    // Half the run's idle timeout at most: the answer is whole before the run would time out.
    const afterFinishMs = Math.min(AFTER_FINISH_MS, (request.idleTimeoutMs ?? Infinity) / 2);
    return new CompletionRequest(client, this.id, body, request.signal, receiver, afterFinishMs);
  }
}

/** An assistant message without the reasoning it carries back (see {@link OpenAIChatOptions.sendReasoning}). */
function withoutReasoning(message: ChatMessage): ChatMessage {
  if (
    message.role !== 'assistant' ||
    !('reasoning_content' in message || 'reasoning' in message || 'reasoning_details' in message)
  )
    return message;
  const {
    reasoning_content: _content,
    reasoning: _reasoning,
    reasoning_details: _details,
    ...rest
  } = message;
  return rest;
}

/** OpenAI itself takes `max_completion_tokens`; compatible servers know `max_tokens` (some only that). */
function defaultMaxTokensField(baseURL: string): MaxTokensField {
  return isOpenAIServer(baseURL) ? 'max_completion_tokens' : 'max_tokens';
}

/** Whether `baseURL` is OpenAI's own server: `api.openai.com`, or a regional one (`eu.api.openai.com`). */
export function isOpenAIServer(baseURL: string): boolean {
  if (!URL.canParse(baseURL)) return false;
  const host = new URL(baseURL).hostname;
  return host === 'api.openai.com' || host.endsWith('.api.openai.com');
}

/**
 * The SDK's client, with the server's reason in its HTTP errors whatever the body's shape: the SDK
 * reads only OpenAI's `{error: {message}}` and reports FastAPI's `{detail}` (`transformers serve`)
 * or a bare `{message}` as "400 status code (no body)".
 */
class ReasonfulOpenAI extends OpenAI {
  protected override makeStatusError(
    status: number,
    body: object | undefined,
    text: string | undefined,
    headers: Headers,
  ): APIError {
    let reason = reasonOf(body ?? text);
    if (reason === undefined) return super.makeStatusError(status, body as object, text, headers);
    // The SDK puts the status first: a reason that starts with it (a proxy's page, "502 Bad Gateway")
    // would have it twice.
    if (reason.startsWith(`${status} `)) reason = reason.slice(`${status} `.length);
    const error: unknown = body && 'error' in body ? body.error : undefined;
    const fields = typeof error === 'object' && error !== null ? error : {};
    return super.makeStatusError(status, { error: { ...fields, message: reason } }, undefined, headers);
  }
}

/**
 * One streamed chat completion, pushed: its deltas, then its `end`, then `close`. The SDK sends the
 * request (auth, headers, HTTP errors) and hands over the response; {@link pushChatCompletionEvents}
 * reads its body (ending at `[DONE]`, even when the server keeps the body open) and
 * {@link readChunk} each event, in the tick the socket read came: no promise per delta.
 */
class CompletionRequest implements PushedSource {
  readonly #state: CompletionState = { finishReason: undefined, usage: undefined, delivered: false };
  #reading: ChatCompletionReading | undefined;
  #paused = false;
  /** Over: closed (or told to stop); nothing more reaches the receiver. */
  #finished = false;
  /**
   * Armed by a finish reason with no output beside it, pushed back by each event after it, disarmed
   * by output (see {@link CompletionRequest.#event}).
   */
  #endAfterFinish: ReturnType<typeof setTimeout> | undefined;
  /** A finish reason's events, waiting for the next tick, to be told as output (see below). */
  #toldAfterFinish = false;
  /**
   * Events after output that end nothing yet (a finish reason, the usage after it) are output with no
   * text to the receiver, so the run's idle timer counts from them, not from the last text: a server
   * that keeps the body open after a late finish reason must not fail a whole answer `RUN_TIMEOUT`.
   * Told a tick later, once the read is handled: the end that usually comes in the same read makes
   * it needless (then a stream's consumer sees no empty delta; else one, as for a tool call).
   */
  readonly #tellAfterFinish = (): void => {
    this.#toldAfterFinish = false;
    if (!this.#finished && !deliver(this.#receiver, OUTPUT_WITHOUT_TEXT)) this.#stopAfterReceiverThrew();
  };

  readonly #client: OpenAI;
  readonly #modelId: string;
  readonly #body: OpenAI.Chat.Completions.ChatCompletionCreateParamsStreaming;
  readonly #signal: AbortSignal;
  readonly #receiver: ModelStreamReceiver;
  /** How long the end may lag a finish reason with no output beside it (see {@link AFTER_FINISH_MS}). */
  readonly #afterFinishMs: number;
  /**
   * The SDK's signal: aborted by the run's while the request is open, and let go of once it is over.
   * The SDK aborts a controller of its own, with a new `DOMException` (a stack trace), when the
   * signal it was given aborts, and the run's aborts at the end of every run, also one that completed.
   */
  readonly #requestAbort = new AbortController();
  readonly #onAbort = (): void => {
    this.#requestAbort.abort(this.#signal.reason);
    // Ends quietly: an abort is how a stream is stopped, not a failure.
    this.#close();
  };

  constructor(
    client: OpenAI,
    modelId: string,
    body: OpenAI.Chat.Completions.ChatCompletionCreateParamsStreaming,
    signal: AbortSignal,
    receiver: ModelStreamReceiver,
    afterFinishMs: number,
  ) {
    this.#client = client;
    this.#modelId = modelId;
    this.#body = body;
    this.#signal = signal;
    this.#receiver = receiver;
    this.#afterFinishMs = afterFinishMs;
  }

  /**
   * Has the request sent in a later turn ({@link sendInLaterTurn}), unless the run is over by then;
   * what comes of it reaches the receiver.
   */
  start(): void {
    if (this.#signal.aborted) return this.#close();
    this.#signal.addEventListener('abort', this.#onAbort, { once: true });
    sendInLaterTurn(() => this.#send());
  }

  /** The consumer left early: close the socket (or the request still waiting for its headers). */
  stop(): void {
    if (!this.#finish()) return;
    this.#reading?.stop();
    this.#requestAbort.abort();
  }

  pause(): void {
    this.#paused = true;
    this.#reading?.pause();
  }

  resume(): void {
    this.#paused = false;
    this.#reading?.resume();
  }

  async #send(): Promise<void> {
    if (this.#finished) return;
    let response: Response;
    try {
      // `maxRetries` also per request: an injected client may have retries of its own.
      response = await this.#client.chat.completions
        .create(this.#body, { signal: this.#requestAbort.signal, maxRetries: 0 })
        .asResponse();
    } catch (error) {
      if (isAbort(error, this.#signal)) this.#close();
      else this.#close(toRunstateError(error, false));
      return;
    }
    // Stopped while the headers came: the abort closed the socket.
    if (this.#finished) return;
    try {
      this.#reading = pushChatCompletionEvents(response, {
        event: (event) => this.#event(event),
        close: (error, done) => this.#ended(error, done),
      });
    } catch (error) {
      // A response with no body to read (from an injected client's fetch): not a dropped connection.
      this.#close(toRunstateError(error, false, { started: false }));
      return;
    }
    if (this.#paused) this.#reading.pause();
  }

  #event(event: ChatCompletionEvent): void {
    if (this.#finished) return;
    let chunk: ModelChunk | undefined;
    const usage = this.#state.usage;
    try {
      chunk = readChunk(event, this.#state);
    } catch (error) {
      // The server sent an error inside the stream, or a chunk that cannot be read (a field of
      // another shape than the protocol's): close the socket, never leak the request.
      this.#reading?.stop();
      this.#close(
        error instanceof RunstateError ? error : unreadableChunk(event, error, this.#state.delivered),
      );
      return;
    }
    if (chunk) {
      if (!deliver(this.#receiver, chunk)) this.#stopAfterReceiverThrew();
      // Output after a finish reason: some gateways put `finish_reason` on every chunk, so the answer
      // goes on until `[DONE]` or the body's end. (Checked first: this runs for every chunk.)
      else if (this.#endAfterFinish) {
        clearTimeout(this.#endAfterFinish);
        this.#endAfterFinish = undefined;
      }
    }
    // A finish reason with no output beside it (the protocol's last chunk but the usage one): should
    // neither `[DONE]` nor the body's end follow (a server or proxy that keeps the stream open; one
    // that ignores `stream_options` sends no usage), the answer is whole a second after the last event
    // (half the run's idle timeout if shorter).
    else if (this.#state.finishReason !== undefined) {
      // Only news (the finish reason, the usage) restarts the wait and counts as the model's output:
      // empty chunks after a whole answer (a keep-alive) must not keep it open for good.
      if (this.#endAfterFinish && this.#state.usage === usage) return;
      if (this.#endAfterFinish) this.#endAfterFinish.refresh();
      else
        this.#endAfterFinish = setTimeout(() => {
          this.#reading?.stop();
          this.#ended(undefined);
        }, this.#afterFinishMs);
      if (this.#state.delivered && !this.#toldAfterFinish) {
        this.#toldAfterFinish = true;
        process.nextTick(this.#tellAfterFinish);
      }
    }
  }

  /** The receiver threw, and was told: nothing more reaches it, and the socket closes. */
  #stopAfterReceiverThrew(): void {
    if (!this.#finish()) return;
    this.#reading?.stop();
    this.#requestAbort.abort();
  }

  /**
   * The body's events are over (at `[DONE]` when `done`): with a finish reason that is the `end`,
   * without one the stream is incomplete.
   */
  #ended(error: unknown, done = false): void {
    if (this.#finished) return;
    if (error !== undefined) {
      if (isAbort(error, this.#signal)) this.#close();
      // After a finish reason with no output beside it the answer is whole: a connection that breaks
      // then (a reset instead of the usage chunk or `[DONE]`) loses nothing but the token counts.
      else if (this.#endAfterFinish === undefined) this.#close(toRunstateError(error, this.#state.delivered));
      else this.#ended(undefined);
      return;
    }
    const { finishReason, usage, toolCalls, reasoningField, reasoningDetails, delivered } = this.#state;
    if (finishReason === undefined) {
      this.#close(
        new RunstateError(
          'MODEL_STREAM_INCOMPLETE',
          `The stream of ${this.#modelId} ended without a finish reason (${done ? 'the server sent [DONE] without one' : 'the body closed early'})`,
          // Before any output, as a connection dropped then: sent again, nothing would repeat (an
          // empty 200 from a gateway, a replica that went away).
          { retryable: !delivered },
        ),
      );
      return;
    }
    // The calls end the turn whatever the finish reason says (some servers say `stop` with calls),
    // but for a call the token limit cut: the turn is then an answer cut by the limit, as a text
    // would be (run, the cut call would fail and the model, cut again, ask again to the last round).
    const asked = toolCalls?.size ? toolCalls.calls() : [];
    // No arguments at all is a call of a tool without parameters, but for the last call: the limit
    // may have fallen right after its name.
    const cut =
      finishReason === 'length' &&
      asked.some(
        ({ function: { arguments: args } }, i) =>
          !isCompleteJson(args) && (args.trim() !== '' || i === asked.length - 1),
      );
    const calls = asked.length > 0 && !cut ? { toolCalls: asked, reasoningField, reasoningDetails } : {};
    // Over before the `end` is handed out: the run moves on at once and aborts its signal, which
    // must find nothing to abort (the socket goes back to the pool).
    this.#finish();
    if (deliver(this.#receiver, { type: 'end', finishReason, usage, ...calls })) this.#receiver.close();
  }

  /** Tells the receiver the stream is over, once. */
  #close(error?: unknown): void {
    if (this.#finish()) this.#receiver.close(error);
  }

  /**
   * The request is over: the run's signal has nothing to abort any more. False if it was already.
   */
  #finish(): boolean {
    if (this.#finished) return false;
    this.#finished = true;
    clearTimeout(this.#endAfterFinish);
    this.#signal.removeEventListener('abort', this.#onAbort);
    return true;
  }
}

function isAbort(error: unknown, signal: AbortSignal): boolean {
  return signal.aborted || error instanceof APIUserAbortError;
}

/**
 * Maps a failure of the request or its body to the one error type. `delivered`: a delta was handed
 * out, so sending the request again would repeat output the consumer already has; `started`: the
 * response headers had arrived.
 */
/**
 * A chunk whose fields are not of the protocol's shapes (a `tool_calls` entry that is `null`): the
 * server does not speak it, and the same request sent again would not change that. Named, as an
 * event that is not a JSON object is, not reported as the `TypeError` reading it threw (which reads
 * as a dropped connection, and is retried); after output, the stream broke.
 */
function unreadableChunk(event: ChatCompletionEvent, error: unknown, delivered: boolean): RunstateError {
  const text = JSON.stringify(event);
  const why = error instanceof Error ? error.message : String(error);
  const message = `the model server sent a chunk that cannot be read (${why}): ${text.length > 120 ? `${text.slice(0, 120)}…` : text}`;
  if (delivered)
    return new RunstateError('MODEL_STREAM_INCOMPLETE', `The stream broke: ${message}`, { cause: error });
  return new RunstateError('MODEL_REQUEST_FAILED', message, { retryable: false, cause: error });
}

function toRunstateError(error: unknown, delivered: boolean, { started = true } = {}): RunstateError {
  if (error instanceof RunstateError) return error;
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
      retryable: isRetryableStatus(status),
      retryAfterMs: retryAfterMs(apiError.headers),
      cause: error,
    });
  }
  // A response that no retry could read (an unknown encoding, a redirect loop): its own reason, not
  // the SDK's "Connection error.", and not sent again.
  const cause = error instanceof APIConnectionError ? error.cause : error;
  if (cause instanceof UnreadableResponseError) {
    return new RunstateError('MODEL_REQUEST_FAILED', cause.message, { retryable: false, cause: error });
  }
  // The connection failed or dropped before any output (fetch reports a dropped body as a
  // TypeError): the same request may well succeed.
  const dropped = error instanceof APIConnectionError || (started && error instanceof TypeError);
  // The SDK's "Connection error." says nothing of why: the socket's own reason does
  // (`connect ECONNREFUSED 127.0.0.1:8000`, a mistyped base URL).
  const why = error instanceof APIConnectionError ? innermostMessage(error.cause) : undefined;
  return new RunstateError('MODEL_REQUEST_FAILED', why ? `${message} (${why})` : message, {
    retryable: dropped,
    cause: error,
  });
}

/** The message of the last error in a chain of causes (`fetch failed` → `connect ECONNREFUSED ...`). */
function innermostMessage(error: unknown): string | undefined {
  let message: string | undefined;
  for (let cause = error, depth = 0; cause instanceof Error && depth < 5; cause = cause.cause, depth++) {
    if (cause.message) message = cause.message;
  }
  return message;
}

/**
 * `retry-after-ms` (OpenAI's, milliseconds), else `retry-after` in whole seconds or as an HTTP date
 * (RFC 9110 10.2.3: its three formats). Anything else (`-1`, `1e3`, `0x10`, which `Number` and
 * `Date.parse` would read as something) is no wait: the machine's own backoff applies.
 */
function retryAfterMs(headers: Headers | undefined): number | undefined {
  const ms = headers?.get('retry-after-ms')?.trim();
  if (ms && /^\d+(?:\.\d+)?$/.test(ms)) return Number(ms);
  const value = headers?.get('retry-after')?.trim();
  if (!value) return undefined;
  if (/^\d+$/.test(value)) return Number(value) * 1000;
  const form = HTTP_DATE.exec(value);
  if (!form) return undefined;
  // asctime's form names no zone, which `Date.parse` would take for local time: HTTP's is GMT.
  const date = Date.parse(form[1] ? `${value} GMT` : value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

/** An HTTP date: IMF-fixdate, RFC 850's, or asctime's, as RFC 9110 5.6.7 has recipients read them. */
const HTTP_DATE =
  /^(?:[A-Za-z]{3}, \d{2} [A-Za-z]{3} \d{4} \d{2}:\d{2}:\d{2} GMT|[A-Za-z]{6,9}, \d{2}-[A-Za-z]{3}-\d{2} \d{2}:\d{2}:\d{2} GMT|([A-Za-z]{3} [A-Za-z]{3} [ \d]\d \d{2}:\d{2}:\d{2} \d{4}))$/;
