/**
 * Types shared by the run machine and the rest of runstate. Plain data only: everything here can be
 * serialised, sent to an inspector or stored in another process.
 */

/** The longest delay a Node timer holds: past it (`Infinity` too), a timer fires after 1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** Every {@link RunStatus}, in the order a run can pass through them. */
export const RUN_STATUSES = ['pending', 'streaming', 'paused', 'completed', 'cancelled', 'failed'] as const;

/** The status of a run. It is always the run machine's top-level state, never stored apart from it. */
export type RunStatus = (typeof RUN_STATUSES)[number];

/** The statuses a run ends in. */
export type FinalRunStatus = Extract<RunStatus, 'completed' | 'cancelled' | 'failed'>;

/** Every reason a run may be cancelled for: over HTTP, from code, its client went away, shutdown. */
export const CANCEL_REASONS = ['api', 'code', 'client_disconnect', 'shutdown'] as const;

/** Why a run was cancelled. Cancellation is not an error: it has a reason, not a code. */
export type CancelReason = (typeof CANCEL_REASONS)[number];

/** Every error code runstate produces, from the model boundary to the HTTP API. */
export type ErrorCode =
  | 'RUN_NOT_FOUND'
  | 'RUN_ALREADY_FINISHED'
  | 'AGENT_NOT_FOUND'
  | 'SESSION_NOT_FOUND'
  | 'NOT_FOUND'
  | 'INVALID_INPUT'
  | 'UNAUTHORIZED'
  /** A request a web page of another site could have made: an unknown `Host`, a foreign `Origin`. */
  | 'FORBIDDEN'
  | 'PAYLOAD_TOO_LARGE'
  | 'SHUTTING_DOWN'
  | 'MODEL_REQUEST_FAILED'
  | 'MODEL_STREAM_INCOMPLETE'
  | 'RUN_TIMEOUT'
  /** The instance that owned the run stopped renewing its lease (killed, frozen, cut off). */
  | 'RUN_LOST'
  /** The run store (PostgreSQL) or the bus (Redis) cannot be reached. */
  | 'STORE_UNAVAILABLE'
  | 'TOOL_ROUNDS_EXCEEDED'
  | 'RUN_NOT_PAUSED'
  | 'INTERNAL';

/** An error as a run keeps it: serialisable, with what a retry policy needs to decide. */
export interface RunErrorData {
  code: ErrorCode;
  message: string;
  /** The upstream HTTP status, when the error came from a model server's answer. */
  status?: number;
  /** True when the same request may succeed if sent again (429, 5xx, a dropped connection). */
  retryable: boolean;
  /** How long the upstream asked us to wait before retrying (`retry-after`), in milliseconds. */
  retryAfterMs?: number;
}

/**
 * Token counts, named as Agno and the OpenAI usage object name them. `null` is "unknown": the server
 * did not report that count (many compatible servers send no usage at all), never a real zero.
 */
export interface TokenUsage {
  input_tokens: number | null;
  output_tokens: number | null;
  total_tokens: number | null;
}

/**
 * What a finished run measured. Times are in seconds, as in Agno's metrics. Token counts are `null`
 * when the model server did not report them.
 */
export interface RunMetrics extends TokenUsage {
  /** From the first request to the first output (reasoning or content); `null` when none arrived. */
  time_to_first_token: number | null;
  /**
   * From the first request (or from creation, for a run cancelled while pending) to the end, as the
   * clock goes: time paused for a person counts (it does not against `timeoutMs`).
   */
  duration: number;
}

/** How failed model requests are retried before the first chunk. */
export interface RetryPolicy {
  /** Attempts in all, the first one included. 1 disables retries. */
  maxAttempts: number;
  /** Backoff of the first retry; it doubles on every attempt, with jitter. */
  baseDelayMs: number;
  /** Upper bound of the computed backoff. */
  maxDelayMs: number;
  /** A `retry-after` longer than this fails the run instead of waiting. */
  maxRetryAfterMs: number;
}

/** What the run machine outputs when it reaches a final state. */
export interface RunMachineOutput {
  status: FinalRunStatus;
  content: string;
  /** What a reasoning model streamed as its reasoning (`''` when it sent none). */
  reasoningContent: string;
  error: RunErrorData | null;
  cancelReason: CancelReason | null;
  /** The model's finish reason (`stop`, `length`...), `null` when the model did not finish. */
  finishReason: string | null;
  metrics: RunMetrics;
  attempts: number;
  /** Every tool call of the run, in the order the model asked for them. */
  tools: ToolExecution[];
  /** The messages the run's finished tool rounds added to the conversation. */
  transcript: TranscriptMessage[];
}

/** The delta field a model streams its reasoning in (DeepSeek, vLLM, llama.cpp: the first; Ollama, OpenRouter: the second). */
export type ReasoningField = 'reasoning_content' | 'reasoning';

