import type {
  CheckedToolCall,
  ReasoningDetail,
  ReasoningField,
  ToolCallStatus,
  ToolConfirmation,
  ToolExecution,
  TranscriptMessage,
} from './run-types.js';

/**
 * The pure bookkeeping of the tool calls of a run: what each call's record becomes as it runs, and
 * the messages a round adds to the conversation. Times are milliseconds in, seconds out (Agno's).
 */

const seconds = (ms: number): number => ms / 1000;
/**
 * A call's duration in seconds, to the millisecond: the difference of two times in seconds carries
 * float noise (1.1649999618530273 for 1,165 ms).
 */
const durationOf = (startSeconds: number, endMs: number): number =>
  Math.round(endMs - startSeconds * 1000) / 1000;

/** The records of the calls a model turn asked for: invalid ones are over at once (never run). */
export function newExecutions(calls: readonly CheckedToolCall[], at: number): ToolExecution[] {
  return calls.map((call) => {
    const base: ToolExecution = {
      tool_call_id: call.id,
      tool_name: call.name,
      tool_args: call.args,
      result: null,
      content: null,
      tool_call_error: false,
      status: call.requiresConfirmation ? 'awaiting_confirmation' : 'queued',
      requires_confirmation: call.requiresConfirmation,
      confirmed: null,
      confirmation_note: null,
      metrics: null,
      created_at: Math.floor(seconds(at)),
    };
    if (call.invalid === null) return base;
    return { ...base, status: 'failed', result: call.invalid, content: call.invalid, tool_call_error: true };
  });
}

/**
 * Replaces the record of one call of the current round, its last `roundSize` records: ids name calls
 * within a turn only (some servers number them per response, every turn's first call `call_0`).
 * A copy per tool event: a run has few calls, and events are rare.
 */
export function updateExecution(
  tools: readonly ToolExecution[],
  roundSize: number,
  id: string,
  change: (tool: ToolExecution) => ToolExecution,
): ToolExecution[] {
  const start = tools.length - roundSize;
  return tools.map((tool, i) => (i >= start && tool.tool_call_id === id ? change(tool) : tool));
}

/** The records of the current round's calls: the last `roundSize` of the run's. */
export const roundExecutions = (tools: readonly ToolExecution[], roundSize: number): ToolExecution[] =>
  tools.slice(tools.length - roundSize);

export function started(tool: ToolExecution, at: number): ToolExecution {
  return { ...tool, status: 'running', metrics: { start_time: seconds(at), end_time: null, duration: null } };
}

/** A call is over; one that never started (refused by the runner before it ran) keeps no metrics. */
export function finished(tool: ToolExecution, result: string, error: boolean, at: number): ToolExecution {
  const start = tool.metrics?.start_time;
  return {
    ...tool,
    status: error ? 'failed' : 'completed',
    result,
    content: result,
    tool_call_error: error,
    metrics:
      start === undefined
        ? null
        : { start_time: start, end_time: seconds(at), duration: durationOf(start, at) },
  };
}

const OPEN: ReadonlySet<ToolCallStatus> = new Set(['awaiting_confirmation', 'queued', 'running']);

/** True while a call still waits for a person, a slot or its result. */
export const isOpen = (tool: ToolExecution): boolean => OPEN.has(tool.status);

/** A run that ends with calls still open (cancel, timeout): they are cancelled, a running one timed. */
export function closeOpen(tools: readonly ToolExecution[], at: number): ToolExecution[] {
  return tools.map((tool) => {
    if (!isOpen(tool)) return tool;
    const metrics = tool.metrics && {
      start_time: tool.metrics.start_time,
      end_time: seconds(at),
      duration: durationOf(tool.metrics.start_time, at),
    };
    return { ...tool, status: 'cancelled', metrics };
  });
}

/**
 * Applies a person's answers to the calls awaiting them: a confirmed call is queued to run, a
 * rejected one (or one left unanswered) is over, and the model is told it was rejected.
 */
export function confirm(
  tools: readonly ToolExecution[],
  answers: readonly ToolConfirmation[],
  at: number,
): ToolExecution[] {
  const byId = new Map(answers.map((answer) => [answer.tool_call_id, answer]));
  return tools.map((tool) => {
    if (tool.status !== 'awaiting_confirmation') return tool;
    const answer = byId.get(tool.tool_call_id);
    const note = answer?.confirmation_note ?? null;
    if (answer?.confirmed) return { ...tool, status: 'queued', confirmed: true, confirmation_note: note };
    const result = `The user rejected this call${note ? `: ${note}` : '.'}`;
    return {
      ...tool,
      status: 'rejected',
      confirmed: false,
      confirmation_note: note,
      result,
      content: result,
      metrics: { start_time: seconds(at), end_time: seconds(at), duration: 0 },
    };
  });
}

/**
 * The messages a finished round adds to the conversation: the assistant turn with its calls (and
 * its reasoning, in the field the model streamed it in, when it reasoned; its `reasoning_details`,
 * when it streamed some), then one `tool` message per call, ids matching, in the order the model
 * asked. `tools`: the records of the round's calls.
 */
export function roundMessages(
  turn: {
    content: string;
    reasoning: string;
    reasoningField: ReasoningField | null;
    reasoningDetails?: readonly ReasoningDetail[] | undefined;
  },
  round: readonly CheckedToolCall[],
  tools: readonly ToolExecution[],
): TranscriptMessage[] {
  const results = new Map(tools.map((tool) => [tool.tool_call_id, tool.result ?? '']));
  const assistant: TranscriptMessage = {
    role: 'assistant',
    content: turn.content,
    tool_calls: round.map((call) => ({
      id: call.id,
      type: 'function',
      function: { name: call.name, arguments: call.arguments },
      ...(call.extra_content ? { extra_content: call.extra_content } : {}),
    })),
  };
  // Only in the field the server streamed it in (empty, at times: DeepSeek wants it back all the
  // same). Reasoning that came in no field (Mistral's thinking parts, a model of one's own that names
  // none) is not sent back: servers that refuse an unknown field on an assistant message (Mistral's,
  // Groq's) would fail every later request of the run and of its session.
  if (turn.reasoningField !== null) assistant[turn.reasoningField] = turn.reasoning;
  // OpenRouter's structured reasoning goes back whole, in its order: Anthropic's thinking refuses a
  // turn without its signed blocks. A server that streamed none is sent none.
  if (turn.reasoningDetails?.length) assistant.reasoning_details = [...turn.reasoningDetails];
  return [
    assistant,
    ...round.map((call) => ({
      role: 'tool' as const,
      tool_call_id: call.id,
      content: results.get(call.id) ?? '',
    })),
  ];
}
