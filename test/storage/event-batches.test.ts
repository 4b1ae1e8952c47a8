/**
 * How an owner writes a run's events: in batches, at most one in flight per run, so a store slower
 * than the model costs fewer calls (never one per token); and a run's result resolves once its
 * final record is stored.
 */
import { describe, expect, it } from 'vitest';
import {
  createMemoryRunStore,
  createOrchestrator,
  type RunEvent,
  type RunOutput,
  type RunStore,
} from '../../src/index.js';
import { createFakeModel, nextTurn } from '../../src/testing/index.js';

/** A memory store whose event writes wait until the test lets them through; it records each batch. */
function gatedStore() {
  const store = createMemoryRunStore();
  const batches: string[][] = [];
  const waiting: (() => void)[] = [];
  let finished = 0;
  let wakeWaiting: (() => void) | undefined;
  const gated: RunStore = {
    ...store,
    async appendEvents(runId: string, events: readonly RunEvent[]) {
      batches.push(events.map((event) => event.event));
      await new Promise<void>((resolve) => {
        waiting.push(resolve);
        wakeWaiting?.();
      });
      await store.appendEvents(runId, events);
    },
    async finishRun(record) {
      const done = await store.finishRun(record);
      finished++;
      return done;
    },
  };
  return {
    store: gated,
    batches,
    finished: () => finished,
    /** Resolves once a batch waits, and lets it through. */
    async release() {
      while (waiting.length === 0) await new Promise<void>((resolve) => (wakeWaiting = resolve));
      waiting.shift()!();
    },
  };
}

describe('event batches', () => {
  it('keeps one batch in flight per run: what arrives meanwhile goes in the next one', async () => {
    const gate = gatedStore();
    const model = createFakeModel();
    const orchestrator = createOrchestrator({ store: gate.store });
    const run = orchestrator.startRun({ agentId: 'a', agentName: 'A', model, input: 'Hi' });
    const call = await model.nextCall();
    // RunStarted is in flight; five deltas in five ticks arrive meanwhile.
    for (const word of ['One', ' two', ' three', ' four', ' five']) {
      call.emit(word);
      await nextTurn();
    }
    expect(gate.batches).toStrictEqual([['RunStarted']]);
    await gate.release();
    await gate.release();
    expect(gate.batches[1]).toStrictEqual(Array(5).fill('RunContent'));
    call.end();
    await gate.release();
    expect(gate.batches).toHaveLength(3);
    expect(gate.batches[2]).toStrictEqual(['RunCompleted']);
    expect((await run.result).content).toBe('One two three four five');
    await orchestrator.shutdown();
  });

  it("resolves a run's result once its final record is stored", async () => {
    const gate = gatedStore();
    const model = createFakeModel();
    const orchestrator = createOrchestrator({ store: gate.store });
    const run = orchestrator.startRun({ agentId: 'a', agentName: 'A', model, input: 'Hi' });
    await gate.release();
    (await model.nextCall()).end();
    let result: RunOutput | undefined;
    const resolved = run.result.then((output) => (result = output));
    const events = [];
    for await (const event of run.events()) events.push(event.event);
    // The run is final at once, and its events say so; its result waits for the store.
    expect(events.at(-1)).toBe('RunCompleted');
    expect(await orchestrator.getRun(run.runId)).toMatchObject({ status: 'completed' });
    await nextTurn();
    expect(result).toBeUndefined();
    await gate.release();
    await resolved;
    expect(gate.finished()).toBe(1);
    expect(result).toMatchObject({ status: 'completed' });
    expect(await gate.store.getRun(run.runId)).toMatchObject({ status: 'completed' });
    await orchestrator.shutdown();
  });
});
