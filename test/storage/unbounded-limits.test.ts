/**
 * Limits without bound (`Infinity`, which the library takes: "no limit") in a store that keeps runs
 * as JSON and deadlines as `bigint`: a paused run's snapshot and its pause's deadline are stored, and
 * the run continued from them keeps its limits, as it does in memory.
 */
import { z } from 'zod';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Agent, tool } from '../../src/index.js';
import { createOrchestrator } from '../../src/runtime/create-orchestrator.js';
import { openStorage } from '../../src/runtime/open-storage.js';
import { createFakeModel } from '../../src/testing/index.js';
import { confirmingTool } from '../support/confirming-tool.js';
import { createTempDir } from '../support/databases.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe('a run with unbounded limits, paused in PGlite and continued', () => {
  it('keeps every limit unbounded across its pause, and its pause open', async () => {
    const dir = await createTempDir();
    cleanups.push(() => dir.remove());
    const storage = await openStorage({ dataDir: dir.path });
    cleanups.push(() => storage.close());
    const logged = vi.spyOn(console, 'error');
    cleanups.push(() => Promise.resolve(logged.mockRestore()));
    const orchestrator = createOrchestrator({
      store: storage.store,
      limits: {
        timeoutMs: Infinity,
        idleTimeoutMs: Infinity,
        maxToolRounds: Infinity,
        pauseTimeoutMs: Infinity,
        retry: { maxAttempts: Infinity },
      },
    });
    cleanups.push(() => orchestrator.shutdown());
    const echo = tool({ name: 'echo', description: 'Echoes', parameters: z.object({}), execute: () => 'ok' });
    const model = createFakeModel({
      onCall: (call) => {
        if (call.index === 0) call.callTools([{ id: 'p1', name: 'publish' }]);
        // A second round of tools after the continue: maxToolRounds must still be unbounded.
        else if (call.index === 1) call.callTools([{ id: 'e1', name: 'echo' }]);
        else {
          call.emit('Done.');
          call.end();
        }
      },
    });
    const agent = new Agent({ name: 'Publisher', model, tools: [confirmingTool(), echo], orchestrator });

    const paused = await agent.run('Publish it');
    expect(paused).toMatchObject({ status: 'paused' });
    expect(await storage.store!.getRun(paused.run_id)).toMatchObject({ status: 'paused' });
    const output = await agent.continueRun(paused.run_id, {
      tools: [{ tool_call_id: 'p1', confirmed: true }],
    });
    expect(output).toMatchObject({ status: 'completed', content: 'Done.', error: null });
    expect(logged).not.toHaveBeenCalled();
  });
});
