/**
 * A store closed under a running run (the storage closed before the orchestrator's shutdown): the
 * run's writes are refused, and that is reported once for the run, not once per write.
 */
import { expect, it, vi } from 'vitest';
import { createMemoryRunStore } from '../../src/runtime/memory-run-store.js';
import { createOrchestrator } from '../../src/runtime/create-orchestrator.js';
import { createFakeModel, nextTurn } from '../../src/testing/index.js';

it('reports the refused writes of a run once', async () => {
  const store = createMemoryRunStore();
  const orchestrator = createOrchestrator({ store });
  const model = createFakeModel();
  const reported = vi.spyOn(console, 'error').mockImplementation(() => undefined);
  try {
    const run = orchestrator.startRun({ agentId: 'a', agentName: 'A', model, input: 'Hi' });
    await run.recorded;
    const call = await model.nextCall();
    await store.close();
    for (const word of ['Once', ' upon', ' a', ' time']) {
      call.emit(word);
      await nextTurn();
    }
    call.end();
    // The run goes on for its readers: what the store refused is reported, not thrown at them.
    expect(await run.result).toMatchObject({ status: 'completed', content: 'Once upon a time' });
    const refusals = reported.mock.calls.filter(([message]) => String(message).includes(run.runId));
    expect(refusals).toHaveLength(1);
    expect(refusals[0]![0]).toBe(`runstate: the run store refused a write of run ${run.runId}`);
  } finally {
    reported.mockRestore();
    await orchestrator.shutdown();
  }
});
