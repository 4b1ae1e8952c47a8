import { afterEach, describe, expect, it, vi } from 'vitest';
import { RunstateError } from '../../src/errors.js';
import { followStoredRun } from '../../src/runtime/follow-stored-run.js';
import { createMemoryEventBus } from '../../src/runtime/memory-event-bus.js';
import { createMemoryRunStore } from '../../src/runtime/memory-run-store.js';
import type { RunEvent, RunRecord } from '../../src/runtime/run-events.js';
import type { RunStore } from '../../src/runtime/storage.js';
import { streamingRecord } from '../support/runs.js';

afterEach(() => {
  vi.useRealTimers();
});

const record: RunRecord = streamingRecord();
const base = {
  run_id: 'run-1',
  agent_id: 'agent',
  agent_name: 'Agent',
  session_id: 'session-1',
  created_at: 1,
};
const content = (seq: number, text: string) =>
  ({ ...base, seq, event: 'RunContent', content: text }) as RunEvent;

describe('a follower of a run another instance owns', () => {
  it('waits out an outage of the store: the bus still brings the events, and the stream goes on to the end', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const memory = createMemoryRunStore();
    let down = false;
    const unavailable = () =>
      Promise.reject(new RunstateError('STORE_UNAVAILABLE', 'the database is unavailable'));
    const store: RunStore = {
      ...memory,
      readEvents: (runId, afterSeq) => (down ? unavailable() : memory.readEvents(runId, afterSeq)),
      getRun: (runId) => (down ? unavailable() : memory.getRun(runId)),
    };
    const bus = createMemoryEventBus();
    await memory.createRun(record);
    await memory.appendEvents('run-1', [content(1, 'a')]);

    const events = (await followStoredRun(store, bus, 'run-1'))[Symbol.asyncIterator]();
    expect((await events.next()).value).toMatchObject({ seq: 1 });
    const next = events.next();
    down = true;
    // Quiet for a second: the follower asks the store what it missed, and finds it out of reach.
    await vi.advanceTimersByTimeAsync(1_000);
    await vi.advanceTimersByTimeAsync(1_000);
    const terminal = {
      ...base,
      seq: 3,
      event: 'RunCompleted',
      content: 'ab',
      status: 'completed',
    } as RunEvent;
    bus.publish('run-1', [content(2, 'b'), terminal]);

    expect((await next).value).toMatchObject({ seq: 2, content: 'b' });
    expect((await events.next()).value).toMatchObject({ seq: 3, event: 'RunCompleted' });
    expect((await events.next()).done).toBe(true);
  });
});
