/**
 * PostgreSQL behind a network path that goes silent (every packet dropped, nothing refused or
 * closed, as a firewall or a dead link does): TCP would wait for an answer as long as the silence
 * lasts. A query unanswered for its time limit fails STORE_UNAVAILABLE and its connection is
 * dropped, so new runs answer 503, reads fail, and a shutdown ends instead of waiting for ever.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createOrchestrator } from '../../src/runtime/create-orchestrator.js';
import type { RunEvent } from '../../src/runtime/run-events.js';
import type { RunLeases } from '../../src/runtime/run-leases.js';
import { createSqlRunStore } from '../../src/runtime/sql/create-sql-run-store.js';
import { openSqlDatabase } from '../../src/runtime/sql/open-sql-database.js';
import { poolDatabase } from '../../src/runtime/sql/sql-database.js';
import { checkRunEvents, createFakeModel } from '../../src/testing/index.js';
import { createProxiedDatabase, type ProxiedDatabase } from '../support/databases.js';
import { eventually } from '../support/eventually.js';

let database: ProxiedDatabase;
beforeAll(async () => {
  database = await createProxiedDatabase();
});
afterAll(() => database.drop(), 30_000);

const STORE_UNAVAILABLE = { code: 'STORE_UNAVAILABLE' };

/**
 * An orchestrator whose store reaches the database through the proxy (a query unanswered for 1 s
 * fails), a fake model, and a store that reads the same database directly.
 */
async function ownerBehindProxy() {
  const db = await openSqlDatabase({ databaseUrl: database.proxiedUrl }, { queryTimeoutMs: 1_000 });
  // Renewals minutes apart: none falls within a test (a failed one would add its line to what the
  // tests read of the log, when a loaded machine makes a test outlast a renewal period).
  const store = createSqlRunStore({ db, leaseMs: 600_000 });
  const keeperStarted = startUpReadsOf(store.leases);
  const direct = createSqlRunStore({ db: await openSqlDatabase({ databaseUrl: database.url }) });
  const orchestrator = createOrchestrator({ store });
  const model = createFakeModel();
  const start = (input: string, sessionId?: string) =>
    orchestrator.startRun({ agentId: 'story', agentName: 'Story', model, input, sessionId });
  return { store, direct, orchestrator, model, start, keeperStarted };
}

/**
 * Resolves once the lease keeper's reads at start (its first sweep for orphans and the cancels read
 * after its first renewal) have been answered: one still on its way when the path goes silent would
 * fail too, and add its line to what a test reads of the log.
 */
function startUpReadsOf(leases: RunLeases): Promise<unknown> {
  const answered = (name: 'orphans' | 'cancelRequests') => {
    const read = leases[name]!.bind(leases);
    return new Promise((resolve) => {
      leases[name] = (async () => {
        try {
          return await read();
        } finally {
          resolve(undefined);
        }
      }) as never;
    });
  };
  return Promise.all([answered('orphans'), answered('cancelRequests')]);
}

/**
 * Runs `test` with an owner behind the proxy and a first run of session `s1` completed, then shuts
 * the owner down; the proxy is restored whatever happens.
 */
async function afterFirstRun(test: (owner: Awaited<ReturnType<typeof ownerBehindProxy>>) => Promise<void>) {
  const owner = await ownerBehindProxy();
  try {
    const first = owner.start('Tell me a story', 's1');
    await first.recorded;
    const call = await owner.model.nextCall();
    call.emit('Once');
    call.end();
    expect(await first.result).toMatchObject({ status: 'completed' });
    await eventually(async () => (await owner.direct.getRun(first.runId))?.status === 'completed', {
      what: 'the first run stored',
    });
    await owner.keeperStarted;
    await test(owner);
    await owner.orchestrator.shutdown();
    await owner.store.close();
  } finally {
    await database.proxy.cut();
    await database.proxy.restore();
    await owner.direct.close();
  }
}

