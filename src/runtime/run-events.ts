import { RunstateError } from '../errors.js';
import type {
  CancelReason,
  ErrorCode,
  FinalRunStatus,
  RunErrorData,
  RunMetrics,
  RunStatus as RunStatusType,
  ToolExecution,
  TranscriptMessage,
} from '../../machines/run-types.js';

/** Names of the events of a run, as Agno names them (`RunEvent.runContent === 'RunContent'`). */
export const RunEvent = {
  runStarted: 'RunStarted',
  runContent: 'RunContent',
  reasoningStarted: 'ReasoningStarted',
  reasoningCompleted: 'ReasoningCompleted',
  toolCallStarted: 'ToolCallStarted',
  toolCallCompleted: 'ToolCallCompleted',
  toolCallError: 'ToolCallError',
  runPaused: 'RunPaused',
  runContinued: 'RunContinued',
  runCompleted: 'RunCompleted',
  runCancelled: 'RunCancelled',
  runError: 'RunError',
} as const;

/** The statuses of a run: the run machine's top-level states. */
export const RunStatus = {
  pending: 'pending',
  streaming: 'streaming',
  paused: 'paused',
  completed: 'completed',
  cancelled: 'cancelled',
  failed: 'failed',
} as const satisfies Record<RunStatusType, RunStatusType>;

/** @see {@link RunStatus} */
export type RunStatus = RunStatusType;

/** Fields every event of a run carries. Wire objects: snake_case, as Agno and OpenAI name them. */
export interface RunEventBase {
  run_id: string;
  agent_id: string;
  agent_name: string;
  session_id: string;
  /** Unix time in seconds, as Agno sends it. */
  created_at: number;
  /** Position in the run's event log: 1, 2, 3... without gaps. */
  seq: number;
}

/** The run was accepted (it may still wait in `pending` for a slot). */
export interface RunStartedEvent extends RunEventBase {
  event: 'RunStarted';
  model: string;
  model_provider: string;
  /**
   * The user's message, in the shape of Agno's `RunInput.to_dict()`: Agno's client parses any event's
   * `run_input` as a `RunInput` (a string there crashes it). Records keep it as a string.
   */
  run_input: { input_content: string };
}

/**
 * One delta from the model. A reasoning model's reasoning comes in `reasoning_content` (with
 * `content: ''`, as Agno streams it); when one event carries both, the reasoning came first.
 */
export interface RunContentEvent extends RunEventBase {
  event: 'RunContent';
  content: string;
  /** The reasoning delta; absent when the delta has none. */
  reasoning_content?: string;
}

/**
 * One phase of a reasoning model's reasoning, in the shape of Agno's `ReasoningStep` (the Agent UI
 * lists each step's `title` under "Reasoning").
 */
export interface ReasoningStep {
  /** The first line of the reasoning, shortened. */
  title: string;
  /** The whole reasoning of the phase. */
  reasoning: string;
}

/**
 * A run's reasoning steps, in the shape of Agno's `ReasoningSteps`: what Agno's Agent UI reads in
 * `extra_data`, and the `content` of `ReasoningCompleted`.
 */
export interface RunExtraData {
  reasoning_steps: ReasoningStep[];
}

/** The model started reasoning: `RunContent` events with `reasoning_content` follow. */
export interface ReasoningStartedEvent extends RunEventBase {
  event: 'ReasoningStarted';
}

/**
 * The model stopped reasoning (its first content, or the end of its turn). `reasoning_content` is
 * this phase's whole reasoning; every phase so far is in `content` (Agno's `ReasoningSteps`, which
 * Agno's client reads) and in `extra_data` (which the Agent UI replaces its steps with).
 */
export interface ReasoningCompletedEvent extends RunEventBase {
  event: 'ReasoningCompleted';
  content: RunExtraData;
  content_type: 'ReasoningSteps';
  reasoning_content: string;
  extra_data: RunExtraData;
}