/**
 * One entry of a turn's `reasoning_details` (OpenRouter's structured reasoning: `reasoning.text`,
 * `reasoning.summary`, `reasoning.encrypted`), whole (its streamed fragments merged), its fields as
 * the server sent them: the server wants them back unmodified, in the same order.
 */
export type ReasoningDetail = Record<string, unknown>;

/** A tool call as the model asked for it, in the chat-completions form (`tool_calls[i]`). */
export interface ToolCallRequest {
  id: string;
  type: 'function';
  function: {
    name: string;
    /** The arguments as the model wrote them: JSON text, perhaps invalid. */
    arguments: string;
  };
  /**
   * What the server sent with the call beyond the chat-completions fields, to be sent back with it
   * as it came: Gemini's `{google: {thought_signature}}`, without which Gemini 3 refuses the next
   * request of the conversation (400).
   */
  extra_content?: Record<string, unknown> | undefined;
}

/**
 * A tool call of a model turn, checked by the runtime against the agent's tools before the machine
 * sees it, so that the machine (which knows no tools) can route it: run it, ask a person first, or
 * answer the model with `invalid` at once.
 */
export interface CheckedToolCall {
  id: string;
  name: string;
  /** The arguments as the model wrote them. */
  arguments: string;
  /** The parsed arguments (an empty object when they are not a JSON object). */
  args: Record<string, unknown>;
  /** Why the call cannot run (unknown tool, arguments not JSON, schema mismatch); `null` when it can. */
  invalid: string | null;
  /** The tool asks a person to confirm each call before it runs. */
  requiresConfirmation: boolean;
  /** See {@link ToolCallRequest.extra_content}: sent back with the call. */
  extra_content?: Record<string, unknown> | undefined;
}

/** Where a tool call of a run stands. */
export type ToolCallStatus =
  'awaiting_confirmation' | 'queued' | 'running' | 'completed' | 'failed' | 'rejected' | 'cancelled';

/** Times of one tool call: unix seconds (with fractions), as Agno's tool metrics. */
export interface ToolCallMetrics {
  start_time: number;
  end_time: number | null;
  /** Seconds; `null` while the call runs. */
  duration: number | null;
}

/**
 * One tool call of a run, as `ToolCallStarted`, `ToolCallCompleted`, `RunPaused` and the run record
 * carry it: Agno's `ToolExecution` fields (snake_case, what Agno's Agent UI reads), plus `status`.
 */
export interface ToolExecution {
  tool_call_id: string;
  tool_name: string;
  tool_args: Record<string, unknown>;
  /** What the model was told: the tool's result, or the error. `null` until the call is over. */
  result: string | null;
  /** The same text as `result` (the Agent UI's `ToolCall` type names it `content`). */
  content: string | null;
  /** True when the model was told of an error instead of a result. */
  tool_call_error: boolean;
  status: ToolCallStatus;
  requires_confirmation: boolean;
  /** The person's answer to a call that `requires_confirmation`; `null` before it. */
  confirmed: boolean | null;
  confirmation_note: string | null;
  /** `null` for a call that never ran. */
  metrics: ToolCallMetrics | null;
  /** Unix time in seconds: when the model asked for the call. */
  created_at: number;
}

/** A person's answer to a paused tool call (Agno's continue form). */
export interface ToolConfirmation {
  tool_call_id: string;
  confirmed: boolean;
  confirmation_note?: string | undefined;
}

/** What the invoked tool runner receives: the calls of one turn that may run now. */
export interface ToolRunnerInput {
  runId: string;
  calls: Array<Pick<CheckedToolCall, 'id' | 'name' | 'arguments'>>;
}

/** Events the tool runner sends back to the run machine, one `TOOL_STARTED` and one `TOOL_DONE` per call. */
export type ToolRunnerEvent =
  | { type: 'TOOL_STARTED'; toolCallId: string }
  /** `result` is what the model is told; `error` when that is an error (a throw, a timeout). */
  | { type: 'TOOL_DONE'; toolCallId: string; result: string; error: boolean };

/**
 * A message a run adds to its conversation: an assistant turn that asked for tools, and one result
 * per call. Kept in the machine's context, so that the next model turn (also after a pause, in
 * another process) sends them.
 */
export type TranscriptMessage =
  | {
      role: 'assistant';
      content: string;
      tool_calls: ToolCallRequest[];
      /**
       * The turn's reasoning, in the field the model streamed it in, when it reasoned: DeepSeek's
       * thinking mode refuses (400) a later request whose tool-calling assistant turns lack it.
       */
      reasoning_content?: string;
      reasoning?: string;
      /**
       * The turn's structured reasoning, when the server streamed some (OpenRouter): Anthropic's
       * thinking models and Gemini 3 refuse or degrade a later request whose tool-call turns lack it.
       */
      reasoning_details?: ReasoningDetail[];
    }
  | { role: 'tool'; tool_call_id: string; content: string };
