import { RunstateError } from '../errors.js';
import type {
  ReasoningDetail,
  ReasoningField,
  TokenUsage,
  ToolCallRequest,
} from '../../machines/run-types.js';

export type { ReasoningDetail, ReasoningField, ToolCallRequest };

/**
 * One message of a conversation, in the chat-completions form, so that an OpenAI-compatible server
 * takes it as it is: an assistant turn may ask for tool calls (`tool_calls`), and each call's result
 * comes back as a `tool` message with the call's id.
 */
export type ChatMessage =
  | { role: 'system' | 'user'; content: string }
  | {
      role: 'assistant';
      content: string;
      tool_calls?: ToolCallRequest[] | undefined;
      /** The reasoning of a turn that asked for tools, in the field the model streamed it in. */
      reasoning_content?: string | undefined;
      reasoning?: string | undefined;
      /** The structured reasoning of a turn that asked for tools, as the server streamed it (OpenRouter). */
      reasoning_details?: ReasoningDetail[] | undefined;
    }
  | { role: 'tool'; tool_call_id: string; content: string };

/** A tool as the model sees it: a name, what it does, and its arguments as a JSON Schema object. */
export interface ToolDefinition {
  name: string;
  description: string;
  /** A JSON Schema of type `object`. */
  parameters: Record<string, unknown>;
}

/**
 * What a model stream yields: text deltas, then exactly one `end`. A stream that stops without an
 * `end` is incomplete, and the run fails with `MODEL_STREAM_INCOMPLETE`. The tool calls a turn asks
 * for come whole with the `end` (their arguments are only known once the turn is over).
 *
 * A delta's `reasoning` is a reasoning model's reasoning (`delta.reasoning_content` or
 * `delta.reasoning` in chat completions), produced before the delta's `content`; either may be `''`.
 * `usage` is absent when the server reported none; a count it did not report is `null`.
 */
export type ModelChunk =
  | {
      type: 'delta';
      content: string;
      reasoning?: string | undefined;
      /**
       * A tool call's arguments streamed (they come whole with `end`), or other output with no text
       * (OpenRouter's encrypted `reasoning_details`; a finish reason's chunk, or the usage after it,
       * once output came): it keeps the run alive (its idle timeout) as content does, and a failure
       * after it is not retried.
       */
      toolCall?: true | undefined;
    }
  | {
      type: 'end';
      finishReason: string;
      usage?: TokenUsage | undefined;
      /**
       * The calls this turn asks for, in order; absent or empty for an answer. A call with no id, or
       * the id of an earlier call of the turn or of the conversation, is given a made-up one by the
       * runtime.
       */
      toolCalls?: ToolCallRequest[] | undefined;
      /**
       * The delta field the turn's reasoning came in (`reasoning_content` or `reasoning`), when it
       * reasoned: an assistant message that asked for tools carries its reasoning back in it. Absent:
       * the turn's reasoning is not sent back.
       */
      reasoningField?: ReasoningField | undefined;
      /**
       * The turn's `reasoning_details` (OpenRouter), whole entries in the order they came, when it
       * asked for tools and streamed some: sent back, unmodified, on its assistant message.
       */
      reasoningDetails?: ReasoningDetail[] | undefined;
    };

/** One streamed request. */
export interface ChatRequest {
  messages: ChatMessage[];
  /** Aborted when the run stops needing the answer (cancel, timeout, shutdown): stop at once. */
  signal: AbortSignal;
  /** The tools the model may call; absent or empty for none. */
  tools?: ToolDefinition[] | undefined;
  /**
   * How long the run waits for the model's next event before it fails `RUN_TIMEOUT` (its
   * `idleTimeoutMs`): a model that waits for an optional part of the stream (`OpenAIChat`, for the
   * usage after a finish reason on a body left open) waits less. Absent: no such limit is known.
   */
  idleTimeoutMs?: number | undefined;
}

/**
 * Where {@link ChatModel.streamTo} pushes a stream: the chunks {@link ChatModel.stream} would yield,
 * then `close` once, with the error it would throw, if any.
 */
export interface ModelStreamReceiver {
  /** Must not throw: a receiver that does fails the stream with an `INTERNAL` error naming it. */
  chunk(chunk: ModelChunk): void;
  close(error?: unknown): void;
}

/**
 * A streaming chat model. Implementations throw a {@link RunstateError} (or anything; it is mapped
 * at the boundary) for a failed request, and end quietly, or throw, once `signal` is aborted.
 */
export interface ChatModel {
  /** The model's name, as the provider knows it (`gpt-5-mini`). */
  readonly id: string;
  /** Who serves it (`OpenAI`, `offline`). */
  readonly provider: string;
  stream(request: ChatRequest): AsyncIterable<ModelChunk>;
  /**
   * Optional: the same stream pushed instead of pulled, which runs use when a model has it. Each
   * chunk is handed over as it is read, with no promise per chunk (an async iterator costs a few
   * promise turns per chunk, more than parsing it does). Once `signal` is aborted nothing more
   * needs to come; a `close` that still comes is ignored.
   */
  streamTo?: ((request: ChatRequest, receiver: ModelStreamReceiver) => void) | undefined;
}

/**
 * Refuses a model that is no {@link ChatModel}: a string (Agno's `model="openai:gpt-4o"`), or an
 * object without `stream`. Every run would otherwise fail as if the model server had.
 */
