import type {
  CancelReason,
  RunErrorData,
  RunMachineOutput,
  RunMetrics,
  RunStatus,
  ToolExecution,
  TranscriptMessage,
} from '../../machines/run-types.js';
import { closeOpen } from '../../machines/tool-round.js';
import { extraDataOfEvents } from './reasoning-phases.js';
import type { ChatModel } from '../model/chat-model.js';
import type {
  RunEvent,
  RunEventBase,
  RunExtraData,
  RunOutput,
  RunRecord,
  RunTerminalEvent,
} from './run-events.js';

/**
 * How a run is shown to the world: its wire events and its record. Pure functions of what the run
 * is (its identity) and what its machine says (snapshot content, output).
 */

/** What a run is, fixed when it starts. */
export interface RunIdentity {
  readonly runId: string;
  readonly agentId: string;
  readonly agentName: string;
  readonly sessionId: string;
  readonly userId: string | null;
  readonly input: string;
  readonly model: ChatModel;
  /** Milliseconds since the epoch. */
  readonly createdAt: number;
}

/** An event without the fields every event carries (the projection fills them in). */
export type EventBody = RunEvent extends infer E
  ? E extends RunEvent
    ? Omit<E, keyof RunEventBase>
    : never
  : never;

const seconds = (ms: number): number => Math.floor(ms / 1000);

/** The wire event: `body` with the run's fields, `seq` and the time (in whole seconds, as Agno). */
export function toWireEvent(run: RunIdentity, body: EventBody, seq: number, nowMs: number): RunEvent {
  // `event` first: a stable, readable key order on the wire.
  const base = {
    event: body.event,
    run_id: run.runId,
    agent_id: run.agentId,
    agent_name: run.agentName,
    session_id: run.sessionId,
    created_at: seconds(nowMs),
    seq,
  };
  return Object.assign<typeof base, EventBody>(base, body);
}

/** What a record says beyond the run's identity; the optional fields are left out when empty. */
interface RecordState {
  status: RunStatus;
  content: string;
  reasoning: string;
  extraData: RunExtraData | undefined;
  finishReason: string | null;
  metrics: RunMetrics | null;
  error: RunErrorData | null;
  cancelReason: CancelReason | null;
  tools: ToolExecution[];
  transcript: TranscriptMessage[] | undefined;
  finishedAt: number | null;
}

/**
 * A run's record, its fields in the order the API shows them. Built field by field, not spread from
 * parts: an object literal with spreads (and an optional part spread in) is copied on V8's slow
 * path, which cost ~12 µs per record (measured: ~0.1 µs this way), and a run makes two or more.
 */
function buildRecord(run: RunIdentity, state: RecordState): RunRecord {
  const record = {
    run_id: run.runId,
    agent_id: run.agentId,
    agent_name: run.agentName,
    session_id: run.sessionId,
    user_id: run.userId,
    run_input: run.input,
    input: { input_content: run.input },
    model: run.model.id,
    model_provider: run.model.provider,
    created_at: seconds(run.createdAt),
    status: state.status,
    content: state.content,
    reasoning_content: state.reasoning,
  } as RunRecord;
  // Only on runs whose model reasoned, and only on runs that called tools: as Agno's records.
  if (state.extraData) {
    record.reasoning_steps = state.extraData.reasoning_steps;
    record.extra_data = state.extraData;
  }
  record.finish_reason = state.finishReason;
  record.metrics = state.metrics;
  record.error = state.error;
  record.cancel_reason = state.cancelReason;
  record.tools = state.tools;
  if (state.transcript?.length) record.messages = state.transcript;
  record.finished_at = state.finishedAt;
  return record;
}

/** What an active run has streamed so far. */
export interface RunProgress {
  content: string;
  /** The metrics up to the pause (of a paused run); `null` (the default) while the run streams. */
  metrics?: RunMetrics | null | undefined;
  reasoning: string;
  /** The reasoning phases so far; absent when the model never reasoned. */
  extraData?: RunExtraData | undefined;
  /** The tool calls so far. */
  tools?: ToolExecution[] | undefined;
  /** The messages of the finished tool rounds so far. */
  transcript?: TranscriptMessage[] | undefined;
}

/** The record of an active run, with its content so far. */
export function activeRecord(run: RunIdentity, status: RunStatus, progress: RunProgress): RunRecord {
  return buildRecord(run, {
    status,
    content: progress.content,
    reasoning: progress.reasoning,
    extraData: progress.extraData,
    finishReason: null,
    metrics: progress.metrics ?? null,
    error: null,
    cancelReason: null,
    tools: progress.tools ?? [],
    transcript: progress.transcript,
    finishedAt: null,
  });
}

