/**
 * A transaction's connection, checked out of the pool, that the server ends while the transaction
 * waits between two queries: the transaction fails as an outage, the process goes on, and the row
 * locks it held are let go. And a new connection that breaks while the pool makes its setting.
 */
import type { EventEmitter } from 'node:events';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSqlDatabase } from '../../src/runtime/sql/open-sql-database.js';
import { poolDatabase } from '../../src/runtime/sql/sql-database.js';
import {
  createProxiedDatabase,
  createTestDatabase,
  POSTGRES_URL,
  type TestDatabase,
} from '../support/databases.js';
import { eventually } from '../support/eventually.js';

/** Resolves when the client's connection is over. (Not `events.once`, which listens to 'error' too.) */
const ended = (client: unknown): Promise<void> =>
  new Promise((resolve) => (client as EventEmitter).once('end', () => resolve()));

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(() => database.drop(), 30_000);

describe('a transaction whose connection the server ends between two queries', () => {
  it('fails STORE_UNAVAILABLE, without crashing the process, and the next transaction gets a new connection', async () => {
    const pool = new pg.Pool({ connectionString: database.url, max: 1 });
    const db = poolDatabase(pool, 'test');
    // The connection the transaction checks out.
    let connection: unknown;
    pool.once('acquire', (client: pg.PoolClient) => {
      connection = client;
    });
    const admin = new pg.Client({ connectionString: POSTGRES_URL });
    await admin.connect();
    try {
      const failed = db.transaction(async (tx) => {
        const { rows } = await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
        // Ended by the server while no query of the transaction runs (a restart, an administrator):
        // pg reports it as an 'error' event of the checked-out client, which nothing else listens to.
        // (Listened for before: the end may come before the administrator's answer does.)
        const over = ended(connection);
        await admin.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
        await over;
        return tx.query('SELECT 1');
      });
      await expect(failed).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
      expect(await db.transaction((tx) => tx.query<{ one: number }>('SELECT 1 AS one'))).toMatchObject({
        rows: [{ one: 1 }],
      });
    } finally {
      await admin.end();
      await db.close();
    }
  });

  it('idle inside the transaction past idleInTransactionMs (an instance frozen there), lets its row locks go', async () => {
    // The setting is made before a connection is handed out: no query is sent beside another (pg
    // warns of that, and pg 9 will refuse it).
    const warnings: Error[] = [];
    const warned = (warning: Error) => warnings.push(warning);
    process.on('warning', warned);
    const db = await openSqlDatabase({ databaseUrl: database.url }, { idleInTransactionMs: 200 });
    const other = await openSqlDatabase({ databaseUrl: database.url });
    try {
      await db.query('CREATE TABLE held (id int PRIMARY KEY)');
      await db.query('INSERT INTO held VALUES (1)');
      const frozen = db.transaction(async (tx) => {
        const { rows } = await tx.query<{ pid: number }>(
          'SELECT pg_backend_pid() AS pid FROM held WHERE id = 1 FOR UPDATE',
        );
        // The instance stops here: the server ends the session, and with it the lock.
        await eventually(
          async () =>
            (await other.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [rows[0]!.pid])).rows
              .length === 0,
          { what: 'the session ended by the server' },
        );
        return tx.query('SELECT 1');
      });
      await expect(frozen).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
      // Another instance takes the row at once (`NOWAIT` fails while anyone holds it).
      const taken = await other.transaction((tx) =>
        tx.query('SELECT id FROM held WHERE id = 1 FOR UPDATE NOWAIT'),
      );
      expect(taken.rows).toEqual([{ id: 1 }]);
      expect((await db.query('SHOW idle_in_transaction_session_timeout')).rows).toEqual([
        { idle_in_transaction_session_timeout: '200ms' },
      ]);
      expect(warnings.map((warning) => warning.message)).toEqual([]);
    } finally {
      process.off('warning', warned);
      await db.close();
      await other.close();
    }
  });
});

describe('a new connection that breaks while the pool makes its setting', () => {
  it('fails that query STORE_UNAVAILABLE, without crashing the process, and the others go on', async () => {
    const database = await createProxiedDatabase();
    // `idleInTransactionMs` has every new connection set before the pool hands it out (`verify`),
    // a window in which the pool listens to no 'error' of the connection's.
    const db = await openSqlDatabase({ databaseUrl: database.proxiedUrl }, { idleInTransactionMs: 60_000 });
    const uncaught: unknown[] = [];
    const heard = (error: unknown) => uncaught.push(error);
    process.on('uncaughtException', heard);
    try {
      const broke = database.proxy.breakOn('idle_in_transaction_session_timeout');
      // Three at once: the pool's one connection serves one, and opens new ones for the others.
      const answers = await Promise.allSettled([1, 2, 3].map((n) => db.query('SELECT $1::int AS n', [n])));
      await broke;
      const failed = answers.filter((answer) => answer.status === 'rejected');
      expect(failed).toHaveLength(1);
      expect(failed[0]!.reason).toMatchObject({ code: 'STORE_UNAVAILABLE' });
      expect((await db.query<{ one: number }>('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      expect(uncaught).toEqual([]);
    } finally {
      process.off('uncaughtException', heard);
      await db.close();
      await database.drop();
    }
  });
});
