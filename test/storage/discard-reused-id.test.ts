/**
 * A run the SQL store told its caller it did not accept (its INSERT committed, its answer lost) is
 * deleted, then deleted again for a while in case a late INSERT arrives. A caller that gives its own
 * run ids (an idempotency key) may create the run again meanwhile: a delete already on its way must
 * not take the run accepted after it.
 */
import { describe, expect, it } from 'vitest';
import { RunstateError } from '../../src/errors.js';
import { createSqlRunStore } from '../../src/runtime/sql/create-sql-run-store.js';
import { openSqlDatabase } from '../../src/runtime/sql/open-sql-database.js';
import type { SqlDatabase } from '../../src/runtime/sql/sql-database.js';
import { createTempDir } from '../support/databases.js';
import { streamingRecord } from '../support/runs.js';

const DISCARD = 'DELETE FROM runstate_runs WHERE run_id = ANY';

/** A database whose next INSERT of a run commits and then fails as an outage, and whose deletes of runs not accepted the test can hold. */
function faultyDatabase(real: SqlDatabase) {
  let loseNextInsert = false;
  const deletes: Array<{ runIds: unknown; release: () => void }> = [];
  let deleteSent: (() => void) | undefined;
  let holding = false;
  const db: SqlDatabase = {
    ...real,
    transaction: real.transaction.bind(real),
    close: real.close.bind(real),
    async query(sql, params) {
      if (sql.includes(DISCARD)) {
        const held = holding
          ? new Promise<void>((release) => deletes.push({ runIds: params?.[0], release }))
          : undefined;
        deleteSent?.();
        await held;
      }
      const result = await real.query(sql, params);
      if (loseNextInsert && sql.includes('INSERT INTO runstate_runs')) {
        loseNextInsert = false;
        throw new RunstateError('STORE_UNAVAILABLE', 'the answer never came');
      }
      return result;
    },
  } as SqlDatabase;
  return {
    db,
    deletes,
    loseNextInsert: () => (loseNextInsert = true),
    hold: () => (holding = true),
    /** Resolves when the next delete of runs not accepted is sent. */
    nextDelete: () => new Promise<void>((resolve) => (deleteSent = resolve)),
  };
}

describe('a run id given again after the store did not accept it', () => {
  it('keeps the run accepted the second time, whatever delete of the first was on its way', async () => {
    const dir = await createTempDir();
    const database = faultyDatabase(await openSqlDatabase({ dataDir: dir.path }));
    const store = createSqlRunStore({ db: database.db });
    try {
      const run = (input: string) => streamingRecord({ run_id: 'run-1', session_id: 's1', run_input: input });
      database.loseNextInsert();
      await expect(store.createRun(run('first'))).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
      // The first delete (a second later) takes the record that committed; the id is watched after.
      await database.nextDelete();
      const watched = database.nextDelete();
      await expect.poll(() => store.getRun('run-1'), { timeout: 5_000 }).toBeUndefined();

      // The next delete of the watched id is on its way (held) when the caller sends the run again.
      database.hold();
      await watched;
      expect(database.deletes.map((held) => held.runIds)).toEqual([['run-1']]);
      const created = store.createRun(run('second'));
      for (const held of database.deletes) held.release();
      await created;
      expect(await store.getRun('run-1')).toMatchObject({ run_input: 'second' });
    } finally {
      await store.close();
      await dir.remove();
    }
  }, 30_000);
});