describe('a database whose network path goes silent', () => {
  it('fails queries and transactions STORE_UNAVAILABLE after the time limit, and lets the pool end', async () => {
    const pool = new pg.Pool({
      connectionString: database.proxiedUrl,
      max: 3,
      connectionTimeoutMillis: 1_000,
    });
    const db = poolDatabase(pool, 'the proxy', { queryTimeoutMs: 1_000 });
    // Three connections open (each query holds one for 50 ms), idle in the pool.
    await Promise.all([1, 2, 3].map(() => db.query('SELECT pg_sleep(0.05)')));
    database.proxy.silence();
    try {
      const results = await Promise.allSettled([
        db.query('SELECT 1'),
        db.urgent!.query('SELECT 2'),
        // Its BEGIN goes unanswered: no ROLLBACK is sent to wait behind it.
        db.transaction((tx) => tx.query('SELECT 3')),
      ]);
      for (const result of results)
        expect(result).toMatchObject({ status: 'rejected', reason: STORE_UNAVAILABLE });
      // Those connections were dropped; a new one is not answered either (the pool's own limit).
      await expect(db.query('SELECT 4')).rejects.toMatchObject(STORE_UNAVAILABLE);
      // Nothing holds the pool open.
      await db.close();
    } finally {
      await database.proxy.cut();
      await database.proxy.restore();
    }
  });

  it('leaves a transaction told unbounded (a migration) without the limit', async () => {
    const pool = new pg.Pool({ connectionString: database.url, max: 1 });
    const db = poolDatabase(pool, 'the database', { queryTimeoutMs: 100 });
    try {
      // The server takes 300 ms to answer, three times the limit.
      await expect(db.query('SELECT pg_sleep(0.3)')).rejects.toMatchObject(STORE_UNAVAILABLE);
      await expect(db.transaction((tx) => tx.query('SELECT pg_sleep(0.3)'))).rejects.toMatchObject(
        STORE_UNAVAILABLE,
      );
      const slept = await db.transaction((tx) => tx.query('SELECT pg_sleep(0.3), 1 AS one'), {
        unbounded: true,
      });
      expect(slept.rows[0]).toMatchObject({ one: 1 });
    } finally {
      await db.close();
    }
  });

  it('refuses new runs and reads, ends the runs in flight, and shuts down', async () => {
    const { store, direct, orchestrator, model, start, keeperStarted } = await ownerBehindProxy();
    const reported = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      const run = start('Tell me a story');
      await run.recorded;
      const call = await model.nextCall();
      call.emit('Once');
      await eventually(async () => (await direct.readEvents(run.runId)).length === 2, {
        what: 'the first delta stored',
      });
      await keeperStarted;

      database.proxy.silence();
      call.emit(' upon a time');
      const second = start('Tell me another');
      await expect(second.recorded).rejects.toMatchObject(STORE_UNAVAILABLE);
      await expect(orchestrator.listRuns()).rejects.toMatchObject(STORE_UNAVAILABLE);

      // What had been waiting for ever: the shutdown ends, and the run in flight with it, once.
      await orchestrator.shutdown();
      const events: RunEvent[] = [];
      for await (const event of run.events()) events.push(event);
      checkRunEvents(events, 'cancelled');
      expect(events.filter((event) => event.event === 'RunContent').map((event) => event.content)).toEqual([
        'Once',
        ' upon a time',
      ]);
      await store.close();
      // The write of ' upon a time' given up at shutdown: reported once, on one line.
      expect(reported.mock.calls).toEqual([
        [expect.stringMatching(/^runstate: the run store refused a write of run /)],
      ]);
    } finally {
      reported.mockRestore();
      await database.proxy.cut();
      await database.proxy.restore();
      await direct.close();
    }
  });

  it('deletes a run whose record committed but went unanswered (its caller told 503), once the database answers again', () =>
    afterFirstRun(async ({ direct, start }) => {
      // The requests reach the server, its answers never come back: the INSERTs commit.
      database.proxy.silence({ requests: true });
      const joined = start('Tell me another', 's1');
      const alone = start('Tell me a third', 's2');
      await expect(joined.recorded).rejects.toMatchObject(STORE_UNAVAILABLE);
      await expect(alone.recorded).rejects.toMatchObject(STORE_UNAVAILABLE);
      const pending = async (runId: string) => (await direct.getRun(runId))?.status === 'pending';
      await eventually(async () => (await pending(joined.runId)) && (await pending(alone.runId)), {
        what: 'both records committed, their answers lost',
      });

      await database.proxy.cut();
      await database.proxy.restore();
      // Gone, with the session only they made; the session of an earlier run stays, and its run.
      await eventually(
        async () =>
          (await direct.getRun(joined.runId)) === undefined &&
          (await direct.getRun(alone.runId)) === undefined,
        { what: 'the runs nobody accepted deleted' },
      );
      expect(await direct.getSession('s2')).toBeUndefined();
      expect(await direct.getSession('s1')).toBeDefined();
    }));

  it(
    'deletes a run whose record arrived after its delete (sent before the silence, delivered late)',
    () =>
      afterFirstRun(async ({ direct, start }) => {
        // The record's INSERT is held on its way; new connections get through, and the store deletes
        // the run it was told was not accepted, before the INSERT arrives.
        database.proxy.hold();
        const deleted = database.proxy.answered('DELETE FROM runstate_runs WHERE run_id = ANY');
        const late = start('Tell me another', 's2');
        await expect(late.recorded).rejects.toMatchObject(STORE_UNAVAILABLE);
        await deleted;
        // The INSERT commits now, after the delete (its answer is lost with its connection).
        await database.proxy.deliverHeld();

        // Deleted again: not left pending under an owner that never knew it.
        await eventually(async () => (await direct.getRun(late.runId)) === undefined, {
          what: 'the late record deleted',
          timeoutMs: 30_000,
          everyMs: 100,
        });
        expect(await direct.getSession('s2')).toBeUndefined();
        expect(await direct.getSession('s1')).toBeDefined();
      }),
    60_000,
  );
});
