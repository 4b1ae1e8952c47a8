/**
 * An instance cut off from PostgreSQL for longer than its lease (the network path cut by a proxy):
 * it ends its own runs `RUN_LOST` and aborts their model requests, another instance finalises them
 * in the store, and the store keeps exactly one terminal event: nothing is written twice.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createLeaseKeeper } from '../../src/runtime/create-lease-keeper.js';
import { createOrchestrator } from '../../src/runtime/create-orchestrator.js';
import { createMemoryRunStore } from '../../src/runtime/memory-run-store.js';
import type { RunLeases } from '../../src/runtime/run-leases.js';
import type { RunStore } from '../../src/runtime/storage.js';
import { tool, type RunLimits, type Tool } from '../../src/index.js';
import { z } from 'zod';
import { openStorage } from '../../src/runtime/open-storage.js';
import { isTerminalEvent, type RunEvent } from '../../src/runtime/run-events.js';
import { checkRunEvents, createFakeModel, nextTurn } from '../../src/testing/index.js';
import { createProxiedDatabase, type ProxiedDatabase } from '../support/databases.js';
import { eventually } from '../support/eventually.js';
import { confirmingTool } from '../support/confirming-tool.js';

let database: ProxiedDatabase;
beforeAll(async () => {
  database = await createProxiedDatabase();
});
afterAll(() => database.drop(), 30_000);

describe('an owner frozen past its lease (a VM paused, SIGSTOP)', () => {
  const leaseMs = 300;

  /** An owner on PostgreSQL with a run that streamed "Once"; `freeze()` blocks it past its lease. */
  async function frozenOwner({ limits, tools }: { limits?: RunLimits; tools?: Tool[] } = {}) {
    const storage = await openStorage({ databaseUrl: database.url, leaseMs });
    const model = createFakeModel();
    const owner = createOrchestrator({ store: storage.store });
    const run = owner.startRun({
      agentId: 'story',
      agentName: 'Story',
      model,
      input: 'Tell me a story',
      limits,
      tools,
    });
    await run.recorded;
    const call = await model.nextCall();
    call.emit('Once');
    await nextTurn();
    return {
      run,
      call,
      // Nothing runs past the lease's end, the lapse's timer included.
      freeze: (): void => {
        const until = performance.now() + leaseMs + 100;
        while (performance.now() < until);
      },
      close: async (): Promise<void> => {
        await owner.shutdown();
        await storage.close();
      },
    };
  }

  it('drops what its model sends when it wakes: the run ends RUN_LOST first, as the store will keep it', async () => {
    const { run, call, freeze, close } = await frozenOwner();
    try {
      freeze();
      // The model's data is the first thing the process meets when it wakes, before any timer.
      call.emit(' upon a time');
      const events: RunEvent[] = [];
      for await (const event of run.events()) events.push(event);
      checkRunEvents(events, 'failed');
      expect(events.at(-1)).toMatchObject({ event: 'RunError', code: 'RUN_LOST' });
      expect(events.flatMap((e) => (e.event === 'RunContent' ? [e.content] : [])).join('')).toBe('Once');
      expect(call.signal.aborted).toBe(true);
      // It had output: its time to first token is kept (the metrics' histogram observes it); its
      // usage is unknown (a request was open).
      const { metrics } = await run.result;
      expect(metrics).toMatchObject({ input_tokens: null, output_tokens: null, total_tokens: null });
      expect(metrics.time_to_first_token).toBeGreaterThanOrEqual(0);
    } finally {
      await close();
    }
  });

  // Retried: under load (three copies of this file at once on 2 cores) it times out in about one
  // run of three, also on the code before 2 December's evening session; the cause is not found yet.
  it(
    'ends the run RUN_LOST when it wakes, not by a timer of the run (here the idle timeout)',
    { retry: 2 },
    async () => {
      const { run, freeze, close } = await frozenOwner({ limits: { idleTimeoutMs: 100 } });
      try {
        // Past the idle timeout too: its timer is due before the lapse's when the process wakes.
        freeze();
        const output = await run.result;
        expect(output).toMatchObject({ status: 'failed', error: { code: 'RUN_LOST' }, content: 'Once' });
      } finally {
        await close();
      }
    },
  );
  it('ends the run RUN_LOST when it wakes, not by the model stream that broke meanwhile', async () => {
    const { run, call, freeze, close } = await frozenOwner();
    try {
      freeze();
      call.fail(new Error('connection reset'));
      expect(await run.result).toMatchObject({ status: 'failed', error: { code: 'RUN_LOST' } });
    } finally {
      await close();
    }
  });

  it('drops the result of a tool that finished meanwhile: no ToolCallCompleted after the lease', async () => {
    let finish!: (result: string) => void;
    const lookup = tool({
      name: 'lookup',
      description: 'Looks something up, slowly',
      parameters: z.object({}),
      execute: () => new Promise<string>((resolve) => (finish = resolve)),
    });
    const { run, call, freeze, close } = await frozenOwner({ tools: [lookup] });
    try {
      call.callTools([{ id: 'call-1', name: 'lookup', arguments: {} }]);
      for await (const event of run.events()) if (event.event === 'ToolCallStarted') break;
      freeze();
      finish('found it');
      const events: RunEvent[] = [];
      for await (const event of run.events()) events.push(event);
      expect(events.at(-1)).toMatchObject({ event: 'RunError', code: 'RUN_LOST' });
      expect(events.map((event) => event.event)).not.toContain('ToolCallCompleted');
    } finally {
      await close();
    }
  });
});

