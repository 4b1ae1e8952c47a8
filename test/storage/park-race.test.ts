/**
 * A run that ends while its park is being written: its pause runs out before the store has the park
 * (a slow database, a short pause limit). The run ends once, `RUN_TIMEOUT`, with its RunPaused and
 * its terminal event in order, in the log and in the store, and nothing stays parked. (CI found it:
 * the RunPaused was appended to a closed log, and the terminal event took the RunPaused's seq.)
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { Agent } from '../../src/agent.js';
import { createOrchestrator, type OrchestratorOptions } from '../../src/runtime/create-orchestrator.js';
import { createMemoryEventBus } from '../../src/runtime/memory-event-bus.js';
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

/** A tool whose calls wait for a person's confirmation: its runs pause. */
const publish = () =>
  tool({
    name: 'publish',
    description: 'Publishes a post',
    parameters: z.object({}),
    requiresConfirmation: true,
    execute: () => 'published',
  });

/** An agent whose `publish` calls wait for a confirmation for `pauseTimeoutMs`, on an orchestrator over `store`. */
function publisher(store: RunStore, pauseTimeoutMs: number, options: OrchestratorOptions = {}) {
  const orchestrator = createOrchestrator({ ...options, store });
  const model = createFakeModel();
  const agent = new Agent({
    name: 'Publisher',
    model,
    orchestrator,
    tools: [publish()],
    limits: { pauseTimeoutMs },
  });
  return { orchestrator, model, agent };
}

