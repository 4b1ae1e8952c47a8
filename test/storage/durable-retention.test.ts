/**
 * Retention of the durable stores: a database keeps history longer than memory by default, and the config file's
 * `retention`, `maxSessions` and `maxRunsPerSession` reach the store.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createOrchestrator } from '../../src/runtime/create-orchestrator.js';
import { openStorage, type Storage } from '../../src/runtime/open-storage.js';
import { createFakeModel } from '../../src/testing/index.js';
import type { RunOutput } from '../../src/runtime/run-events.js';
import { SQL_STORE_LIMITS } from '../../src/runtime/sql/create-sql-run-store.js';
import { parseConfig, storeLimitsOf } from '../../src/server/config-file.js';
import { createTempDir } from '../support/databases.js';
import { finishedMetrics, streamingRecord } from '../support/runs.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const HOUR = 60 * 60_000;

/** PGlite in a temporary directory, on a clock the test moves. */
async function pgliteStorage(store: Record<string, unknown> = {}) {
  const dir = await createTempDir('runstate-retention-');
  const clock = { now: Date.now() };
  const storage: Storage = await openStorage({
    dataDir: dir.path,
    store: { ...store, now: () => clock.now },
  });
  cleanups.push(
    () => dir.remove(),
    () => storage.close(),
  );
  return { store: storage.store!, clock };
}

/** Creates and finishes run `runId` in session `sessionId`. */
async function finishedRun(store: NonNullable<Storage['store']>, runId: string, sessionId = 'session-1') {
  const run = streamingRecord({ run_id: runId, session_id: sessionId });
  await store.createRun(run);
  const metrics = finishedMetrics();
  const output: RunOutput = {
    ...run,
    status: 'completed',
    content: 'Done.',
    metrics,
    finished_at: run.created_at,
  };
  expect(await store.finishRun(output)).toBe(true);
}

describe('a durable store', () => {
  it('keeps a finished run longer than memory does by default (30 days, not an hour), and bounds it', async () => {
    const { store, clock } = await pgliteStorage();
    await finishedRun(store, 'old');
    clock.now += 48 * HOUR;
    // A run finishing is when retention deletes: the old one is past the memory store's hour.
    await finishedRun(store, 'new', 'session-2');
    expect(await store.getRun('old')).toMatchObject({ status: 'completed' });
    expect((await store.listRuns()).map((run) => run.run_id)).toEqual(['old', 'new']);
    expect((await store.getSession('session-1'))?.run_ids).toEqual(['old']);
    // Retention still bounds what is kept: past 30 days, the old run goes.
    clock.now += 30 * 24 * HOUR;
    await finishedRun(store, 'newest', 'session-3');
    expect(await store.getRun('old')).toBeUndefined();
    expect(SQL_STORE_LIMITS).toEqual({
      maxFinishedRuns: 10_000,
      maxAgeMs: 30 * 24 * HOUR,
      maxSessions: 10_000,
      maxRunsPerSession: 100,
    });
  }, 60_000);

  it('takes limits past what a bigint holds as no limit (a config file may say 1e21)', async () => {
    const { store } = await pgliteStorage({
      retention: { maxFinishedRuns: 1e21, maxAgeMs: 1e21 },
      maxSessions: 1e21,
      maxRunsPerSession: 1e21,
    });
    for (const runId of ['a', 'b']) await finishedRun(store, runId);
    expect((await store.sessionRuns('session-1')).map((run) => run.run_id)).toEqual(['a', 'b']);
  }, 60_000);

  it('still bounds the runs of a session (the history sent to the model)', async () => {
    const { store } = await pgliteStorage({ maxRunsPerSession: 2 });
    for (const runId of ['a', 'b', 'c']) await finishedRun(store, runId);
    expect((await store.sessionRuns('session-1')).map((run) => run.run_id)).toEqual(['b', 'c']);
  }, 60_000);

  it('takes the retention and session limits of a config file', async () => {
    const config = parseConfig(
      JSON.stringify({ retention: { maxAgeMs: HOUR }, maxSessions: 1, maxRunsPerSession: 5 }),
      'runstate.config.json',
    );
    const limits = storeLimitsOf(config);
    expect(limits).toEqual({ retention: { maxAgeMs: HOUR }, maxSessions: 1, maxRunsPerSession: 5 });
    const { store, clock } = await pgliteStorage(limits);
    await finishedRun(store, 'old');
    clock.now += 2 * HOUR;
    await finishedRun(store, 'new', 'session-2');
    expect(await store.getRun('old')).toBeUndefined();
    expect((await store.listSessions()).map((session) => session.session_id)).toEqual(['session-2']);
  }, 60_000);
});

describe('store limits in the config file', () => {
  it('are none unless set', () => {
    expect(storeLimitsOf(parseConfig('{"port": 7777}', 'c.json'))).toBeUndefined();
  });

  it('are refused out of range or misspelt, naming each field', () => {
    const config = {
      retention: { maxAgeMs: -1, maxFinishedRuns: 1.5, maxAge: 10 },
      maxSessions: 0,
      maxRunsPerSession: 'all',
    };
    let message = '';
    try {
      parseConfig(JSON.stringify(config), 'c.json');
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toMatch(/^invalid config file c\.json:\n/);
    for (const field of [
      'retention: Unrecognized key: "maxAge"',
      'retention.maxAgeMs: ',
      'retention.maxFinishedRuns: ',
      'maxSessions: ',
      'maxRunsPerSession: ',
    ])
      expect(message).toContain(`  ${field}`);
  });
});

describe('the history a run sends, with maxRunsPerSession', () => {
  it('leaves out the run its own start forgot, in memory and in a database alike', async () => {
    const dir = await createTempDir('runstate-history-');
    cleanups.push(() => dir.remove());
    const sent: Record<string, string[]> = {};
    for (const [kind, options] of [
      ['memory', {}],
      ['PGlite', { dataDir: dir.path }],
    ] as const) {
      const storage = await openStorage({ ...options, store: { maxRunsPerSession: 3 } });
      cleanups.push(() => storage.close());
      const orchestrator = createOrchestrator({
        store: storage.store,
        cancelBus: storage.cancelBus,
        eventBus: storage.eventBus,
      });
      cleanups.push(() => orchestrator.shutdown());
      const model = createFakeModel();
      for (const input of ['Q1', 'Q2', 'Q3', 'Q4']) {
        const run = orchestrator.startRun({ agentId: 'a', agentName: 'A', model, input, sessionId: 's1' });
        const call = await model.nextCall();
        sent[kind] = call.messages.filter((m) => m.role === 'user').map((m) => String(m.content));
        call.emit(`A${input}`);
        call.end();
        await run.result;
      }
    }
    // Q4's start forgot Q1 (three runs a session): neither store sends it.
    expect(sent).toEqual({ memory: ['Q2', 'Q3', 'Q4'], PGlite: ['Q2', 'Q3', 'Q4'] });
  });
});