/** The record of a finished run: what `result` resolves with. */
export function outputRecord(
  run: RunIdentity,
  output: RunMachineOutput,
  extraData: RunExtraData | undefined,
  finishedAtMs: number,
): RunOutput {
  return buildRecord(run, {
    status: output.status,
    content: output.content,
    reasoning: output.reasoningContent,
    extraData,
    finishReason: output.finishReason,
    metrics: output.metrics,
    error: output.error,
    cancelReason: output.cancelReason,
    tools: output.tools,
    transcript: output.transcript,
    finishedAt: seconds(finishedAtMs),
  }) as RunOutput;
}

/**
 * The output of a run whose record is gone before its end could be read from it: a run paused on
 * this instance whose session was deleted (on another instance, which cancels the session's runs).
 * It is the record this instance had at the pause, ended as `end`, the run's terminal event, says
 * when the event bus brought it, else cancelled (`api`) as a session's delete cancels it; calls still
 * open are cancelled, as in any run that ends with them.
 */
export function forgottenRunOutput(
  record: RunRecord,
  end: RunTerminalEvent | undefined,
  nowMs: number,
): RunOutput {
  const endedAt = end ? end.created_at * 1000 : nowMs;
  const base = {
    ...record,
    tools: closeOpen(record.tools, endedAt),
    metrics: record.metrics ?? runMetricsUnknown(),
    finish_reason: null,
    error: null,
    cancel_reason: null,
    finished_at: seconds(endedAt),
  };
  switch (end?.event) {
    case 'RunCompleted':
      return {
        ...base,
        status: 'completed',
        content: end.content,
        reasoning_content: end.reasoning_content,
        finish_reason: end.finish_reason,
        metrics: end.metrics,
        tools: end.tools,
      };
    case 'RunError':
      return { ...base, status: 'failed', error: { code: end.code, message: end.content, retryable: false } };
    default:
      return {
        ...base,
        status: 'cancelled',
        content: end?.content ?? record.content,
        cancel_reason: end?.reason ?? 'api',
      };
  }
}

const runMetricsUnknown = (): RunMetrics => ({
  input_tokens: null,
  output_tokens: null,
  total_tokens: null,
  time_to_first_token: null,
  duration: 0,
});

/** The one terminal event of a run, from its machine's output. */
export function terminalEvent(output: RunMachineOutput): EventBody {
  switch (output.status) {
    case 'completed':
      return {
        event: 'RunCompleted',
        content: output.content,
        reasoning_content: output.reasoningContent,
        // `completed` is reached only through DONE, which carries the finish reason.
        finish_reason: output.finishReason ?? 'stop',
        status: 'completed',
        metrics: output.metrics,
        tools: output.tools,
      };
    case 'cancelled':
      return {
        event: 'RunCancelled',
        content: output.content,
        reason: output.cancelReason ?? 'code',
        status: 'cancelled',
      };
    case 'failed': {
      const code = output.error?.code ?? 'INTERNAL';
      return {
        event: 'RunError',
        content: output.error?.message ?? 'the run failed',
        code,
        error_type: code,
        status: 'failed',
      };
    }
  }
}

/**
 * The record of a run that streams on another instance, with what it stored so far: its owner
 * writes the record's content and tools only when the run pauses or ends, and its events as they
 * come, so the events say what streamed (every instance then reads the run the same way).
 */
export function recordWithStoredEvents(record: RunRecord, events: readonly RunEvent[]): RunRecord {
  let content = '';
  let reasoning = '';
  const tools = new Map(record.tools.map((tool) => [tool.tool_call_id, tool]));
  for (const event of events) {
    if (event.event === 'RunContent') {
      content += event.content;
      if (event.reasoning_content) reasoning += event.reasoning_content;
    } else if (event.event === 'ToolCallStarted' || event.event === 'ToolCallCompleted') {
      tools.set(event.tool.tool_call_id, event.tool);
    }
  }
  return withReasoningSteps(
    {
      ...record,
      content: content || record.content,
      reasoning_content: reasoning || record.reasoning_content,
      // The metrics stored at a pause are the paused run's: once continued, none until its end, as
      // its owner shows it.
      metrics: record.status === 'paused' ? record.metrics : null,
      tools: [...tools.values()],
    },
    extraDataOfEvents(events),
  );
}

/**
 * `record` with the reasoning phases `extraData` (when there are some), in the place `buildRecord`
 * gives them: after `reasoning_content`, as the run's owner shows the record.
 */
function withReasoningSteps<R extends RunRecord>(record: R, extraData: RunExtraData | undefined): R {
  if (!extraData) return record;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(record)) {
    if (key === 'reasoning_steps' || key === 'extra_data') continue;
    out[key] = value;
    if (key === 'reasoning_content') {
      out.reasoning_steps = extraData.reasoning_steps;
      out.extra_data = extraData;
    }
  }
  return out as R;
}
