import { describe, expect, it } from 'vitest';
import type { RunEvent } from '../src/runtime/run-events.js';
import { checkRunEvents } from '../src/testing/index.js';

const base = { run_id: 'r', agent_id: 'a', agent_name: 'A', session_id: 's', created_at: 1 };
const events = (...bodies: Record<string, unknown>[]) =>
  bodies.map((body, index) => ({ ...base, seq: index + 1, ...body })) as unknown as RunEvent[];
const started = { event: 'RunStarted' };

describe('checkRunEvents', () => {
  it('takes a run whose events hold every invariant', () => {
    const run = events(
      started,
      { event: 'RunContent', content: 'Hi' },
      { event: 'RunCancelled', content: 'Hi', status: 'cancelled', reason: 'api' },
    );
    expect(() => checkRunEvents(run, 'cancelled')).not.toThrow();
  });

  it('refuses a terminal event whose status is not the one its name says', () => {
    const run = events(started, { event: 'RunCompleted', content: '', status: 'cancelled' });
    expect(() => checkRunEvents(run, 'cancelled')).toThrow(/^run events: RunCompleted has status cancelled/);
  });

  it('refuses a second RunStarted', () => {
    const run = events(started, started, { event: 'RunCompleted', content: '', status: 'completed' });
    expect(() => checkRunEvents(run)).toThrow(/^run events: a second RunStarted at 2/);
  });
});

describe('checkRunEvents, on tools, pauses and malformed events', () => {
  const completed = {
    event: 'RunCompleted',
    content: '',
    reasoning_content: '',
    status: 'completed',
    finish_reason: 'stop',
    metrics: {},
  };
  const tool = (event: string, id: string) => ({ event, tool: { tool_call_id: id } });

  it('takes a paused run continued, its calls started and completed, and a call that never ran', () => {
    const run = events(
      started,
      { event: 'RunPaused', tools: [] },
      { event: 'RunContinued', tools: [] },
      tool('ToolCallStarted', 'c1'),
      tool('ToolCallCompleted', 'c1'),
      tool('ToolCallCompleted', 'never-ran'),
      { event: 'ToolCallCompleted', tool: { tool_call_id: 'failed', tool_call_error: true } },
      { event: 'ToolCallError', tool: { tool_call_id: 'failed' }, error: 'boom' },
      completed,
    );
    expect(() => checkRunEvents(run, 'completed')).not.toThrow();
    // Calls that share an id, one after the other (a paused run stored by an earlier runstate).
    const shared = events(
      started,
      tool('ToolCallStarted', 'call_0'),
      tool('ToolCallCompleted', 'call_0'),
      tool('ToolCallStarted', 'call_0'),
      tool('ToolCallCompleted', 'call_0'),
      completed,
    );
    expect(() => checkRunEvents(shared, 'completed')).not.toThrow();
    // A paused run may end without a continue: cancelled, or out of time.
    const cancelled = events(
      started,
      { event: 'RunPaused', tools: [] },
      { event: 'RunCancelled', content: '', status: 'cancelled', reason: 'api' },
    );
    expect(() => checkRunEvents(cancelled, 'cancelled')).not.toThrow();
  });

  it.each([
    [
      'an unknown event name',
      [started, { event: 'RunExploded' }, completed],
      /event 2 has an unknown name: RunExploded/,
    ],
    [
      'a RunContent without text',
      [started, { event: 'RunContent' }, completed],
      /RunContent 2 has no string content/,
    ],
    [
      'a call started again while it runs',
      [started, tool('ToolCallStarted', 'c1'), tool('ToolCallStarted', 'c1'), completed],
      /tool call c1 started again at 3 while it runs/,
    ],
    [
      'a completed run with a call that never completed',
      [started, tool('ToolCallStarted', 'c1'), completed],
      /tool calls started and never completed: c1/,
    ],
    [
      'a RunContinued with no pause',
      [started, { event: 'RunContinued', tools: [] }, completed],
      /unpaired RunContinued at 2/,
    ],
    [
      'two pauses with no continue between',
      [started, { event: 'RunPaused', tools: [] }, { event: 'RunPaused', tools: [] }, completed],
      /unpaired RunPaused at 3/,
    ],
    [
      'a RunError without a code',
      [started, { event: 'RunError', content: 'boom', status: 'failed' }],
      /RunError has no code/,
    ],
    [
      'a paused run that completes without a continue',
      [started, { event: 'RunPaused', tools: [] }, completed],
      /RunCompleted at 3 while the run is paused/,
    ],
    [
      'content or a tool call between a pause and its continue',
      [started, { event: 'RunPaused', tools: [] }, { event: 'RunContent', content: 'x' }, completed],
      /RunContent at 3 while the run is paused/,
    ],
    [
      'a ToolCallError with no failed ToolCallCompleted of its call before it',
      [started, tool('ToolCallError', 'c1'), completed],
      /ToolCallError at 2 does not follow its call's failed ToolCallCompleted/,
    ],
    [
      'a ToolCallError after a ToolCallCompleted that is no error',
      [started, tool('ToolCallCompleted', 'c1'), tool('ToolCallError', 'c1'), completed],
      /ToolCallError at 3 does not follow/,
    ],
    [
      'a failed ToolCallCompleted with no ToolCallError after it',
      [
        started,
        tool('ToolCallStarted', 'c1'),
        { event: 'ToolCallCompleted', tool: { tool_call_id: 'c1', tool_call_error: true } },
        { event: 'RunContent', content: 'x' },
        completed,
      ],
      /call c1 failed at 3, and no ToolCallError follows it/,
    ],
    [
      'a call completed twice',
      [
        started,
        tool('ToolCallStarted', 'c1'),
        tool('ToolCallCompleted', 'c1'),
        tool('ToolCallCompleted', 'c1'),
        completed,
      ],
      /tool call c1 completed again at 4/,
    ],
    [
      'a ReasoningCompleted that is not its deltas',
      [
        started,
        { event: 'ReasoningStarted' },
        { event: 'RunContent', content: '', reasoning_content: 'a' },
        { event: 'ReasoningCompleted', reasoning_content: 'ab' },
        { ...completed, reasoning_content: 'a' },
      ],
      /ReasoningCompleted 4 differs from its phase's reasoning deltas/,
    ],
    [
      'a RunCancelled without a reason',
      [started, { event: 'RunCancelled', content: '', status: 'cancelled' }],
      /RunCancelled has no cancel reason \(undefined\)/,
    ],
    [
      'a RunCompleted without a finish reason or metrics',
      [started, { ...completed, metrics: undefined }],
      /RunCompleted has no finish_reason or no metrics/,
    ],
  ])('refuses %s', (_, bodies, message) => {
    expect(() => checkRunEvents(events(...bodies))).toThrow(message);
  });
});
