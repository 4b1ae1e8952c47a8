/**
 * A run that ends while its park is being written: its pause runs out before the store has the park
 * (a slow database, a short pause limit). The run ends once, `RUN_TIMEOUT`, with its RunPaused and
 * its terminal event in order, in the log and in the store, and nothing stays parked. (CI found it:
 * the RunPaused was appended to a closed log, and the terminal event took the RunPaused's seq.)
 */
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { Agent } from '../../src/agent.js';
import { createOrchestrator } from '../../src/runtime/create-orchestrator.js';
import { createMemoryRunStore } from '../../src/runtime/memory-run-store.js';
import type { RunStore } from '../../src/runtime/storage.js';
import { tool } from '../../src/tools/tool.js';
import { checkRunEvents, createFakeModel } from '../../src/testing/index.js';
import { collect } from '../support/collect.js';

/** A memory store whose parks wait for `release`, before or after they are stored. */
function storeWithHeldParks(when: 'before' | 'after') {
  const inner = createMemoryRunStore();
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  const store: RunStore = {
    ...inner,
    async parkRun(...args) {
      if (when === 'before') await released;
      await inner.parkRun(...args);
      if (when === 'after') await released;
    },
  };
  return { store, inner, release };
}

describe.each(['before', 'after'] as const)('a pause that runs out %s its park is stored', (when) => {
  it('ends the run once, RUN_TIMEOUT after its RunPaused, and leaves nothing parked', async () => {
    const { store, inner, release } = storeWithHeldParks(when);
    const orchestrator = createOrchestrator({ store });
    const model = createFakeModel();
    const publish = tool({
      name: 'publish',
      description: 'Publishes a post',
      parameters: z.object({}),
      requiresConfirmation: true,
      execute: () => 'published',
    });
    const agent = new Agent({
      name: 'Publisher',
      model,
      orchestrator,
      tools: [publish],
      limits: { pauseTimeoutMs: 1 },
    });
    const ended = new Promise<void>((resolve) =>
      orchestrator.subscribe((notice) => {
        if (notice.type === 'finished') resolve();
      }),
    );

    const run = agent.run('publish', { stream: true });
    (await model.nextCall()).callTools([{ id: 'c1', name: 'publish' }]);
    // The machine's own pause timer ends the run while the store holds the park.
    await ended;
    release();
    const output = await run.result;
    expect(output).toMatchObject({ status: 'failed', error: { code: 'RUN_TIMEOUT' } });

    const expected = [
      [1, 'RunStarted'],
      [2, 'RunPaused'],
      [3, 'RunError'],
    ];
    const live = await collect(await orchestrator.events(run.runId));
    expect(live.map((e) => [e.seq, e.event])).toEqual(expected);
    checkRunEvents(live, 'failed');
    const stored = await inner.readEvents(run.runId);
    expect(stored.map((e) => [e.seq, e.event])).toEqual(expected);
    expect(await inner.getRun(run.runId)).toMatchObject({ status: 'failed' });
    // Final: nobody can take it back, and a cancel finds nothing to cancel.
    expect(await inner.claimParked(run.runId)).toBeUndefined();
    expect(orchestrator.cancelRun(run.runId)).toBe(false);
    await expect(orchestrator.requestCancel(run.runId)).rejects.toMatchObject({
      code: 'RUN_ALREADY_FINISHED',
    });
    await orchestrator.shutdown();
  });
});
