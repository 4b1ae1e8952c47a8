/**
 * PGlite runs no autovacuum (single-user PostgreSQL in this process): without a VACUUM, the space of
 * the runs retention forgets is never used again, and the data directory grows for good while the
 * rows stay bounded. The store vacuums it once a thousand runs were forgotten since the last time.
 */
import { afterEach, expect, it } from 'vitest';
import type { RunOutput } from '../../src/runtime/run-events.js';
import { createSqlRunStore } from '../../src/runtime/sql/create-sql-run-store.js';
import { openSqlDatabase } from '../../src/runtime/sql/open-sql-database.js';
import type { SqlDatabase } from '../../src/runtime/sql/sql-database.js';
import { createTempDir } from '../support/databases.js';
import { finishedMetrics, streamingRecord } from '../support/runs.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** PGlite in a temporary directory, and the VACUUMs sent to it. */
async function watchedPglite() {
  const dir = await createTempDir('runstate-vacuum-');
  const db = await openSqlDatabase({ dataDir: dir.path });
  cleanups.push(
    () => dir.remove(),
    () => db.close(),
  );
  const vacuums: string[] = [];
  const watched: SqlDatabase = {
    ...db,
    query(text, params) {
      if (/^\s*VACUUM/i.test(text)) vacuums.push(text);
      return db.query(text, params);
    },
  };
  return { db, watched, vacuums };
}

// A thousand runs through PGlite take seconds: a budget, not a measure.
it(
  'vacuums a PGlite database once a thousand runs were forgotten, and not before',
  { timeout: 60_000 },
  async () => {
    const { db, watched, vacuums } = await watchedPglite();
    expect(db.autovacuum).toBe(false);
    // One finished run kept: each run finished forgets the one before it.
    const store = createSqlRunStore({ db: watched, retention: { maxFinishedRuns: 1 } });
    const finish = async (from: number, to: number) => {
      const runs = Array.from({ length: to - from }, (_, i) =>
        streamingRecord({ run_id: `run-${from + i}`, session_id: `session-${from + i}` }),
      );
      await Promise.all(runs.map((run) => store.createRun(run)));
      for (const run of runs) {
        const output: RunOutput = {
          ...run,
          status: 'completed',
          content: 'Done.',
          metrics: finishedMetrics(),
          finished_at: run.created_at,
        };
        await store.finishRun(output);
      }
    };
    await finish(0, 1_000);
    // 999 forgotten: not yet.
    expect(vacuums).toEqual([]);
    await finish(1_000, 1_002);
    await expect.poll(() => vacuums).toEqual(['VACUUM']);
    expect((await store.listRuns()).map((run) => run.run_id)).toEqual(['run-1001']);
  },
);

it('counts the runs a deleted session takes with it', { timeout: 60_000 }, async () => {
  const { watched, vacuums } = await watchedPglite();
  const store = createSqlRunStore({ db: watched, maxRunsPerSession: Infinity });
  const runs = Array.from({ length: 1_000 }, (_, i) =>
    streamingRecord({ run_id: `run-${i}`, session_id: i < 999 ? 'long' : 'short' }),
  );
  await Promise.all(runs.map((run) => store.createRun(run)));
  expect(await store.deleteSession('short')).toBe(true);
  expect(vacuums).toEqual([]);
  // One session, 999 runs: a thousand forgotten in all.
  expect(await store.deleteSession('long')).toBe(true);
  await expect.poll(() => vacuums).toEqual(['VACUUM']);
  expect(await store.listRuns()).toEqual([]);
});
