/**
 * A store that refuses a write of a run (not an outage: `INVALID_INPUT`, a conflict): the write is
 * tried again, so a passing refusal loses nothing; a batch of events refused for good ends the
 * stored log there, with no later batch past the hole, and the run's readers are told, not handed a
 * log that looks complete.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { RunstateError } from '../../src/errors.js';
import { createOrchestrator, type Orchestrator } from '../../src/runtime/create-orchestrator.js';
import { createMemoryCancelBus } from '../../src/runtime/memory-cancel-bus.js';
import { createMemoryEventBus } from '../../src/runtime/memory-event-bus.js';
import { createMemoryRunStore } from '../../src/runtime/memory-run-store.js';
import type { RunEvent } from '../../src/runtime/run-events.js';
import type { RunStore } from '../../src/runtime/storage.js';
import { createFakeModel, nextTurn } from '../../src/testing/index.js';
import { collect } from '../support/collect.js';

const refusal = () => new RunstateError('INVALID_INPUT', 'the store says no');

/** A memory store that refuses the event batches and final records `refuse` picks; it logs each call. */
function refusingStore(refuse: {
  batch?: (firstSeq: number, call: number) => boolean;
  finish?: (call: number) => boolean;
}) {
  const store = createMemoryRunStore();
  const batches: number[] = [];
  let batchCalls = 0;
  let finishCalls = 0;
  const refusing: RunStore = {
    ...store,
    async appendEvents(runId: string, events: readonly RunEvent[]) {
      batches.push(events[0]!.seq);
      if (refuse.batch?.(events[0]!.seq, ++batchCalls)) throw refusal();
      await store.appendEvents(runId, events);
    },
    async finishRun(record) {
      if (refuse.finish?.(++finishCalls)) throw refusal();
      return store.finishRun(record);
    },
  };
  return { store: refusing, batches, finishCalls: () => finishCalls };
}

const opened: Orchestrator[] = [];
afterEach(async () => {
  for (const orchestrator of opened.splice(0)) await orchestrator.shutdown();
  vi.restoreAllMocks();
});

/** An owner and another instance on one store and one pair of buses; the owner's run streams four words. */
async function streamOnOwner(store: RunStore, whileActive?: (runId: string, reader: Orchestrator) => void) {
  const eventBus = createMemoryEventBus();
  const cancelBus = createMemoryCancelBus();
  const owner = createOrchestrator({ store, eventBus, cancelBus });
  const reader = createOrchestrator({ store, eventBus, cancelBus });
  opened.push(owner, reader);
  const model = createFakeModel();
  const run = owner.startRun({ agentId: 'a', agentName: 'A', model, input: 'Hi' });
  const call = await model.nextCall();
  await run.recorded;
  whileActive?.(run.runId, reader);
  for (const word of ['Once', ' upon', ' a', ' time']) {
    call.emit(word);
    await nextTurn();
  }
  call.end();
  // (Resolved once the final record is stored, or given up.)
  expect(await run.result).toMatchObject({ status: 'completed', content: 'Once upon a time' });
  return { run, reader };
}

describe('a write the store refuses', () => {
  it('is tried again: a refusal that passes loses no event and no final record, and is not reported', async () => {
    const reported = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    const { store, finishCalls } = refusingStore({
      batch: (_seq, call) => call === 2,
      finish: (call) => call === 1,
    });
    const { run, reader } = await streamOnOwner(store);
    const events = await collect(await reader.events(run.runId));
    expect(events.map(({ seq }) => seq)).toEqual(events.map((_, i) => i + 1));
    expect(events.at(-1)).toMatchObject({ event: 'RunCompleted', content: 'Once upon a time' });
    expect(await reader.getRun(run.runId)).toMatchObject({ status: 'completed' });
    expect(finishCalls()).toBe(2);
    expect(reported).not.toHaveBeenCalled();
  });

  it('ends the stored log at a batch of events refused for good, writes nothing past it, and tells the readers', async () => {
    const reported = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    // Every try of the batch after RunStarted is refused; the store would take a later one.
    const { store, batches } = refusingStore({ batch: (seq) => seq === 2 });
    const { run, reader } = await streamOnOwner(store);
    // Three tries of the refused batch, and no batch that would leave a gap in the log.
    expect(batches).toEqual([1, 2, 2, 2]);
    expect(await store.readEvents(run.runId)).toMatchObject([{ seq: 1, event: 'RunStarted' }]);
    // The final record is stored: the run is not left active.
    expect(await reader.getRun(run.runId)).toMatchObject({ status: 'completed' });
    await expect(collect(await reader.events(run.runId))).rejects.toThrow(
      `run ${run.runId} is over, but the store holds its events only up to 1: the rest were not stored`,
    );
    await expect(collect(await reader.events(run.runId, 1))).rejects.toThrow(/only up to 1/);
    const refusals = reported.mock.calls.filter(([message]) => String(message).includes(run.runId));
    expect(refusals).toHaveLength(1);
  });

  it("leaves the run's output to be read from its final record, also by a wait that began while it ran", async () => {
    vi.spyOn(console, 'error').mockImplementation(() => undefined);
    const { store } = refusingStore({ batch: (seq) => seq === 2 });
    let waited: Promise<unknown> | undefined;
    const { run } = await streamOnOwner(store, (runId, reader) => {
      waited = reader.result(runId);
    });
    expect(await waited).toMatchObject({
      run_id: run.runId,
      status: 'completed',
      content: 'Once upon a time',
    });
  });
});

describe('a reader of a run forgotten before its end was read', () => {
  it('is told RUN_NOT_FOUND, not that its events were lost', async () => {
    const { store } = refusingStore({});
    const { run, reader } = await streamOnOwner(store);
    const events = await reader.events(run.runId);
    await store.deleteSession(run.sessionId);
    await expect(collect(events)).rejects.toMatchObject({
      code: 'RUN_NOT_FOUND',
      message: `run ${run.runId} was deleted (with its session, or by the store's retention) before its end was read`,
    });
  });
});