describe('an owner whose run another instance finalised before it learned of its lapse', () => {
  it('ends the run for its own clients as the store keeps it (here a cancel), not RUN_LOST', async () => {
    const leaseMs = 300;
    const storage = await openStorage({ databaseUrl: database.url, leaseMs });
    const other = await openStorage({ databaseUrl: database.url, leaseMs });
    const store = storage.store!;
    const otherStore = other.store!;
    const real = store.leases!;
    // As a process frozen past its lease sees it: its renewals seem to go through (and its own sweep
    // finds nothing, as a frozen process sweeps nothing), then fail.
    let renewals: 'real' | 'lost' | 'failing' = 'real';
    const leases: RunLeases = {
      ...real,
      orphans: () => (renewals === 'real' ? real.orphans() : Promise.resolve([])),
      renew: (ms) =>
        renewals === 'real'
          ? real.renew(ms)
          : renewals === 'lost'
            ? Promise.resolve()
            : Promise.reject(new Error('the database is out of reach')),
    };
    const model = createFakeModel();
    const owner = createOrchestrator({ store: { ...store, leases } });
    try {
      const run = owner.startRun({ agentId: 'story', agentName: 'Story', model, input: 'Tell me a story' });
      await run.recorded;
      const call = await model.nextCall();
      call.emit('Once');
      await eventually(async () => (await otherStore.readEvents(run.runId)).length === 2, {
        what: 'the RunContent stored',
      });
      renewals = 'lost';
      await eventually(async () => (await otherStore.leases!.orphans()).includes(run.runId), {
        what: "the owner's lease to run out in the database",
      });
      const sweeper = createLeaseKeeper({ leases: otherStore.leases! });
      expect(await sweeper.cancelOrphan(run.runId, 'api')).toMatchObject({ event: 'RunCancelled', seq: 3 });
      renewals = 'failing';
      const events: RunEvent[] = [];
      for await (const event of run.events()) events.push(event);
      checkRunEvents(events, 'cancelled');
      expect(events.at(-1)).toMatchObject({ event: 'RunCancelled', seq: 3, reason: 'api', content: 'Once' });
      expect(await run.result).toMatchObject({ status: 'cancelled', cancel_reason: 'api', content: 'Once' });
      expect(call.signal.aborted).toBe(true);
      expect((await otherStore.readEvents(run.runId)).filter(isTerminalEvent)).toHaveLength(1);
    } finally {
      await owner.shutdown();
      await storage.close();
      await other.close();
    }
  });
});

