import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { connectRedis } from '../src/runtime/redis/connect-redis.js';
import { BenchUsageError } from './config.js';

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

/** The bench cannot run the http-pg client here: said in one line, before anything is measured. */
function unavailable(
  what: string,
  url: string,
  defaultPort: number,
  variable: string,
  error: unknown,
): BenchUsageError {
  const where = new URL(url);
  return new BenchUsageError(
    `the http-pg client needs ${what} at ${where.hostname}:${where.port || defaultPort} (${variable}), ` +
      `or leave it out with --kinds: ${(error as Error).message}`,
  );
}

/**
 * Creates an empty database `runstate_bench_<random>` and a Redis prefix of this run, once both
 * servers answered: a server missing stops the bench before its first measurement.
 */
export async function createSharedStorage(): Promise<SharedStorage> {
  const id = randomBytes(6).toString('hex');
  const name = `runstate_bench_${id}`;
  try {
    await (await connectRedis(REDIS_URL)).quit();
  } catch (error) {
    throw unavailable('Redis', REDIS_URL, 6379, 'BENCH_REDIS_URL', error);
  }
  await onServer(`CREATE DATABASE ${name}`).catch((error: unknown) => {
    throw unavailable('PostgreSQL', POSTGRES_URL, 5432, 'BENCH_POSTGRES_URL', error);
  });
  const url = new URL(POSTGRES_URL);
  url.pathname = `/${name}`;
  return {
    database: name,
    options: { databaseUrl: url.toString(), redisUrl: REDIS_URL, redisPrefix: `runstate-bench:${id}:` },
    drop: () => onServer(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`),
  };
}
