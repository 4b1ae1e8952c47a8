/**
 * Leases in the SQL store: an owner that stops renewing loses its active runs to whichever live
 * instance finalises them, once, with one terminal event after what the owner stored. Leases are
 * made to run out by renewing them into the past: no test waits for a clock.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLeaseKeeper } from '../../src/runtime/create-lease-keeper.js';
import { followStoredRun } from '../../src/runtime/follow-stored-run.js';
import { createMemoryEventBus } from '../../src/runtime/memory-event-bus.js';
import type { RunEvent, RunRecord } from '../../src/runtime/run-events.js';
import type { ToolExecution } from '../../machines/run-types.js';
import { createSqlRunStore } from '../../src/runtime/sql/create-sql-run-store.js';
import { openSqlDatabase, type SqlLocation } from '../../src/runtime/sql/open-sql-database.js';
import type { SqlDatabase } from '../../src/runtime/sql/sql-database.js';
import { createTempDir, createTestDatabase } from '../support/databases.js';
import { collect } from '../support/collect.js';
import { finishedMetrics, streamingRecord } from '../support/runs.js';

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
}, 60_000);

async function location(kind: string): Promise<SqlLocation> {
  if (kind === 'PGlite') {
    const dir = await createTempDir();
    cleanups.push(() => dir.remove());
    return { dataDir: dir.path };
  }
  const database = await createTestDatabase();
  cleanups.push(() => database.drop());
  return { databaseUrl: database.url };
}

function shared(db: SqlDatabase): SqlDatabase {
  return {
    query: (t, p) => db.query(t, p),
    transaction: (fn) => db.transaction(fn),
    close: () => Promise.resolve(),
  };
}

const base: RunRecord = streamingRecord();

function content(run: RunRecord, seq: number, text: string): RunEvent {
  const { run_id, agent_id, agent_name, session_id, created_at } = run;
  return { event: 'RunContent', run_id, agent_id, agent_name, session_id, created_at, seq, content: text };
}

describe.each(['PGlite', 'PostgreSQL'])('SQL leases: %s', (kind) => {
  // One database for the file (a PGlite data dir takes seconds to create); tests use their own ids.
  let db: SqlDatabase;
  beforeAll(async () => {
    db = await openSqlDatabase(await location(kind));
    cleanups.push(() => db.close());
  }, 60_000);

  /**
   * A run of `name` streaming on an owner (`instance-<name>-a`) whose store had its events 1 and 2,
   * seen from another instance (`-b`); the owner's lease still runs, `lapse()` ends it.
   */
  async function streamingOnOwner(name: string, events = true) {
    const owner = createSqlRunStore({ db: shared(db), instanceId: `instance-${name}-a` });
    const other = createSqlRunStore({ db: shared(db), instanceId: `instance-${name}-b` });
    const run = streamingRecord({ run_id: `run-${name}`, session_id: `session-${name}` });
    await owner.leases.renew(60_000);
    await owner.createRun({ ...run, status: 'pending' });
    await owner.updateRun(run.run_id, { status: 'streaming' });
    if (events) await owner.appendEvents(run.run_id, [content(run, 1, 'Once'), content(run, 2, ' upon')]);
    return { owner, other, run, lapse: () => owner.leases.renew(-1) };
  }

  it("sends the RUN_LOST end to a reader that resumes at or past it: the owner's last sent events were never stored", async () => {
    const { other, run, lapse } = await streamingOnOwner('lost');
    // The owner's client read events 1 to 4; the store had 1 and 2 when the owner went.
    await lapse();
    expect(await createLeaseKeeper({ leases: other.leases }).sweep()).toBe(1);
    const [end] = await other.readEvents(run.run_id, 2);
    expect(end).toMatchObject({ event: 'RunError', seq: 3, code: 'RUN_LOST' });

    const bus = createMemoryEventBus();
    const resume = async (afterSeq: number) =>
      collect(await followStoredRun(other, bus, run.run_id, afterSeq));
    // From before the end, the events as stored; from the end or past it (Last-Event-ID 3 or 4 of
    // the owner's client), the end alone, not an empty stream or a 422.
    expect((await resume(1)).map((e) => e.seq)).toEqual([2, 3]);
    for (const afterSeq of [2, 3, 4]) expect(await resume(afterSeq)).toStrictEqual([end]);
    // Past what even the owner could have sent... still the end: the store cannot tell.
    expect(await resume(40)).toStrictEqual([end]);
  });

  it.each(['none', 'RunCancelled'] as const)(
    "ends a lost owner's run with its calls as the stored events last showed them (terminal event stored: %s)",
    async (terminal) => {
      const { owner, other, run, lapse } = await streamingOnOwner(`tools-${terminal}`);
      const { run_id, agent_id, agent_name, session_id, created_at } = run;
      const on = { run_id, agent_id, agent_name, session_id, created_at };
      const call = (id: string, fields: Partial<ToolExecution>): ToolExecution => ({
        ...{ tool_call_id: id, tool_name: 'search', tool_args: { q: id }, result: null, content: null },
        ...{ tool_call_error: false, status: 'running', requires_confirmation: false, confirmed: null },
        ...{
          confirmation_note: null,
          created_at,
          metrics: { start_time: created_at, end_time: null, duration: null },
        },
        ...fields,
      });
      const done = call('c1', {
        status: 'completed',
        result: 'found',
        content: 'found',
        metrics: { start_time: created_at, end_time: created_at + 1, duration: 1 },
      });
      // The record was written at the run's creation (no calls); the calls are in its events only.
      const events: RunEvent[] = [
        { event: 'ToolCallStarted', ...on, seq: 3, tool: call('c1', {}) },
        { event: 'ToolCallCompleted', ...on, seq: 4, tool: done, content: 'found' },
        { event: 'ToolCallStarted', ...on, seq: 5, tool: call('c2', {}) },
      ];
      // The owner stored its terminal event, and went before its final record.
      if (terminal === 'RunCancelled')
        events.push({
          event: 'RunCancelled',
          ...on,
          seq: 6,
          content: '',
          reason: 'api',
          status: 'cancelled',
        });
      await owner.appendEvents(run_id, events);
      await lapse();
      await createLeaseKeeper({ leases: other.leases }).sweep();
      const record = await other.getRun(run_id);
      expect(record?.status).toBe(terminal === 'none' ? 'failed' : 'cancelled');
      const [first, cut, more] = record?.tools ?? [];
      expect([first, more]).toEqual([done, undefined]);
      const { metrics: _running, ...unchanged } = call('c2', {});
      expect(cut).toMatchObject({ ...unchanged, status: 'cancelled', metrics: { start_time: created_at } });
      expect(typeof cut?.metrics?.end_time).toBe('number');
    },
  );

  it("sends the RunCancelled of a lost owner's run to a reader that resumes past it", async () => {
    const { other, run, lapse } = await streamingOnOwner('gone');
    await lapse();
    // A cancel that found the owner gone: the run ends cancelled after what the store had.
    const end = await other.leases.finishOrphan(run.run_id, { status: 'cancelled', reason: 'api' });
    expect(end).toMatchObject({ event: 'RunCancelled', seq: 3 });

    const bus = createMemoryEventBus();
    const resume = async (afterSeq: number) =>
      collect(await followStoredRun(other, bus, run.run_id, afterSeq));
    expect(await resume(2)).toStrictEqual([end]);
    // The owner's client, which read up to 5: the end, not a 422.
    expect(await resume(5)).toStrictEqual([end]);
    // From the end's own seq: the owner's client that read event 3 (never stored) from the owner
    // must get the end too; a reader that read this end from a follower gets it again, as RUN_LOST's.
    expect(await resume(3)).toStrictEqual([end]);
  });

  it("sends a lost owner's RunCancelled at the seq a follower resumes from, also when it comes over the bus", async () => {
    const { other, run, lapse } = await streamingOnOwner('gone-live');
    const bus = createMemoryEventBus();
    // The owner's client read up to 3 (3 never stored) and resumes here while the run is active.
    const followed = collect(await followStoredRun(other, bus, run.run_id, 3));
    await lapse();
    const end = await other.leases.finishOrphan(run.run_id, { status: 'cancelled', reason: 'api' });
    expect(end).toMatchObject({ event: 'RunCancelled', seq: 3 });
    bus.publish(run.run_id, [end!]);
    expect(await followed).toStrictEqual([end]);
  });

  it('ends a resume from the RunCancelled its owner wrote with nothing: its reader read it', async () => {
    const { owner, other, run } = await streamingOnOwner('cancelled-by-owner');
    const { run_id, agent_id, agent_name, session_id, created_at } = run;
    const end: RunEvent = {
      ...{ event: 'RunCancelled', run_id, agent_id, agent_name, session_id, created_at, seq: 3 },
      ...{ content: 'Once upon', reason: 'api', status: 'cancelled' },
    };
    await owner.appendEvents(run_id, [end]);
    expect(await owner.leases.finishedAsOrphan(run_id)).toBe(false);
    const bus = createMemoryEventBus();
    // While the record is not final yet (the end over the bus), and once it is (from the store).
    const followed = collect(await followStoredRun(other, bus, run_id, 3));
    bus.publish(run_id, [end]);
    expect(await followed).toStrictEqual([]);
    const metrics = {
      input_tokens: null,
      output_tokens: null,
      total_tokens: null,
      time_to_first_token: 0.1,
      duration: 0.2,
    };
    const cancelled = {
      ...run,
      status: 'cancelled',
      content: 'Once upon',
      cancel_reason: 'api',
      metrics,
    } as const;
    expect(await owner.finishRun({ ...cancelled, finished_at: created_at + 1 })).toBe(true);
    expect(await collect(await followStoredRun(other, bus, run_id, 3))).toStrictEqual([]);
    expect(await collect(await followStoredRun(other, bus, run_id, 2))).toStrictEqual([end]);
  });

  it('ends a resume from past the stored events with the RUN_LOST end, also when the bus never brings it', async () => {
    const { other, run, lapse } = await streamingOnOwner('quiet');
    // A bus that lost every message (Redis restarting): the follower has the store alone.
    const deaf = { ...createMemoryEventBus(), publish: () => Promise.resolve() };
    // The owner's client read up to 4 and resumes on this instance while the run is still active.
    const followed = collect(await followStoredRun(other, deaf, run.run_id, 4));
    await lapse();
    expect(await createLeaseKeeper({ leases: other.leases }).sweep()).toBe(1);
    const [end] = await other.readEvents(run.run_id, 2);
    expect(await followed).toStrictEqual([end]);
  });

  it('ends a resume from the terminal event of a run that ended by itself with nothing, and refuses one past it', async () => {
    const store = createSqlRunStore({ db: shared(db), instanceId: 'instance-done' });
    const run = streamingRecord({ run_id: 'run-done', session_id: 'session-done' });
    await store.createRun(run);
    const { run_id, agent_id, agent_name, session_id, created_at } = run;
    const metrics = {
      input_tokens: 1,
      output_tokens: 1,
      total_tokens: 2,
      time_to_first_token: 0.1,
      duration: 0.2,
    };
    const terminal: RunEvent = {
      ...{ event: 'RunCompleted', run_id, agent_id, agent_name, session_id, created_at, seq: 2 },
      ...{
        content: 'Hi',
        reasoning_content: '',
        finish_reason: 'stop',
        status: 'completed',
        metrics,
        tools: [],
      },
    };
    await store.appendEvents(run.run_id, [content(run, 1, 'Hi'), terminal]);
    const finished = { ...run, status: 'completed', content: 'Hi', finish_reason: 'stop', metrics } as const;
    expect(await store.finishRun({ ...finished, finished_at: created_at + 1 })).toBe(true);
    const bus = createMemoryEventBus();
    expect(await collect(await followStoredRun(store, bus, run.run_id, 2))).toStrictEqual([]);
    await expect(followStoredRun(store, bus, run.run_id, 3)).rejects.toMatchObject({ code: 'INVALID_INPUT' });
  });

  it('finalises the runs of an owner whose lease ran out, once, as RUN_LOST; the owner writes no more', async () => {
    const owner = createSqlRunStore({ db: shared(db), instanceId: 'instance-a' });
    const other = createSqlRunStore({ db: shared(db), instanceId: 'instance-b' });
    const run = base;
    await owner.leases.renew(60_000);
    await owner.createRun({ ...run, status: 'pending' });
    await owner.updateRun(run.run_id, { status: 'streaming' });
    await owner.appendEvents(run.run_id, [content(run, 1, 'Once upon'), content(run, 2, ' a time')]);

    // Alive: not an orphan, and nobody else may finalise it.
    expect(await other.leases.orphans()).toStrictEqual([]);
    expect(await other.leases.finishOrphan(run.run_id, { status: 'failed' })).toBeUndefined();

    await owner.leases.renew(-1);
    expect(await other.leases.orphans()).toStrictEqual([run.run_id]);
    const finished: RunEvent[] = [];
    const keeper = createLeaseKeeper({ leases: other.leases, onFinished: (e) => finished.push(e) });
    expect(await keeper.sweep()).toBe(1);
    expect(await keeper.sweep()).toBe(0);
    expect(finished).toMatchObject([{ event: 'RunError', seq: 3, code: 'RUN_LOST', status: 'failed' }]);

    const record = await other.getRun(run.run_id);
    expect(record).toMatchObject({
      status: 'failed',
      content: 'Once upon a time',
      error: { code: 'RUN_LOST' },
      // What the model reported went with the owner: unknown, not zero.
      metrics: { input_tokens: null, output_tokens: null, total_tokens: null, time_to_first_token: null },
    });
    expect(record!.finished_at).toEqual(expect.any(Number));
    // In milliseconds, as the owner's durations are.
    expect(record!.metrics!.duration * 1000).toBeCloseTo(Math.round(record!.metrics!.duration * 1000), 6);

    // The owner comes back: its late writes change nothing.
    await owner.appendEvents(run.run_id, [content(run, 3, '!'), content(run, 4, '!')]);
    expect(
      await owner.finishRun({ ...record!, status: 'completed', metrics: record!.metrics!, finished_at: 1 }),
    ).toBe(false);
    const events = await other.readEvents(run.run_id);
    expect(events.map((e) => e.event)).toStrictEqual(['RunContent', 'RunContent', 'RunError']);
    expect(events.at(-1)).toStrictEqual(finished[0]);
  });

  it('forgets the lease row of an owner gone without a word once its runs are ended, not before; one that was only late takes it back', async () => {
    const { owner, other, run, lapse } = await streamingOnOwner('forget');
    const row = async () =>
      (
        await db.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM runstate_instances WHERE instance_id = 'instance-forget-a'`,
        )
      ).rows[0]!.n;
    await lapse();
    // Its run still active: the row stays (a missing one would do as well, but the run is ended first).
    expect(await other.leases.orphans()).toStrictEqual([run.run_id]);
    expect(await row()).toBe(1);
    expect(await createLeaseKeeper({ leases: other.leases }).sweep()).toBe(1);
    // Ended: the next sweep forgets the row, which would otherwise stay for good.
    expect(await other.leases.orphans()).toStrictEqual([]);
    expect(await row()).toBe(0);
    // An instance alive after all renews as ever, and is no owner of lost runs.
    await owner.leases.renew(60_000);
    expect(await row()).toBe(1);
    expect(await other.leases.orphans()).toStrictEqual([]);
    expect(await row()).toBe(1);
  });

  it('keeps the reasoning of an orphan its stored events hold, its phases too, as it keeps its content', async () => {
    const { owner, other, run, lapse } = await streamingOnOwner('reasoned', false);
    const { run_id, agent_id, agent_name, session_id, created_at } = run;
    const at = { run_id, agent_id, agent_name, session_id, created_at };
    const steps = [{ title: 'Think.', reasoning: 'Think.' }];
    await owner.appendEvents(run.run_id, [
      { event: 'ReasoningStarted', ...at, seq: 1 },
      { event: 'RunContent', ...at, seq: 2, content: '', reasoning_content: 'Think.' },
      {
        event: 'ReasoningCompleted',
        ...at,
        seq: 3,
        content: { reasoning_steps: steps },
        content_type: 'ReasoningSteps',
        reasoning_content: 'Think.',
        extra_data: { reasoning_steps: steps },
      },
      content(run, 4, 'Once'),
    ]);
    await lapse();
    const keeper = createLeaseKeeper({ leases: other.leases, onFinished: () => undefined });
    expect(await keeper.sweep()).toBe(1);
    expect(await other.getRun(run.run_id)).toMatchObject({
      status: 'failed',
      content: 'Once',
      reasoning_content: 'Think.',
      reasoning_steps: steps,
      extra_data: { reasoning_steps: steps },
      error: { code: 'RUN_LOST' },
    });
    // Its end too, as the owner's own end would have had them.
    expect((await other.readEvents(run.run_id, 4))[0]).toMatchObject({
      event: 'RunError',
      code: 'RUN_LOST',
      reasoning_steps: steps,
      extra_data: { reasoning_steps: steps },
    });
  });

  it('closes the reasoning phase an orphan left open before its end, as its owner would have', async () => {
    const { owner, other, run, lapse } = await streamingOnOwner('reasoning', false);
    const { run_id, agent_id, agent_name, session_id, created_at } = run;
    const at = { run_id, agent_id, agent_name, session_id, created_at };
    await owner.appendEvents(run.run_id, [
      { event: 'ReasoningStarted', ...at, seq: 1 },
      { event: 'RunContent', ...at, seq: 2, content: '', reasoning_content: 'Still ' },
      { event: 'RunContent', ...at, seq: 3, content: '', reasoning_content: 'thinking' },
    ]);
    await lapse();
    const finished: RunEvent[] = [];
    const keeper = createLeaseKeeper({ leases: other.leases, onFinished: (e) => finished.push(e) });
    expect(await keeper.sweep()).toBe(1);
    const steps = [{ title: 'Still thinking', reasoning: 'Still thinking' }];
    const events = await other.readEvents(run.run_id);
    expect(events.slice(3)).toMatchObject([
      {
        event: 'ReasoningCompleted',
        seq: 4,
        content: { reasoning_steps: steps },
        content_type: 'ReasoningSteps',
        reasoning_content: 'Still thinking',
        extra_data: { reasoning_steps: steps },
      },
      { event: 'RunError', seq: 5, code: 'RUN_LOST', reasoning_steps: steps },
    ]);
    expect(finished).toStrictEqual([events.at(-1)]);
    expect(await other.getRun(run.run_id)).toMatchObject({
      reasoning_steps: steps,
      reasoning_content: 'Still thinking',
    });
  });

  it('takes the reasoning of an orphan from the RunCompleted its owner stored before it went', async () => {
    const { owner, other, run, lapse } = await streamingOnOwner('completed-reasoned', false);
    const { run_id, agent_id, agent_name, session_id, created_at } = run;
    const at = { run_id, agent_id, agent_name, session_id, created_at };
    const steps = [{ title: 'Think.', reasoning: 'Think.' }];
    await owner.appendEvents(run.run_id, [
      { event: 'RunContent', ...at, seq: 1, content: '', reasoning_content: 'Think.' },
      content(run, 2, 'Once'),
      {
        event: 'RunCompleted',
        ...at,
        seq: 3,
        content: 'Once',
        reasoning_content: 'Think.',
        finish_reason: 'stop',
        status: 'completed',
        metrics: finishedMetrics(),
        tools: [],
        reasoning_steps: steps,
        extra_data: { reasoning_steps: steps },
      },
    ]);
    await lapse();
    // (Its end was stored already: the sweep finalises its record and sends no end of its own.)
    await createLeaseKeeper({ leases: other.leases }).sweep();
    expect(await other.getRun(run.run_id)).toMatchObject({
      status: 'completed',
      content: 'Once',
      reasoning_content: 'Think.',
      reasoning_steps: steps,
      extra_data: { reasoning_steps: steps },
      metrics: finishedMetrics(),
    });
  });

  it('finalises an orphan whose cancel was asked for as cancelled, when a sweep finds it first', async () => {
    const { other, run, lapse } = await streamingOnOwner('asked', false);
    await other.leases.requestCancel!(run.run_id, 'api');
    await lapse();
    const finished: RunEvent[] = [];
    const keeper = createLeaseKeeper({ leases: other.leases, onFinished: (e) => finished.push(e) });
    expect(await keeper.sweep()).toBe(1);
    expect(finished).toMatchObject([{ event: 'RunCancelled', reason: 'api', status: 'cancelled' }]);
    expect(await other.getRun(run.run_id)).toMatchObject({ status: 'cancelled', cancel_reason: 'api' });
  });

  it.skipIf(kind === 'PGlite')(
    'finalises the other orphans while one is locked by a frozen transaction, and that one once it is free',
    async () => {
      const owner = createSqlRunStore({ db: shared(db), instanceId: 'instance-frozen-a' });
      const other = createSqlRunStore({ db: shared(db), instanceId: 'instance-frozen-b' });
      const locked = streamingRecord({ run_id: 'run-locked', session_id: 'session-locked' });
      const free = streamingRecord({ run_id: 'run-free', session_id: 'session-free' });
      await owner.leases.renew(60_000);
      for (const run of [locked, free]) await owner.createRun(run);
      await owner.leases.renew(-1);
      // The owner froze in the middle of a write to one of its runs: its transaction holds the row.
      let unfreeze!: () => void;
      const frozen = new Promise<void>((resolve) => (unfreeze = resolve));
      let holding!: () => void;
      const held = new Promise<void>((resolve) => (holding = resolve));
      const transaction = db.transaction(async (tx) => {
        await tx.query('SELECT 1 FROM runstate_runs WHERE run_id = $1 FOR UPDATE', [locked.run_id]);
        holding();
        await frozen;
      });
      await held;
      const keeper = createLeaseKeeper({ leases: other.leases });
      expect(await keeper.sweep()).toBe(1);
      expect(await other.getRun(free.run_id)).toMatchObject({
        status: 'failed',
        error: { code: 'RUN_LOST' },
      });
      expect(await other.getRun(locked.run_id)).toMatchObject({ status: 'streaming' });
      unfreeze();
      await transaction;
      expect(await keeper.sweep()).toBe(1);
      expect(await other.getRun(locked.run_id)).toMatchObject({ status: 'failed' });
    },
  );

  it('cancels an orphan at once, with its partial content and the reason', async () => {
    const owner = createSqlRunStore({ db: shared(db), instanceId: 'instance-c' });
    await owner.leases.renew(-1);
    const run = { ...base, run_id: 'run-2', session_id: 'session-2' };
    await owner.createRun(run);
    await owner.appendEvents(run.run_id, [content(run, 1, 'Part')]);
    const other = createSqlRunStore({ db: shared(db), instanceId: 'instance-d' });
    const keeper = createLeaseKeeper({ leases: other.leases });
    const event = await keeper.cancelOrphan(run.run_id, 'api');
    expect(event).toMatchObject({
      event: 'RunCancelled',
      seq: 2,
      content: 'Part',
      reason: 'api',
      status: 'cancelled',
    });
    expect(await keeper.cancelOrphan(run.run_id, 'api')).toBeUndefined();
    expect(await owner.getRun(run.run_id)).toMatchObject({
      status: 'cancelled',
      cancel_reason: 'api',
      content: 'Part',
    });
  });

  it('a keeper takes its lease at start and ends it on a graceful stop', async () => {
    const store = createSqlRunStore({ db: shared(db), instanceId: 'instance-e', leaseMs: 60_000 });
    const keeper = createLeaseKeeper({ leases: store.leases });
    await keeper.start();
    const lease = () =>
      db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM runstate_instances WHERE instance_id = 'instance-e' AND lease_until > now()`,
      );
    expect((await lease()).rows[0]!.n).toBe(1);
    await keeper.stop({ release: true });
    expect((await lease()).rows[0]!.n).toBe(0);
  });

  it('takes the runs of an owner whose lease row is gone (released with a run left active) for orphans', async () => {
    const owner = createSqlRunStore({ db: shared(db), instanceId: 'instance-f', leaseMs: 60_000 });
    const run = { ...base, run_id: 'run-3', session_id: 'session-3' };
    // Created before the owner ever renewed: the lease row comes with the first run.
    await owner.createRun(run);
    const other = createSqlRunStore({ db: shared(db), instanceId: 'instance-g' });
    expect(await other.leases.orphans()).not.toContain(run.run_id);
    await owner.leases.release();
    expect(await other.leases.orphans()).toContain(run.run_id);
    expect(await other.leases.finishOrphan(run.run_id, { status: 'failed' })).toMatchObject({
      event: 'RunError',
      code: 'RUN_LOST',
      seq: 1,
    });
  });
});
