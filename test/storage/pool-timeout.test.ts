import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { poolDatabase } from '../../src/runtime/sql/sql-database.js';
import { POSTGRES_URL } from '../support/databases.js';

/** A real pool of one connection, connected; from then on it gives up on a connection after `timeoutMs`. */
async function poolOfOne(timeoutMs: number) {
  const pool = new pg.Pool({ connectionString: POSTGRES_URL, max: 1, connectionTimeoutMillis: 10_000 });
  // The first connection within the generous timeout (a loaded machine takes more than 20 ms).
  (await pool.connect()).release();
  pool.options.connectionTimeoutMillis = timeoutMs;
  return pool;
}

describe('a query that waits for a pooled connection', () => {
  it('held by someone else for too long is STORE_UNAVAILABLE (a 503, and a write the store writer tries again), not a bug (a 500, a write dropped)', async () => {
    // pg's pool fails a query it could not hand a connection within connectionTimeoutMillis.
    const pool = await poolOfOne(20);
    const db = poolDatabase(pool, '127.0.0.1:5432');
    const held = await pool.connect();
    try {
      await expect(db.query('SELECT 1')).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
      await expect(db.transaction((tx) => tx.query('SELECT 1'))).rejects.toMatchObject({
        code: 'STORE_UNAVAILABLE',
      });
    } finally {
      held.release();
    }
    // Once a connection is free, queries go through.
    expect((await db.query<{ one: number }>('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    await db.close();
  });

  it("behind this database's own queries waits its turn, however long, and urgent ones go first", async () => {
    // What a thousand runs starting at once are: a long queue, not an outage.
    const pool = await poolOfOne(20);
    const db = poolDatabase(pool, '127.0.0.1:5432');
    const order: string[] = [];
    const run = (name: string, query: Promise<unknown>) => query.then(() => order.push(name));
    await Promise.all([
      run('slow', db.query('SELECT pg_sleep(0.1)')),
      run(
        'transaction',
        db.transaction((tx) => tx.query('SELECT 1')),
      ),
      run('query', db.query('SELECT 2')),
      run('urgent', db.urgent!.query('SELECT 3')),
    ]);
    expect(order).toEqual(['slow', 'urgent', 'transaction', 'query']);
    await db.close();
  });

  it('fails the queries waiting behind one that cannot reach the server', async () => {
    // Nothing listens on port 1: every connection attempt is refused.
    const pool = new pg.Pool({ connectionString: 'postgres://postgres@127.0.0.1:1/x', max: 1 });
    const db = poolDatabase(pool, '127.0.0.1:1');
    const results = await Promise.allSettled([
      db.query('SELECT 1'),
      db.query('SELECT 2'),
      db.query('SELECT 3'),
    ]);
    expect(results.map((r) => r.status === 'rejected' && (r.reason as { code?: string }).code)).toEqual([
      'STORE_UNAVAILABLE',
      'STORE_UNAVAILABLE',
      'STORE_UNAVAILABLE',
    ]);
    await db.close();
  });
});
