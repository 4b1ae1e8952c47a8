import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { poolDatabase } from '../../src/runtime/sql/sql-database.js';
import { POSTGRES_URL } from '../support/databases.js';

describe('a query that waits too long for a pooled connection', () => {
  it('is STORE_UNAVAILABLE (a 503, and a write the store writer tries again), not a bug (a 500, a write dropped)', async () => {
    // pg's pool fails a query it could not hand a connection within connectionTimeoutMillis: what
    // a thousand runs writing at once meet. A real pool, its one connection held.
    const pool = new pg.Pool({ connectionString: POSTGRES_URL, max: 1, connectionTimeoutMillis: 20 });
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
});