describe('a run whose park is in flight when the lease lapses', () => {
  it('ends here RUN_LOST once the park is written (it was halted, not parked), with nothing thrown', async () => {
    const store = createMemoryRunStore();
    let away = false;
    const leases: RunLeases = {
      instanceId: 'here',
      leaseMs: 300,
      renew: () => (away ? Promise.reject(new Error('the database is out of reach')) : Promise.resolve()),
      release: () => Promise.resolve(),
      orphans: () => Promise.resolve([]),
      finishOrphan: () => Promise.resolve(undefined),
      finishedAsOrphan: () => Promise.resolve(false),
    };
    // The park's write and the reads after the lapse wait for the test.
    let writePark!: () => void;
    const parkWritten = new Promise<void>((resolve) => (writePark = resolve));
    let answerReads!: () => void;
    const readsAnswered = new Promise<void>((resolve) => (answerReads = resolve));
    const slow: RunStore = {
      ...store,
      leases,
      parkRun: async (...args: Parameters<RunStore['parkRun']>) => {
        await parkWritten;
        return store.parkRun(...args);
      },
      getRun: async (runId: string) => {
        if (away) await readsAnswered;
        return store.getRun(runId);
      },
    };
    const lapses: string[] = [];
    const logged = vi.spyOn(console, 'error').mockImplementation((message: unknown) => {
      if (String(message).includes('could not renew the lease for')) lapses.push(String(message));
    });
    const model = createFakeModel();
    const owner = createOrchestrator({ store: slow });
    try {
      const run = owner.startRun({
        agentId: 'a',
        agentName: 'A',
        model,
        input: 'Publish it',
        tools: [confirmingTool()],
      });
      await run.recorded;
      (await model.nextCall()).callTools([{ id: 'call-1', name: 'publish', arguments: {} }]);
      // Paused, its park (and its RunPaused, which is stored with it) waiting for the store.
      await eventually(async () => (await owner.getRun(run.runId))?.status === 'paused', {
        what: 'the run to pause',
      });
      away = true;
      await eventually(() => lapses.length > 0, { what: 'the lease to lapse' });
      writePark();
      await nextTurn();
      answerReads();
      expect(await run.result).toMatchObject({ status: 'failed', error: { code: 'RUN_LOST' } });
      expect(owner.isPaused(run.runId)).toBe(false);
    } finally {
      logged.mockRestore();
      await owner.shutdown();
    }
  });
});

describe('a paused run continued around a lapse of the lease', () => {
  it('is refused while the lease has lapsed, and once renewed streams every delta', async () => {
    // A memory store with leases the test controls: renewals fail while the database is "away".
    const store = createMemoryRunStore();
    let away = false;
    let renewedAt = performance.now();
    const leases: RunLeases = {
      instanceId: 'here',
      leaseMs: 300,
      renew: () => {
        if (away) return Promise.reject(new Error('the database is out of reach'));
        renewedAt = performance.now();
        return Promise.resolve();
      },
      release: () => Promise.resolve(),
      orphans: () => Promise.resolve([]),
      finishOrphan: () => Promise.resolve(undefined),
      finishedAsOrphan: () => Promise.resolve(false),
    };
    Object.assign(store, { leases });
    const model = createFakeModel();
    const tools = [confirmingTool()];
    const owner = createOrchestrator({ store });
    const agent = { agentId: 'story', agentName: 'Story', model, tools };
    try {
      const run = owner.startRun({ ...agent, input: 'Publish it' });
      (await model.nextCall()).callTools([{ id: 'call-1', name: 'publish', arguments: {} }]);
      for await (const event of run.events()) if (event.event === 'RunPaused') break;

      away = true;
      // The lease's end, counted from the last renewal that went through (its timer need not have
      // fired: the continue checks the clock).
      const lastRenewal = renewedAt;
      await eventually(() => performance.now() > lastRenewal + leases.leaseMs, {
        what: 'the lease to run out',
      });
      const answers = [{ tool_call_id: 'call-1', confirmed: true }];
      await expect(owner.continueRun(run.runId, answers, agent)).rejects.toMatchObject({
        code: 'STORE_UNAVAILABLE',
      });
      expect(owner.isPaused(run.runId)).toBe(true);

      away = false;
      const continued = await eventually(
        () =>
          owner.continueRun(run.runId, answers, agent).catch((error: unknown) => {
            if ((error as { code?: string }).code === 'STORE_UNAVAILABLE') return undefined;
            throw error;
          }),
        { what: 'a renewal' },
      );
      const call = await model.nextCall();
      call.emit('Hello ');
      await nextTurn();
      call.emit('world');
      call.end();
      const events: RunEvent[] = [];
      for await (const event of continued.events()) events.push(event);
      expect(events.at(-1)).toMatchObject({ event: 'RunCompleted' });
      expect(events.flatMap((e) => (e.event === 'RunContent' ? [e.content] : [])).join('')).toBe(
        'Hello world',
      );
    } finally {
      await owner.shutdown();
    }
  });
});

