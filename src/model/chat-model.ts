import type { TokenUsage } from '../../machines/run-types.js';

/** One message of a conversation, as chat-completions APIs take it. */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/**
 * What a model stream yields: text deltas, then exactly one `end`. A stream that stops without an
 * `end` is incomplete, and the run fails with `MODEL_STREAM_INCOMPLETE`.
 *
 * A delta's `reasoning` is a reasoning model's reasoning (`delta.reasoning_content` or
 * `delta.reasoning` in chat completions), produced before the delta's `content`; either may be `''`.
 * `usage` is absent when the server reported none; a count it did not report is `null`.
 */
export type ModelChunk =
  | { type: 'delta'; content: string; reasoning?: string | undefined }
  | { type: 'end'; finishReason: string; usage?: TokenUsage | undefined };

/** One streamed request. */
export interface ChatRequest {
  messages: ChatMessage[];
  /** Aborted when the run stops needing the answer (cancel, timeout, shutdown): stop at once. */
  signal: AbortSignal;
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
}
