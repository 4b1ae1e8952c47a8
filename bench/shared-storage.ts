import { randomBytes } from 'node:crypto';
import pg from 'pg';

/**
 * The PostgreSQL database and Redis channel prefix that the `http-pg` client's two runstate
 * instances share for one benchmark run: created at its start, dropped at its end. The servers are
 * the local ones the tests use (`BENCH_POSTGRES_URL`, `BENCH_REDIS_URL` point elsewhere).
 */
export interface SharedStorage {
  /** The database's name (`runstate_bench_<random>`). */
  database: string;
  /** What both instances open (`openStorage`). */
  options: { databaseUrl: string; redisUrl: string; redisPrefix: string };
  /** Drops the database (Redis keeps nothing: runstate uses pub/sub only). */
  drop(): Promise<void>;
}

const POSTGRES_URL = process.env.BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';

async function onServer(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: POSTGRES_URL, connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/** Creates an empty database `runstate_bench_<random>` and a Redis prefix of this run. */
export async function createSharedStorage(): Promise<SharedStorage> {
  const id = randomBytes(6).toString('hex');
  const name = `runstate_bench_${id}`;
  await onServer(`CREATE DATABASE ${name}`).catch((error: unknown) => {
    const where = new URL(POSTGRES_URL);
    throw new Error(
      `the http-pg client needs PostgreSQL at ${where.hostname}:${where.port || 5432} (BENCH_POSTGRES_URL), ` +
        `or leave it out with --kinds: ${(error as Error).message}`,
    );
  });
  const url = new URL(POSTGRES_URL);
  url.pathname = `/${name}`;
  return {
    database: name,
    options: { databaseUrl: url.toString(), redisUrl: REDIS_URL, redisPrefix: `runstate-bench:${id}:` },
    drop: () => onServer(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`),
  };
}
