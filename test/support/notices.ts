/**
 * For the observers' tests: notices of runs as the orchestrator sends them (created, state changes,
 * wire events, finished), played by hand step by step; and a reader of Prometheus's text format.
 */
import type { StateValue } from 'xstate';
import type { RunEvent, RunOutput, RunRecord, RunStatus } from '../../src/runtime/run-events.js';
import type { RunListener } from '../../src/runtime/storage.js';
import type { CancelReason, ErrorCode, RunErrorData, ToolExecution } from '../../machines/run-types.js';

/** A run being played to an observer. */
export interface PlayedRun {
  readonly record: RunRecord;
  /** A state change, caused by the machine event `cause`. */
  state(value: StateValue, cause?: { type: string } & Record<string, unknown>): void;
  event(event: { event: RunEvent['event'] } & Record<string, unknown>): void;
  /** Model request: `streaming.attempt.requesting`, then `receiving` with a first delta. */
  request(content?: string): void;
  complete(usage?: { input_tokens: number | null; output_tokens: number | null }): RunOutput;
  cancel(reason: CancelReason): RunOutput;
  /**
   * A tool call between model turns: `streaming.tools`, ToolCallStarted, ToolCallCompleted; with
   * `ran: false`, a call that never ran (an unknown tool, invalid arguments): no ToolCallStarted,
   * no metrics, an error.
   */
  tool(
    name: string,
    outcome?: { error?: boolean; args?: Record<string, unknown>; result?: string; ran?: boolean },
  ): void;
  /** A tool call that starts and is still running: `streaming.tools`, ToolCallStarted. */
  startTool(name: string, args?: Record<string, unknown>): ToolExecution;
  fail(code: ErrorCode): RunOutput;
}

let counter = 0;

/** Plays a run to `listener`, from its creation. */
export function playRun(
  listener: RunListener,
  { agent = 'story-writer-agent', session = 'session-1', input = 'Tell me a story' } = {},
): PlayedRun {
  const runId = `run-${++counter}`;
  let seq = 0;
  let content = '';
  const record: RunRecord = {
    run_id: runId,
    agent_id: agent,
    agent_name: 'Story Writer Agent',
    session_id: session,
    user_id: null,
    status: 'pending',
    run_input: input,
    input: { input_content: input },
    content: '',
    reasoning_content: '',
    finish_reason: null,
    model: 'gpt-test',
    model_provider: 'openai',
    metrics: null,
    error: null,
    cancel_reason: null,
    tools: [],
    created_at: 1_700_000_000,
    finished_at: null,
  };
  const base = () => ({
    run_id: runId,
    agent_id: agent,
    agent_name: record.agent_name,
    session_id: session,
    created_at: record.created_at,
    seq: ++seq,
  });
  const statusOf = (value: StateValue): RunStatus =>
    (typeof value === 'string' ? value : Object.keys(value)[0]) as RunStatus;
  const played: PlayedRun = {
    record,
    state(value, cause = { type: 'START' }) {
      // The machine's error, as the orchestrator reports it: the ERROR event's while retrying or failed.
      const error = (cause as { error?: RunErrorData }).error ?? null;
      listener({ type: 'state', runId, value, status: statusOf(value), event: cause, error });
    },
    event(event) {
      listener({ type: 'event', runId, event: { ...base(), ...event } as RunEvent });
    },
    request(delta = 'Once') {
      played.state({ streaming: { attempt: 'requesting' } });
      played.state({ streaming: { attempt: 'receiving' } });
      content += delta;
      played.event({ event: 'RunContent', content: delta });
    },
    complete(usage = { input_tokens: 10, output_tokens: 5 }) {
      const total =
        usage.input_tokens === null ? null : (usage.input_tokens ?? 0) + (usage.output_tokens ?? 0);
      const output = finish('completed', { finish_reason: 'stop' }, { ...usage, total_tokens: total });
      played.event({
        event: 'RunCompleted',
        content,
        reasoning_content: '',
        finish_reason: 'stop',
        status: 'completed',
        metrics: output.metrics,
      });
      listener({ type: 'finished', run: output });
      return output;
    },
    tool(name, { error = false, args = { city: 'Paris' }, result = 'sunny', ran = true } = {}) {
      if (!ran) error = true;
      const tool = ran ? played.startTool(name, args) : { ...played.startTool(name, args), metrics: null };
      const text = error ? 'the tool failed' : result;
      const done: ToolExecution = {
        ...tool,
        result: text,
        content: text,
        tool_call_error: error,
        status: error ? 'failed' : 'completed',
        metrics: ran ? { start_time: 1_700_000_001, end_time: 1_700_000_002, duration: 1 } : null,
      };
      played.event({ event: 'ToolCallCompleted', tool: done });
      if (error) played.event({ event: 'ToolCallError', tool: done, error: text });
    },
    startTool(name, args = { city: 'Paris' }) {
      played.state({ streaming: 'tools' }, { type: 'DONE' });
      const tool: ToolExecution = {
        tool_call_id: `call-${++counter}`,
        tool_name: name,
        tool_args: args,
        result: null,
        content: null,
        tool_call_error: false,
        status: 'running',
        requires_confirmation: false,
        confirmed: null,
        confirmation_note: null,
        metrics: { start_time: 1_700_000_001, end_time: null, duration: null },
        created_at: 1_700_000_001,
      };
      played.event({ event: 'ToolCallStarted', tool });
      return tool;
    },
    cancel(reason) {
      const output = finish('cancelled', { cancel_reason: reason });
      played.event({ event: 'RunCancelled', content, reason, status: 'cancelled' });
      listener({ type: 'finished', run: output });
      return output;
    },
    fail(code) {
      const output = finish('failed', {
        error: { code, message: 'the model server failed', retryable: false },
      });
      played.event({
        event: 'RunError',
        content: 'the model server failed',
        code,
        error_type: code,
        status: 'failed',
      });
      listener({ type: 'finished', run: output });
      return output;
    },
  };

  function finish(
    status: RunOutput['status'],
    fields: Partial<RunOutput>,
    usage: Partial<RunOutput['metrics']> = {},
  ): RunOutput {
    played.state(status);
    return {
      ...record,
      content,
      status,
      metrics: {
        input_tokens: null,
        output_tokens: null,
        total_tokens: null,
        time_to_first_token: content ? 0.2 : null,
        duration: 1.5,
        ...usage,
      },
      finished_at: record.created_at + 2,
      ...fields,
    };
  }

  listener({ type: 'created', run: { ...record } });
  played.event({
    event: 'RunStarted',
    model: record.model,
    model_provider: record.model_provider,
    run_input: { input_content: input },
  });
  return played;
}

/** The value of one sample of Prometheus's exposition text, `undefined` when it is absent. */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const wanted = Object.entries(labels).map(([key, value]) => `${key}="${value}"`);
  for (const line of text.split('\n')) {
    const match = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const present = match[2] ? match[2].split(',') : [];
    if (present.length === wanted.length && wanted.every((label) => present.includes(label)))
      return Number(match[3]);
  }
  return undefined;
}