describe('an owner that cannot renew its lease', () => {
  it('ends its runs RUN_LOST itself, refuses new ones, and the store keeps one terminal event', async () => {
    const leaseMs = 600;
    const cutOff = await openStorage({ databaseUrl: database.proxiedUrl, leaseMs });
    const live = await openStorage({ databaseUrl: database.url, leaseMs });
    const model = createFakeModel();
    const owner = createOrchestrator({ store: cutOff.store });
    const other = createOrchestrator({ store: live.store });
    const request = { agentId: 'story', agentName: 'Story', model, input: 'Tell me a story' };
    try {
      const run = owner.startRun(request);
      await run.recorded;
      const call = await model.nextCall();
      call.emit('Once');
      await eventually(async () => (await live.store!.readEvents(run.runId)).length === 2, {
        what: 'the first delta stored',
      });

      await database.proxy.cut();
      call.emit(' upon');
      await nextTurn();
      // Within CHUNK_INTERVAL_MS of the last: held for the machine when the lease is lost.
      call.emit(' a time');
      const events: RunEvent[] = [];
      for await (const event of run.events()) events.push(event);
      // Its own readers see what the store will keep, and no more tokens are paid for.
      checkRunEvents(events, 'failed');
      expect(events.at(-1)).toMatchObject({ event: 'RunError', code: 'RUN_LOST' });
      // Its output has every delta its readers got, the held one too.
      const streamed = events.flatMap((e) => (e.event === 'RunContent' ? [e.content] : [])).join('');
      expect(streamed).toBe('Once upon a time');
      expect((await run.result).content).toBe(streamed);
      expect(call.signal.aborted).toBe(true);
      expect(() => owner.startRun(request)).toThrow(expect.objectContaining({ code: 'STORE_UNAVAILABLE' }));

      // The other instance finalises it, while the owner still cannot write.
      const record = await eventually(
        async () => {
          const found = await live.store!.getRun(run.runId);
          return found?.finished_at ? found : undefined;
        },
        { what: 'the run finalised by the other instance' },
      );
      expect(record).toMatchObject({ status: 'failed', error: { code: 'RUN_LOST' }, content: 'Once' });

      // Back in reach, the owner's late writes are dropped: one terminal event, the last, no gap.
      await database.proxy.restore();
      await owner.shutdown();
      const stored = await live.store!.readEvents(run.runId);
      checkRunEvents(stored, 'failed');
      expect(stored.filter(isTerminalEvent)).toHaveLength(1);
      expect(stored.map((event) => event.event)).toStrictEqual(['RunStarted', 'RunContent', 'RunError']);
    } finally {
      await database.proxy.restore();
      await owner.shutdown();
      await other.shutdown();
      await cutOff.close();
      await live.close();
    }
  });
});