describe.each(['before', 'after'] as const)('a pause that runs out %s its park is stored', (when) => {
  it('ends the run once, RUN_TIMEOUT after its RunPaused, and leaves nothing parked', async () => {
    const { store, inner, release } = storeWithHeldParks(when);
    const { orchestrator, model, agent } = publisher(store, 1);
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

/** A memory store whose claims of parked runs wait until the test lets each one go, in its order. */
function storeWithHeldClaims() {
  const inner = createMemoryRunStore();
  const held: Array<() => void> = [];
  let arrived: (() => void) | undefined;
  const store: RunStore = {
    ...inner,
    async claimParked(...args) {
      await new Promise<void>((resolve) => {
        held.push(resolve);
        arrived?.();
      });
      return inner.claimParked(...args);
    },
  };
  /** Resolves once `count` claims wait. */
  const claims = async (count: number) => {
    while (held.length < count) await new Promise<void>((resolve) => (arrived = resolve));
  };
  return { store, held, claims };
}

describe('a cancel and a continue of one parked run, together', () => {
  it.each(['the continue', 'the cancel'] as const)(
    'ends the run cancelled when cancelRun answered true, whichever the store gives the run to (%s)',
    async (winner) => {
      const { store, held, claims } = storeWithHeldClaims();
      const orchestrator = createOrchestrator({ store });
      const model = createFakeModel();
      const agent = new Agent({ name: 'Publisher', model, orchestrator, tools: [publish()] });
      const run = agent.run('publish', { stream: true });
      (await model.nextCall()).callTools([{ id: 'c1', name: 'publish' }]);
      expect((await collect(run)).at(-1)?.event).toBe('RunPaused');

      // The continue asks first; the cancel, while the continue's claim is in flight, is answered true.
      const continued = agent.continueRun(run.runId, { tools: [{ tool_call_id: 'c1', confirmed: true }] });
      await claims(1);
      expect(agent.cancelRun(run.runId)).toBe(true);
      await claims(2);
      const [continueClaim, cancelClaim] = held;
      if (winner === 'the continue') continueClaim!();
      else {
        cancelClaim!();
        await orchestrator.result(run.runId);
        continueClaim!();
      }
      // Had the continue gone on, its model request would come: it is answered, so the run would end.
      const outcome = await Promise.race([
        continued.then(
          () => 'continued',
          (error: { code?: string }) => error.code,
        ),
        model.nextCall().then((call) => {
          call.emit('Done.');
          call.end();
          return 'model called';
        }),
      ]);
      expect(outcome).toBe('RUN_NOT_PAUSED');
      for (const release of held) release();

      const output = await orchestrator.result(run.runId);
      expect(output).toMatchObject({ status: 'cancelled' });
      const events = await collect(await orchestrator.events(run.runId));
      checkRunEvents(events, 'cancelled');
      expect(events.filter((e) => e.event === 'RunContinued')).toEqual([]);
      expect(model.calls).toHaveLength(1);
      await orchestrator.shutdown();
    },
  );
});

describe("a cancel and a parked run's pause running out, together", () => {
  /** A run on `store` paused for a confirmation that runs out after 50 ms: its agent and orchestrator. */
  async function pausedBriefly(store: RunStore) {
    const { orchestrator, model, agent } = publisher(store, 50);
    const run = agent.run('publish', { stream: true });
    (await model.nextCall()).callTools([{ id: 'c1', name: 'publish' }]);
    return { orchestrator, agent, run };
  }

  /** Checks that the run ended cancelled, by the cancel `cancelRun` answered for, once. */
  async function endedCancelled(orchestrator: ReturnType<typeof createOrchestrator>, runId: string) {
    expect(await orchestrator.result(runId)).toMatchObject({ status: 'cancelled', cancel_reason: 'code' });
    checkRunEvents(await collect(await orchestrator.events(runId)), 'cancelled');
    await orchestrator.shutdown();
  }

  it.each(['the deadline', 'the cancel'] as const)(
    'ends the run cancelled when cancelRun answered true, whichever the store gives the run to (%s)',
    async (winner) => {
      const { store, held, claims } = storeWithHeldClaims();
      const { orchestrator, agent, run } = await pausedBriefly(store);
      expect((await collect(run)).at(-1)?.event).toBe('RunPaused');

      // The deadline's claim is in flight; the cancel meanwhile is answered true.
      await claims(1);
      expect(agent.cancelRun(run.runId)).toBe(true);
      await claims(2);
      const [deadlineClaim, cancelClaim] = held;
      if (winner === 'the deadline') deadlineClaim!();
      else cancelClaim!();
      for (const release of held) release();
      await endedCancelled(orchestrator, run.runId);
    },
  );

  it('ends the run cancelled when cancelRun answered true just after the deadline took the run from the store', async () => {
    const inner = createMemoryRunStore();
    let afterClaim: (() => void) | undefined;
    const store: RunStore = {
      ...inner,
      async claimParked(...args) {
        const claimed = await inner.claimParked(...args);
        const first = afterClaim;
        afterClaim = undefined;
        first?.();
        return claimed;
      },
    };
    const { orchestrator, agent, run } = await pausedBriefly(store);
    let answer: boolean | undefined;
    afterClaim = () => (answer = agent.cancelRun(run.runId));
    expect((await collect(run)).at(-1)?.event).toBe('RunPaused');
    await endedCancelled(orchestrator, run.runId);
    expect(answer).toBe(true);
  });
});

describe('a continue that loses its parked run to a cancel on another instance', () => {
  /**
   * Three instances on one store and bus: one paused a run, one continues it, and one cancels it
   * (on `cancellingStore`, the shared store as it sees it) just before the continue's claim.
   */
  async function losingContinue(cancellingStore: (inner: RunStore) => RunStore = (inner) => inner) {
    const inner = createMemoryRunStore();
    const eventBus = createMemoryEventBus();
    let beforeClaim: (() => Promise<unknown>) | undefined;
    // The continuing instance's claim comes after the other instance's cancel took the run.
    const late: RunStore = {
      ...inner,
      async claimParked(...args) {
        const cancelFirst = beforeClaim;
        beforeClaim = undefined;
        await cancelFirst?.();
        return inner.claimParked(...args);
      },
    };
    const instance = (store: RunStore) => {
      const orchestrator = createOrchestrator({ store, eventBus });
      const model = createFakeModel();
      return {
        orchestrator,
        model,
        agent: new Agent({ name: 'Publisher', model, orchestrator, tools: [publish()] }),
      };
    };
    const instances = [instance(inner), instance(late), instance(cancellingStore(inner))] as const;
    const [pausing, continuing, cancelling] = instances;
    const run = pausing.agent.run('publish', { stream: true });
    (await pausing.model.nextCall()).callTools([{ id: 'c1', name: 'publish' }]);
    expect((await collect(run)).at(-1)?.event).toBe('RunPaused');
    return {
      inner,
      runId: run.runId,
      cancelling,
      /** The continue, with `first` run just before its claim. */
      continueAfter: (first: () => Promise<unknown>) => {
        beforeClaim = first;
        return continuing.agent.continueRun(run.runId, { tools: [{ tool_call_id: 'c1', confirmed: true }] });
      },
      shutdown: async () => {
        for (const { orchestrator } of instances) await orchestrator.shutdown();
      },
    };
  }

  it('is refused with the status the run has (cancelled), not as if it streamed elsewhere', async () => {
    const { inner, runId, cancelling, continueAfter, shutdown } = await losingContinue();
    await expect(continueAfter(() => cancelling.orchestrator.requestCancel(runId))).rejects.toMatchObject({
      code: 'RUN_NOT_PAUSED',
      details: { status: 'cancelled' },
    });
    expect(await inner.getRun(runId)).toMatchObject({ status: 'cancelled' });
    await shutdown();
  });

  it('is refused with the status the run has (cancelled) before the cancel wrote its final record', async () => {
    // The cancelling instance's final record waits: its events are stored and sent, its record not.
    let releaseFinish!: () => void;
    let finishing!: () => void;
    const finishHeld = new Promise<void>((resolve) => (finishing = resolve));
    const { inner, runId, cancelling, continueAfter, shutdown } = await losingContinue((store) => ({
      ...store,
      async finishRun(record) {
        finishing();
        await new Promise<void>((resolve) => (releaseFinish = resolve));
        return store.finishRun(record);
      },
    }));
    let cancelled: Promise<unknown> | undefined;
    const continued = continueAfter(() => {
      cancelled = cancelling.orchestrator.requestCancel(runId);
      return finishHeld;
    });
    await expect(continued).rejects.toMatchObject({
      code: 'RUN_NOT_PAUSED',
      details: { status: 'cancelled' },
    });
    // (The record still said `paused` when the continue was refused.)
    expect(await inner.getRun(runId)).toMatchObject({ status: 'paused' });
    releaseFinish();
    await expect(cancelled).resolves.toMatchObject({ status: 'cancelled' });
    await shutdown();
  });
});

describe('a cancel of a parked run whose pause ran out with nobody to time it out', () => {
  it('finds it failed RUN_TIMEOUT, as a continue does, and is refused with that status, not answered cancelled', async () => {
    const store = createMemoryRunStore();
    const eventBus = createMemoryEventBus();
    const instance = (now: () => number) => publisher(store, 60_000, { eventBus, now });
    // The instance that paused it never times it out here (its timer is a minute away); the other's
    // clock is past the deadline, as for an instance that takes over from one that is gone.
    const pausing = instance(Date.now);
    const later = instance(() => Date.now() + 61_000);
    const run = pausing.agent.run('publish', { stream: true });
    (await pausing.model.nextCall()).callTools([{ id: 'c1', name: 'publish' }]);
    expect((await collect(run)).at(-1)?.event).toBe('RunPaused');

    await expect(later.orchestrator.requestCancel(run.runId)).rejects.toMatchObject({
      code: 'RUN_ALREADY_FINISHED',
      details: { run_id: run.runId, status: 'failed' },
    });
    expect(await store.getRun(run.runId)).toMatchObject({ status: 'failed', error: { code: 'RUN_TIMEOUT' } });
    const events = await store.readEvents(run.runId);
    checkRunEvents(events, 'failed');
    expect(events.map((event) => event.event)).toEqual(['RunStarted', 'RunPaused', 'RunError']);
    await pausing.orchestrator.shutdown();
    await later.orchestrator.shutdown();
  });
});

describe('a parked run whose pause limit is longer than the longest timer (~24.8 days)', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('waits its whole limit (30 days), not a millisecond (a timer past 2^31 - 1 ms fires at once)', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const day = 24 * 60 * 60 * 1000;
    const { orchestrator, model, agent } = publisher(createMemoryRunStore(), 30 * day);
    const run = agent.run('publish', { stream: true });
    (await model.nextCall()).callTools([{ id: 'c1', name: 'publish' }]);
    expect((await collect(run)).at(-1)?.event).toBe('RunPaused');
    await vi.advanceTimersByTimeAsync(29 * day);
    expect(await orchestrator.getRun(run.runId)).toMatchObject({ status: 'paused' });
    expect(orchestrator.pausedCount).toBe(1);
    await vi.advanceTimersByTimeAsync(day + 1);
    expect(await orchestrator.result(run.runId)).toMatchObject({
      status: 'failed',
      error: { code: 'RUN_TIMEOUT' },
    });
    await orchestrator.shutdown();
  });
});