/** Terminal: the model finished. `content` is the whole answer. */
export interface RunCompletedEvent extends RunEventBase {
  event: 'RunCompleted';
  content: string;
  /** All the reasoning the model streamed (`''` when none). */
  reasoning_content: string;
  /** Why the model stopped: `stop`, `length` (the token limit cut the answer), `content_filter`... */
  finish_reason: string;
  status: 'completed';
  metrics: RunMetrics;
  /** Every tool call of the run (the Agent UI replaces its chips with them). */
  tools: ToolExecution[];
  /** Present when the model reasoned: its phases (Agno's client reads them here). */
  reasoning_steps?: ReasoningStep[];
  /** Present when the model reasoned: the same phases, where Agno's Agent UI reads them. */
  extra_data?: RunExtraData;
}

/** A tool call started running (Agno's `ToolCallStarted`; the Agent UI shows a chip per call). */
export interface ToolCallStartedEvent extends RunEventBase {
  event: 'ToolCallStarted';
  tool: ToolExecution;
}

/**
 * A tool call is over: its result, or the error the model is told (`tool.tool_call_error`), also for
 * a call that never ran (unknown tool, invalid arguments, rejected by a person).
 */
export interface ToolCallCompletedEvent extends RunEventBase {
  event: 'ToolCallCompleted';
  tool: ToolExecution;
  /** What the model was told, the call's `tool.result` (Agno's event carries it here too). */
  content: string;
}

/** Follows the `ToolCallCompleted` of a call that ended in an error; `error` is what the model is told. */
export interface ToolCallErrorEvent extends RunEventBase {
  event: 'ToolCallError';
  tool: ToolExecution;
  error: string;
}

/**
 * The run waits for a person to confirm or reject the calls in `tools` (each `requires_confirmation`).
 * A stream of the run ends here; `continueRun` streams on from `RunContinued`.
 */
export interface RunPausedEvent extends RunEventBase {
  event: 'RunPaused';
  status: 'paused';
  tools: ToolExecution[];
  /** The same calls as Agno's `RunRequirement`s (its `active_requirements`): one per waiting call. */
  requirements: RunRequirement[];
}

/**
 * A call a paused run waits for, in the shape of Agno's `RunRequirement` (`to_dict`), which Agno's
 * clients read a pause from (`run.active_requirements`) and send back (as `tools`) to continue it.
 */
export interface RunRequirement {
  /** The call's `tool_call_id`: one requirement per call. */
  id: string;
  /** When the call was asked for, as ISO 8601 (Agno's format here). */
  created_at: string;
  tool_execution: ToolExecution;
}

/** The requirements of the calls in `tools` that wait for a person. */
export function pauseRequirements(tools: readonly ToolExecution[]): RunRequirement[] {
  return tools
    .filter((tool) => tool.status === 'awaiting_confirmation')
    .map((tool) => ({
      id: tool.tool_call_id,
      created_at: new Date(tool.created_at * 1000).toISOString(),
      tool_execution: tool,
    }));
}

/** The first event after a continue: the answered calls, with `confirmed` and `confirmation_note`. */
export interface RunContinuedEvent extends RunEventBase {
  event: 'RunContinued';
  tools: ToolExecution[];
}

/** Terminal: the run was cancelled. `content` is what had streamed so far. */
export interface RunCancelledEvent extends RunEventBase {
  event: 'RunCancelled';
  content: string;
  reason: CancelReason;
  status: 'cancelled';
  /** Present when the model reasoned: its phases so far, as {@link RunCompletedEvent} has them. */
  reasoning_steps?: ReasoningStep[];
  /** Present when the model reasoned: the same phases, where Agno's Agent UI reads them. */
  extra_data?: RunExtraData;
}

/** Terminal: the run failed. `content` is the error message. */
export interface RunErrorEvent extends RunEventBase {
  event: 'RunError';
  content: string;
  code: ErrorCode;
  error_type: ErrorCode;
  status: 'failed';
  /** Present when the model reasoned: its phases so far, as {@link RunCompletedEvent} has them. */
  reasoning_steps?: ReasoningStep[];
  /** Present when the model reasoned: the same phases, where Agno's Agent UI reads them. */
  extra_data?: RunExtraData;
}

