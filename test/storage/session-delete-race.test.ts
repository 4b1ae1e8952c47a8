/**
 * A session deleted while a run just started in it is still on its way into the store (a database
 * takes a round trip, on another connection of the pool): the delete waits for that record, so the
 * session does not come back with it, and the delete answers that the session existed.
 */
import { describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent.js';
import { createOrchestrator } from '../../src/runtime/create-orchestrator.js';
import { createMemoryRunStore } from '../../src/runtime/memory-run-store.js';
import type { RunStore } from '../../src/runtime/storage.js';
import { checkRunEvents, createFakeModel } from '../../src/testing/index.js';
import { collect } from '../support/collect.js';

describe('a session deleted while its new run is being recorded', () => {
  it('waits for the record, deletes the session with the run, and answers true', async () => {
    const inner = createMemoryRunStore();
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let creating!: () => void;
    const created = new Promise<void>((resolve) => (creating = resolve));
    const store: RunStore = {
      ...inner,
      async createRun(...args) {
        creating();
        await released;
        return inner.createRun(...args);
      },
    };
    const orchestrator = createOrchestrator({ store });
    const agent = new Agent({ name: 'Writer', model: createFakeModel(), orchestrator });

    const run = agent.run('Hi', { stream: true, sessionId: 'doomed' });
    await created;
    const deleted = orchestrator.deleteSession('doomed');
    // The memory store answers in promise jobs: by the next turn, a delete that did not wait for the
    // record has gone to the store, and the record lands after it.
    await new Promise(setImmediate);
    release();
    expect(await deleted).toBe(true);

    checkRunEvents(await collect(run), 'cancelled');
    expect(await orchestrator.getSession('doomed')).toBeUndefined();
    expect(await inner.getSession('doomed')).toBeUndefined();
    expect(await inner.sessionRuns('doomed')).toEqual([]);
    await orchestrator.shutdown();
  });
});
