/**
 * Databases of their own for tests: a fresh PostgreSQL database on the local server (dropped after)
 * and a PGlite data directory in a temporary folder (removed after).
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js';

/** The local server every test database lives on (trust auth, user postgres). */
export const POSTGRES_URL =
  process.env.RUNSTATE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/** A database of one test. */
export interface TestDatabase {
  readonly url: string;
  /** Drops the database, closing whatever connections are still open to it. */
  drop(): Promise<void>;
}

async function onServer<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Creates an empty database `runstate_test_<random>` on {@link POSTGRES_URL}. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `runstate_test_${randomBytes(6).toString('hex')}`;
  await onServer((client) => client.query(`CREATE DATABASE ${name}`));
  const url = new URL(POSTGRES_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: () =>
      onServer((client) => client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(
        () => undefined,
      ),
  };
}

/** A test database reached through a TCP proxy that can cut it off (outage tests). */
export interface ProxiedDatabase extends TestDatabase {
  readonly proxy: TcpProxy;
  /** The database's URL through the proxy; `url` reaches it directly. */
  readonly proxiedUrl: string;
}

/** {@link createTestDatabase} behind {@link startTcpProxy}; `drop()` closes the proxy too. */
export async function createProxiedDatabase(): Promise<ProxiedDatabase> {
  const database = await createTestDatabase();
  const url = new URL(database.url);
  const proxy = await startTcpProxy(url.hostname, Number(url.port || 5432));
  url.port = String(proxy.port);
  return {
    url: database.url,
    proxy,
    proxiedUrl: url.toString(),
    drop: async () => {
      await proxy.close();
      await database.drop();
    },
  };
}

/** A temporary directory (for a PGlite data dir), removed by `remove()`. */
export async function createTempDir(
  prefix = 'runstate-',
): Promise<{ path: string; remove(): Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}