/** Any event of a run. Switch on `event`. */
export type RunEvent =
  | RunStartedEvent
  | RunContentEvent
  | ReasoningStartedEvent
  | ReasoningCompletedEvent
  | ToolCallStartedEvent
  | ToolCallCompletedEvent
  | ToolCallErrorEvent
  | RunPausedEvent
  | RunContinuedEvent
  | RunCompletedEvent
  | RunCancelledEvent
  | RunErrorEvent;

/** The events that end a run; exactly one per run, always the last. */
export type RunTerminalEvent = RunCompletedEvent | RunCancelledEvent | RunErrorEvent;

/**
 * Throws `INVALID_INPUT` unless `afterSeq` (the `seq` a reader has, whose later events it wants) is
 * absent or a whole number ≥ 0: `1.5` or `NaN` would skip events or end a stream at once.
 */
export function checkAfterSeq(afterSeq: number | undefined): void {
  if (afterSeq === undefined || (Number.isSafeInteger(afterSeq) && afterSeq >= 0)) return;
  throw new RunstateError('INVALID_INPUT', `afterSeq must be a whole number ≥ 0, got ${String(afterSeq)}`);
}

/**
 * True for `RunCompleted`, `RunCancelled` and `RunError`: the one event that ends a run's stream.
 *
 * @example
 * ```ts
 * for await (const event of agent.run('Hi', { stream: true })) {
 *   if (isTerminalEvent(event)) console.log(`ended ${event.status}`);
 * }
 * ```
 */
export function isTerminalEvent(event: RunEvent): event is RunTerminalEvent {
  return event.event === 'RunCompleted' || event.event === 'RunCancelled' || event.event === 'RunError';
}

/** A run as the registry reports it. */
export interface RunRecord {
  run_id: string;
  agent_id: string;
  agent_name: string;
  session_id: string;
  user_id: string | null;
  status: RunStatus;
  run_input: string;
  /** The user's message as Agno's `RunOutput` has it (`RunInput`), where Agno's client reads it. */
  input: { input_content: string };
  /** The content so far (all of it, once final). */
  content: string;
  /** The reasoning so far (`''` when the model sent none). */
  reasoning_content: string;
  /** Present when the model reasoned: its reasoning phases (where Agno's client reads them). */
  reasoning_steps?: ReasoningStep[];
  /** Present when the model reasoned: the same phases, where Agno's Agent UI reads them. */
  extra_data?: RunExtraData;
  /** The model's finish reason (`stop`, `length`...); `null` until it finished, and for runs it never did. */
  finish_reason: string | null;
  model: string;
  model_provider: string;
  metrics: RunMetrics | null;
  error: RunErrorData | null;
  cancel_reason: CancelReason | null;
  /** The run's tool calls so far, each with its `status` (a call running when the run ended is `cancelled`). */
  tools: ToolExecution[];
  /**
   * Present when the run called tools: the messages its tool rounds added to the conversation (each
   * assistant turn with its `tool_calls`, then one `tool` message per call), as the next run of the
   * session sends them.
   */
  messages?: TranscriptMessage[];
  /** Unix time in seconds. */
  created_at: number;
  /** Unix time in seconds; `null` while the run is active. */
  finished_at: number | null;
}

/** A finished run: what `agent.run(input)` resolves with. */
export interface RunOutput extends RunRecord {
  status: FinalRunStatus;
  metrics: RunMetrics;
  finished_at: number;
}

/**
 * A run that waits for a person to confirm or reject its tool calls: what a non-streamed run (or
 * continue) resolves with when the run pauses, as Agno's non-streamed `run` returns a paused
 * `RunOutput`. The calls that wait are in `tools`, with `status: 'awaiting_confirmation'`; answer
 * them with `continueRun`. `metrics` run up to the pause.
 */
export interface PausedRunOutput extends RunRecord {
  status: 'paused';
  /** The waiting calls as Agno's `RunRequirement`s (see {@link RunPausedEvent.requirements}). */
  requirements: RunRequirement[];
  metrics: RunMetrics;
  finished_at: null;
}
