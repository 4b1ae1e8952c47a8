import { describe, expect, it } from 'vitest';
import type { ToolExecution } from '../machines/run-types.js';
import type { RunEvent, RunRecord } from '../src/runtime/run-events.js';
import { extraDataOfEvents } from '../src/runtime/reasoning-phases.js';
import { recordWithStoredEvents } from '../src/runtime/run-projection.js';
import { finishedMetrics } from './support/runs.js';

const base = { run_id: 'r', agent_id: 'a', agent_name: 'A', session_id: 's', created_at: 1 };
const call = (id: string, status: ToolExecution['status']) =>
  ({ tool_call_id: id, tool_name: 'lookup', status }) as ToolExecution;

describe('recordWithStoredEvents', () => {
  it('gives a run streaming elsewhere the content, reasoning and tool calls its stored events hold', () => {
    // As stored at a park: the content then, and the call the person was asked about.
    const record = {
      ...base,
      status: 'streaming',
      content: 'Let me look.',
      reasoning_content: '',
      tools: [call('c1', 'confirmed' as ToolExecution['status'])],
      finished_at: null,
    } as unknown as RunRecord;
    const events = [
      { ...base, seq: 1, event: 'RunStarted' },
      { ...base, seq: 2, event: 'RunContent', content: '', reasoning_content: 'Hmm.' },
      { ...base, seq: 3, event: 'RunContent', content: 'Let me look.' },
      { ...base, seq: 4, event: 'RunPaused', tools: [] },
      { ...base, seq: 5, event: 'RunContinued', tools: [] },
      { ...base, seq: 6, event: 'ToolCallStarted', tool: call('c1', 'running') },
      { ...base, seq: 7, event: 'ToolCallCompleted', tool: call('c1', 'completed') },
      { ...base, seq: 8, event: 'ToolCallStarted', tool: call('c2', 'running') },
      { ...base, seq: 9, event: 'RunContent', content: ' Found' },
    ] as unknown as RunEvent[];

    expect(recordWithStoredEvents(record, events)).toMatchObject({
      status: 'streaming',
      content: 'Let me look. Found',
      reasoning_content: 'Hmm.',
      tools: [call('c1', 'completed'), call('c2', 'running')],
    });
    // Nothing stored yet: the record as it is.
    expect(recordWithStoredEvents(record, [])).toMatchObject({
      content: 'Let me look.',
      tools: record.tools,
    });
  });

  it('gives it the reasoning phases its stored events hold, an open one counted, where its owner has them', () => {
    const record = {
      ...base,
      status: 'streaming',
      content: '',
      reasoning_content: '',
      finish_reason: null,
      tools: [],
      finished_at: null,
    } as unknown as RunRecord;
    const events = [
      { ...base, seq: 1, event: 'RunStarted' },
      { ...base, seq: 2, event: 'ReasoningStarted' },
      { ...base, seq: 3, event: 'RunContent', content: '', reasoning_content: 'First.' },
      { ...base, seq: 4, event: 'ReasoningCompleted', reasoning_content: 'First.' },
      { ...base, seq: 5, event: 'RunContent', content: 'Answer' },
      { ...base, seq: 6, event: 'ReasoningStarted' },
      { ...base, seq: 7, event: 'RunContent', content: '', reasoning_content: 'Second\nthought.' },
    ] as unknown as RunEvent[];
    const steps = [
      { title: 'First.', reasoning: 'First.' },
      { title: 'Second', reasoning: 'Second\nthought.' },
    ];
    const seen = recordWithStoredEvents(record, events);
    expect(seen).toMatchObject({
      content: 'Answer',
      reasoning_content: 'First.Second\nthought.',
      reasoning_steps: steps,
      extra_data: { reasoning_steps: steps },
    });
    // In the owner's order: the phases right after `reasoning_content`.
    const keys = Object.keys(seen);
    expect(keys.slice(keys.indexOf('reasoning_content'), keys.indexOf('reasoning_content') + 4)).toEqual([
      'reasoning_content',
      'reasoning_steps',
      'extra_data',
      'finish_reason',
    ]);
  });

  it("shows no metrics for a run continued after its pause, as its owner does, and the pause's while paused", () => {
    const metrics = finishedMetrics();
    const paused = {
      ...base,
      status: 'paused',
      content: '',
      reasoning_content: '',
      tools: [],
      metrics,
    } as unknown as RunRecord;
    expect(recordWithStoredEvents(paused, []).metrics).toStrictEqual(metrics);
    expect(recordWithStoredEvents({ ...paused, status: 'streaming' }, []).metrics).toBeNull();
  });
});

describe('reasoning step titles', () => {
  const titleOf = (reasoning: string) =>
    extraDataOfEvents([
      { ...base, seq: 1, event: 'RunContent', content: '', reasoning_content: reasoning },
    ] as unknown as RunEvent[])!.reasoning_steps[0]!.title;

  it('are the first line that says something, cut to 80 characters between two characters', () => {
    expect(titleOf('\n  \nFirst line.\nSecond.')).toBe('First line.');
    expect(titleOf('a'.repeat(80))).toBe('a'.repeat(80));
    expect(titleOf('a'.repeat(100))).toBe(`${'a'.repeat(79)}…`);
    // Never half an emoji (a lone surrogate, which JSON and UTF-8 carry only as U+FFFD).
    expect(titleOf(`${'a'.repeat(78)}😀bbbb\nsecond line`)).toBe(`${'a'.repeat(78)}😀…`);
    // 45 emoji are 90 UTF-16 units but 45 characters: nothing to cut.
    expect(titleOf('😀'.repeat(45))).toBe('😀'.repeat(45));
  });
});