export function checkChatModel(model: unknown): asserts model is ChatModel {
  const { id, provider, stream } = (
    typeof model === 'object' && model !== null ? model : {}
  ) as Partial<ChatModel>;
  if (typeof stream !== 'function' || typeof id !== 'string' || typeof provider !== 'string')
    throw new RunstateError(
      'INVALID_INPUT',
      `model must be a chat model (new OpenAIChat({ id: 'gpt-5-mini' }), or an object with id, provider and stream()), got ${typeof model === 'string' ? JSON.stringify(model) : typeof model}`,
    );
}

/**
 * Streams `request` from `model` into `receiver`: pushed by its {@link ChatModel.streamTo} when it
 * has one, else its {@link ChatModel.stream} iterated (and left, which closes it, once `signal` is
 * aborted).
 */
export function streamModel(model: ChatModel, request: ChatRequest, receiver: ModelStreamReceiver): void {
  if (model.streamTo) {
    model.streamTo(request, checkingReceiver(receiver));
    return;
  }
  void (async () => {
    try {
      for await (const chunk of model.stream(request)) {
        if (request.signal.aborted) return;
        const checked = checkedChunk(chunk);
        if (typeof checked === 'string') {
          // Leaving the loop closes the stream.
          receiver.close(badChunk(checked));
          return;
        }
        // A throw of the receiver is not the model's failure: leaving the loop closes the stream.
        if (!deliver(receiver, checked)) return;
      }
      receiver.close();
    } catch (error) {
      receiver.close(error);
    }
  })();
}

/**
 * `receiver` behind the checks a pulled stream's chunks get: a model's `streamTo` is held to the same
 * chunks as its `stream()` (a `null` content is none; a chunk that is no delta or end fails the run).
 */
function checkingReceiver(receiver: ModelStreamReceiver): ModelStreamReceiver {
  return {
    chunk(chunk) {
      const checked = checkedChunk(chunk);
      if (typeof checked === 'string') receiver.close(badChunk(checked));
      else receiver.chunk(checked);
    },
    close: (error) => receiver.close(error),
  };
}

function badChunk(what: string): RunstateError {
  return new RunstateError('MODEL_REQUEST_FAILED', `the model's stream yielded ${what}`, {
    retryable: false,
  });
}

/**
 * A chunk of a model written in JavaScript (no types to hold it to `ModelChunk`) as the runtime
 * takes it, or what is wrong with it. A delta's `content` or `reasoning` of `null` is none (a thin
 * wrapper of a chat completions stream passes `delta.content` on as it comes), not the text "null".
 */
function checkedChunk(chunk: unknown): ModelChunk | string {
  const { type, content, reasoning } = (chunk ?? {}) as Record<string, unknown>;
  if (type === 'end') return checkedEnd(chunk as Record<string, unknown>);
  if (type !== 'delta') return `a chunk that is no delta or end (${describe(chunk)})`;
  if (content != null && typeof content !== 'string') return `a delta whose content is ${describe(content)}`;
  if (reasoning != null && typeof reasoning !== 'string')
    return `a delta whose reasoning is ${describe(reasoning)}`;
  if (typeof content === 'string' && reasoning !== null) return chunk as ModelChunk;
  return {
    ...(chunk as ModelChunk & { type: 'delta' }),
    content: content ?? '',
    reasoning: reasoning ?? undefined,
  };
}

/**
 * An end as the runtime takes it: one that names no reason ended as a model's answer does; a token
 * count that is no count (a string, a negative or infinite number) is one not reported, `null`, as
 * `usage` that is no object is none; `toolCalls` that are no list fail the run.
 */
function checkedEnd(chunk: Record<string, unknown>): ModelChunk | string {
  const { finishReason, usage, toolCalls } = chunk;
  if (toolCalls != null && !Array.isArray(toolCalls))
    return `an end whose toolCalls are ${describe(toolCalls)}`;
  const counts = checkedUsage(usage);
  if (typeof finishReason === 'string' && counts === usage) return chunk as ModelChunk;
  return {
    ...(chunk as ModelChunk & { type: 'end' }),
    finishReason: typeof finishReason === 'string' ? finishReason : 'stop',
    usage: counts,
  };
}

function checkedUsage(usage: unknown): TokenUsage | undefined {
  if (typeof usage !== 'object' || usage === null) return undefined;
  const { input_tokens, output_tokens, total_tokens } = usage as Record<string, unknown>;
  const counts = [input_tokens, output_tokens, total_tokens].map(tokenCount);
  if (counts[0] === input_tokens && counts[1] === output_tokens && counts[2] === total_tokens)
    return usage as TokenUsage;
  return { input_tokens: counts[0]!, output_tokens: counts[1]!, total_tokens: counts[2]! };
}

function tokenCount(count: unknown): number | null {
  return typeof count === 'number' && Number.isFinite(count) && count >= 0 ? count : null;
}

function describe(value: unknown): string {
  if (value === null || typeof value !== 'object') return `${typeof value} ${String(value)}`.slice(0, 80);
  return JSON.stringify(value)?.slice(0, 80) ?? 'an object';
}

/**
 * Hands `chunk` to `receiver`; a receiver that throws is told so with `close` (an `INTERNAL` error
 * naming the throw), never left to look like a failure of the model's stream. False when it threw.
 */
export function deliver(receiver: ModelStreamReceiver, chunk: ModelChunk): boolean {
  try {
    receiver.chunk(chunk);
    return true;
  } catch (error) {
    receiver.close(receiverError(error));
    return false;
  }
}

/** The error a receiver that threw is closed with. */
function receiverError(error: unknown): RunstateError {
  const what = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return new RunstateError('INTERNAL', `the receiver of the model stream threw ${what}`, { cause: error });
}
