import { stat } from 'node:fs/promises';
import { RunstateError } from '../../errors.js';
import { migrate } from './migrate.js';
import { poolDatabase, type SqlDatabase } from './sql-database.js';

/** Where runs are kept: a PGlite data directory, or a PostgreSQL server. */
export type SqlLocation = { dataDir: string } | { databaseUrl: string };

/**
 * Opens and migrates the database of a {@link SqlLocation}. `pg` and PGlite are loaded only here, so
 * the in-memory default never loads them. A server that cannot be reached throws
 * `STORE_UNAVAILABLE` with a one-line message naming its host and port, never its password.
 */
export async function openSqlDatabase(location: SqlLocation): Promise<SqlDatabase> {
  const db =
    'dataDir' in location ? await openPglite(location.dataDir) : await openPool(location.databaseUrl);
  try {
    await migrate(db);
  } catch (error) {
    await db.close().catch(() => undefined);
    throw error;
  }
  return db;
}

async function openPglite(dataDir: string): Promise<SqlDatabase> {
  // PGlite makes a directory that does not exist; anything else in its place fails inside its
  // WebAssembly file system, with a bare errno and after seconds.
  const found = await stat(dataDir).catch(() => undefined);
  if (found && !found.isDirectory()) {
    throw new RunstateError('INVALID_INPUT', `the data directory ${dataDir} is not a directory`);
  }
  const { PGlite } = await import('@electric-sql/pglite');
  try {
    return await PGlite.create({ dataDir });
  } catch (error) {
    throw new RunstateError(
      'STORE_UNAVAILABLE',
      `cannot open the data directory ${dataDir}: ${messageOf(error)}`,
      {
        cause: error,
      },
    );
  }
}

async function openPool(databaseUrl: string): Promise<SqlDatabase> {
  const { default: pg } = await import('pg');
  const where = describeUrl(databaseUrl);
  const pool = new pg.Pool({ connectionString: databaseUrl, connectionTimeoutMillis: 5_000 });
  // An idle connection that breaks (server restarted) is reported here; unhandled, it would crash
  // the process. The pool drops it and the next query opens a new one.
  pool.on('error', () => undefined);
  const db = poolDatabase(pool, where);
  try {
    await pool.query('SELECT 1');
  } catch (error) {
    await pool.end().catch(() => undefined);
    throw new RunstateError('STORE_UNAVAILABLE', `cannot reach PostgreSQL at ${where}: ${messageOf(error)}`, {
      cause: error,
    });
  }
  return db;
}

/** `host:port/database` of a connection URL, without user or password. */
export function describeUrl(url: string): string {
  try {
    const parsed = new URL(url);
    const port = parsed.port || (parsed.protocol.startsWith('redis') ? '6379' : '5432');
    return `${parsed.hostname || 'localhost'}:${port}${parsed.pathname.length > 1 ? parsed.pathname : ''}`;
  } catch {
    return 'an unparsable URL';
  }
}

function messageOf(error: unknown): string {
  const { code, message, name, errno } = (error ?? {}) as {
    code?: string;
    message?: string;
    name?: string;
    errno?: number;
  };
  // Node's connect errors repeat the address; the code says it in one word.
  if (code && /^E[A-Z]+$/.test(code)) return code;
  // PGlite's file system throws plain objects: `{ name: 'ErrnoError', errno: 54 }`.
  if (message === undefined && errno !== undefined) return `${name ?? 'error'} ${errno}`;
  return (message ?? String(error)).split('\n')[0]!;
}
