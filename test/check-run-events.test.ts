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
      { event: 'RunCancelled', content: 'Hi', status: 'cancelled' },
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
