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

/** A memory store whose reads of events and records fail `STORE_UNAVAILABLE` during an outage. */
function storeWithOutages() {
  const memory = createMemoryRunStore();
  let down = false;
  const unavailable = () =>
    Promise.reject(new RunstateError('STORE_UNAVAILABLE', 'the database is unavailable'));
  const store: RunStore = {
    ...memory,
    readEvents: (runId, afterSeq) => (down ? unavailable() : memory.readEvents(runId, afterSeq)),
    getRun: (runId) => (down ? unavailable() : memory.getRun(runId)),
  };
  return { memory, store, outage: (on: boolean) => void (down = on) };
}

describe('a follower of a run another instance owns', () => {
  it('waits out an outage of the store: the bus still brings the events, and the stream goes on to the end', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const { memory, store, outage } = storeWithOutages();
    const bus = createMemoryEventBus();
    await memory.createRun(record);
    await memory.appendEvents('run-1', [content(1, 'a')]);

    const events = (await followStoredRun(store, bus, 'run-1'))[Symbol.asyncIterator]();
    expect((await events.next()).value).toMatchObject({ seq: 1 });
    const next = events.next();
    outage(true);
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

describe('a follower whose run another instance ends while it asks the store', () => {
  it('sends the end stored between its read of the events and its read of the record', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const memory = createMemoryRunStore();
    const lost = {
      ...base,
      seq: 2,
      event: 'RunError',
      status: 'failed',
      code: 'RUN_LOST',
      content: 'a',
    } as RunEvent;
    let sweepBeforeNextRead = false;
    // A sweeper on another instance (its owner gone) that stores the run's end just after this
    // follower found no new event, and before it reads the record.
    const store: RunStore = {
      ...memory,
      getRun: async (runId) => {
        if (sweepBeforeNextRead) {
          sweepBeforeNextRead = false;
          await memory.appendEvents(runId, [lost]);
          return { ...(await memory.getRun(runId))!, status: 'failed', finished_at: 2 };
        }
        return memory.getRun(runId);
      },
    };
    // A bus that lost every message: the follower has the store alone.
    const deaf = { ...createMemoryEventBus(), publish: () => undefined };
    await memory.createRun(record);
    await memory.appendEvents('run-1', [content(1, 'a')]);

    const events = (await followStoredRun(store, deaf, 'run-1'))[Symbol.asyncIterator]();
    expect((await events.next()).value).toMatchObject({ seq: 1 });
    const next = events.next();
    sweepBeforeNextRead = true;
    await vi.advanceTimersByTimeAsync(1_000);
    expect((await next).value).toMatchObject({ seq: 2, event: 'RunError', code: 'RUN_LOST' });
    expect((await events.next()).done).toBe(true);
  });
});

describe('a follower whose store goes out of reach as it starts', () => {
  it('waits the outage out before its first read, and replays then', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const { memory, store, outage } = storeWithOutages();
    await memory.createRun(record);
    await memory.appendEvents('run-1', [content(1, 'a')]);
    // Found (the route's first read), then the store goes: the stream is open, nothing read yet.
    const events = (await followStoredRun(store, createMemoryEventBus(), 'run-1'))[Symbol.asyncIterator]();
    outage(true);
    const first = events.next();
    await vi.advanceTimersByTimeAsync(1_000);
    await vi.advanceTimersByTimeAsync(1_000);
    outage(false);
    await vi.advanceTimersByTimeAsync(1_000);
    expect((await first).value).toMatchObject({ seq: 1, content: 'a' });
    void events.return?.();
  });
});

describe('a follower whose run is forgotten before its end (its session deleted)', () => {
  it('rejects RUN_NOT_FOUND rather than end as if the run were over', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const memory = createMemoryRunStore();
    await memory.createRun(record);
    await memory.appendEvents('run-1', [content(1, 'a')]);

    const events = (await followStoredRun(memory, createMemoryEventBus(), 'run-1'))[Symbol.asyncIterator]();
    expect((await events.next()).value).toMatchObject({ seq: 1 });
    const next = events.next();
    next.catch(() => undefined);
    await memory.deleteSession('session-1');
    // Quiet for a second: the follower asks the store, which no longer knows the run.
    await vi.advanceTimersByTimeAsync(1_000);
    await expect(next).rejects.toMatchObject({ code: 'RUN_NOT_FOUND' });
  });
});
