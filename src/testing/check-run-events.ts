import { CANCEL_REASONS } from '../../machines/run-types.js';
import { isTerminalEvent, RunEvent } from '../runtime/run-events.js';

const EVENT_NAMES: ReadonlySet<string> = new Set(Object.values(RunEvent));
const CANCEL_REASON_SET: ReadonlySet<unknown> = new Set(CANCEL_REASONS);

/** The status each terminal event carries. */
const TERMINAL_STATUS: Record<string, string> = {
  RunCompleted: 'completed',
  RunCancelled: 'cancelled',
  RunError: 'failed',
};

/**
 * Checks the invariants every run's events must hold, and throws an Error naming the first one
 * broken: `seq` counts from 1 without gaps; the first event is `RunStarted`, and the only one;
 * exactly one terminal event, and it is the last, its status the one its name says; every event
 * belongs to the same run; the terminal event's status is `expectedStatus` when given;
 * `RunCompleted.content` is the concatenation of the deltas and its `reasoning_content` that of the
 * reasoning deltas; the `RunCancelled` content is what streamed before the cancel; reasoning deltas
 * come between a `ReasoningStarted` and a `ReasoningCompleted`. Besides: every event has a known
 * name and a `RunContent` a string `content`; a tool call does not start again while it runs, nor
 * completes twice, and in a completed run every call that started completed; a `ToolCallError`
 * follows its call's `ToolCallCompleted` with an error, and only that, at once; a `ReasoningCompleted` holds its phase's
 * reasoning deltas; a `RunContinued` follows a `RunPaused`, and nothing but a `RunContinued` or an
 * end follows a `RunPaused` (a paused run may end: cancelled, or out of time, never completed); a
 * `RunError` has a `code`, a `RunCancelled` one of the four reasons, a `RunCompleted` a
 * `finish_reason` and `metrics`.
 *
 * @example
 * ```ts
 * const events = [];
 * for await (const event of agent.run('hi', { stream: true })) events.push(event);
 * checkRunEvents(events, 'completed');
 * ```
 */
export function checkRunEvents(events: readonly RunEvent[], expectedStatus?: string): void {
  const fail = (message: string): never => {
    throw new Error(
      `run events: ${message} (events: ${events.map((e) => `${e.seq}:${e.event}`).join(', ')})`,
    );
  };
  if (events.length === 0) fail('no events');
  const runId = events[0]!.run_id;
  if (events[0]!.event !== 'RunStarted') fail(`first event is ${events[0]!.event}, not RunStarted`);
  let streamed = '';
  let reasoned = '';
  let reasoning = false;
  let paused = false;
  // The calls that started and have not completed. (An id may come back once its call completed:
  // a paused run stored by an earlier runstate may hold calls that share one.)
  const running = new Set<string>();
  // The calls that completed, and have not started again since: one completes once.
  const completed = new Set<string>();
  // The call whose ToolCallCompleted came last, failed: the one a ToolCallError may follow.
  let failedCall: string | undefined;
  let phase = '';
  events.forEach((event, index) => {
    if (event.seq !== index + 1) fail(`event ${index + 1} has seq ${event.seq}`);
    if (!EVENT_NAMES.has(event.event)) fail(`event ${event.seq} has an unknown name: ${String(event.event)}`);
    if (event.run_id !== runId) fail(`event ${event.seq} belongs to run ${event.run_id}, not ${runId}`);
    if (index > 0 && event.event === 'RunStarted') fail(`a second RunStarted at ${event.seq}`);
    // A paused run waits: it is continued, or it ends (cancelled, out of time) without completing.
    if (paused && !['RunPaused', 'RunContinued', 'RunCancelled', 'RunError'].includes(event.event))
      fail(`${event.event} at ${event.seq} while the run is paused`);
    if (event.event === 'ToolCallError' && failedCall !== event.tool.tool_call_id)
      fail(`ToolCallError at ${event.seq} does not follow its call's failed ToolCallCompleted`);
    if (failedCall !== undefined && event.event !== 'ToolCallError')
      fail(`call ${failedCall} failed at ${event.seq - 1}, and no ToolCallError follows it`);
    failedCall = undefined;
    if (event.event === 'ReasoningStarted' || event.event === 'ReasoningCompleted') {
      if (reasoning === (event.event === 'ReasoningStarted')) fail(`unpaired ${event.event} at ${event.seq}`);
      reasoning = !reasoning;
      if (event.event === 'ReasoningStarted') phase = '';
      else if (event.reasoning_content !== phase)
        fail(`ReasoningCompleted ${event.seq} differs from its phase's reasoning deltas`);
    }
    if (event.event === 'ToolCallStarted') {
      const id = event.tool.tool_call_id;
      if (running.has(id)) fail(`tool call ${id} started again at ${event.seq} while it runs`);
      running.add(id);
      completed.delete(id);
    }
    if (event.event === 'ToolCallCompleted') {
      const id = event.tool.tool_call_id;
      if (completed.has(id)) fail(`tool call ${id} completed again at ${event.seq}`);
      running.delete(id);
      completed.add(id);
      if (event.tool.tool_call_error) failedCall = id;
    }
    if (event.event === 'RunPaused' || event.event === 'RunContinued') {
      if (paused === (event.event === 'RunPaused')) fail(`unpaired ${event.event} at ${event.seq}`);
      paused = !paused;
    }
    if (event.event === 'RunContent') {
      if (typeof event.content !== 'string') fail(`RunContent ${event.seq} has no string content`);
      streamed += event.content;
      if (event.reasoning_content !== undefined) {
        if (!reasoning) fail(`reasoning at ${event.seq} outside ReasoningStarted/ReasoningCompleted`);
        reasoned += event.reasoning_content;
        phase += event.reasoning_content;
      }
    }
    if (isTerminalEvent(event) && index !== events.length - 1) fail(`terminal ${event.event} is not last`);
  });
  const last = events[events.length - 1]!;
  if (!isTerminalEvent(last)) return fail(`no terminal event; last is ${last.event}`);
  // The terminal event's name and its status say the same.
  if (last.status !== TERMINAL_STATUS[last.event]) fail(`${last.event} has status ${last.status}`);
  if (expectedStatus !== undefined && last.status !== expectedStatus) {
    fail(`terminal status is ${last.status}, expected ${expectedStatus}`);
  }
  if (last.event !== 'RunError' && last.content !== streamed) {
    fail(`${last.event}.content differs from the streamed deltas`);
  }
  if (reasoning) fail('a reasoning phase is not completed before the terminal event');
  if (last.event === 'RunError' && !last.code) fail('RunError has no code');
  if (last.event === 'RunCancelled' && !CANCEL_REASON_SET.has(last.reason))
    fail(`RunCancelled has no cancel reason (${String(last.reason)})`);
  if (last.event === 'RunCompleted' && (typeof last.finish_reason !== 'string' || !last.metrics))
    fail('RunCompleted has no finish_reason or no metrics');
  if (last.event === 'RunCompleted' && running.size > 0) {
    fail(`tool calls started and never completed: ${[...running].join(', ')}`);
  }
  if (last.event === 'RunCompleted' && last.reasoning_content !== reasoned) {
    fail('RunCompleted.reasoning_content differs from the streamed reasoning');
  }
}
