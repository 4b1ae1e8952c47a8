import { constants, statSync } from 'node:fs';
import { access, readdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { PoolClient } from 'pg';
import { RunstateError } from '../../errors.js';
import { lockDataDir } from './data-dir-lock.js';
import { migrate } from './migrate.js';
import {
  isConnectionError,
  poolDatabase,
  QUERY_TIMEOUT_MS,
  unavailableAs,
  type PgClientLike,
  type SqlDatabase,
} from './sql-database.js';

/** Where runs are kept: a PGlite data directory, or a PostgreSQL server. */
export type SqlLocation = { dataDir: string } | { databaseUrl: string };

/** Options of {@link openSqlDatabase}. */
export interface OpenSqlDatabaseOptions {
  /**
   * PostgreSQL ends a session of this pool that stays idle inside a transaction for longer (its
   * `idle_in_transaction_session_timeout`): an instance frozen mid-transaction (a paused VM or
   * container, SIGSTOP) would otherwise hold its runs' rows locked for as long as it is frozen, and
   * no other instance could end them. The run store passes its lease: past it, the runs are lost
   * anyway. Default: none (PostgreSQL's setting). Not used by PGlite (one process, one connection).
   */
  idleInTransactionMs?: number | undefined;
  /**
   * A query unanswered for this long fails `STORE_UNAVAILABLE` and its connection is dropped (see
   * `poolDatabase`); reaching the server for a new connection gets 5 s, or this if shorter.
   * Default {@link QUERY_TIMEOUT_MS}, 10 s. Not used by PGlite.
   */
  queryTimeoutMs?: number | undefined;
}

/**
 * Opens and migrates the database of a {@link SqlLocation}. `pg` and PGlite are loaded only here, so
 * the in-memory default never loads them. A server that cannot be reached throws
 * `STORE_UNAVAILABLE` with a one-line message naming its host and port, never its password.
 */
export async function openSqlDatabase(
  location: SqlLocation,
  options: OpenSqlDatabaseOptions = {},
): Promise<SqlDatabase> {
  const db =
    'dataDir' in location
      ? await openPglite(location.dataDir)
      : await openPool(location.databaseUrl, options);
  try {
    await migrate(
      db,
      'dataDir' in location
        ? `the data directory ${location.dataDir}`
        : `PostgreSQL at ${describeUrl(location.databaseUrl)}`,
    );
    // The directory's lock is this process's: every instance that held a lease in it is gone (a
    // killed server's runs need not wait for its lease to run out; the first sweep ends them).
    if ('dataDir' in location) await db.query('DELETE FROM runstate_instances');
  } catch (error) {
    await db.close().catch(() => undefined);
    throw error;
  }
  return db;
}

/**
 * The names a database directory holds (PostgreSQL's files, this lock's) or an empty one may
 * (a mount point's `lost+found`, hidden files).
 */
const DATABASE_ENTRY =
  /^(PG_VERSION|base|global|pg_[\w.]+|postgresql(\.auto)?\.conf|postmaster\.\w+|runstate\.lock.*|lost\+found|\..*)$/;

/**
 * A file of a directory that holds no database (no `PG_VERSION`) and is not one PGlite began to
 * make (a first start killed half-way), as its name says; `undefined` when there is none. PGlite
 * would make a database cluster of ~25 entries among the user's files (`--data-dir .` or `~`
 * mistyped), where PostgreSQL's `initdb` refuses a directory that is not empty.
 */
async function foreignEntry(dataDir: string): Promise<string | undefined> {
  const entries = await readdir(dataDir).catch(() => [] as string[]);
  if (entries.includes('PG_VERSION')) return undefined;
  return entries.find((name) => !DATABASE_ENTRY.test(name));
}

/** How often, at most, a PGlite data directory is looked at (by a query), to see that it is still there. */
const DATA_DIR_CHECK_MS = 2_000;

async function openPglite(dataDir: string): Promise<SqlDatabase> {
  // PGlite makes a directory that does not exist; anything else in its place fails inside its
  // WebAssembly file system, with a bare errno and after seconds.
  const found = await stat(dataDir).catch(() => undefined);
  if (found && !found.isDirectory()) {
    throw new RunstateError('INVALID_INPUT', `the data directory ${dataDir} is not a directory`);
  }
  const unlock = await lockDataDir(dataDir);
  const foreign = found && (await foreignEntry(dataDir));
  if (foreign) {
    await unlock();
    throw new RunstateError(
      'STORE_UNAVAILABLE',
      `the data directory ${dataDir} is not a PGlite directory: it holds ${foreign} and no database (PG_VERSION); give a new or empty directory`,
    );
  }
  const { PGlite } = await import('@electric-sql/pglite');
  let db: InstanceType<typeof PGlite>;
  try {
    db = await PGlite.create({ dataDir });
  } catch (error) {
    await unlock();
    throw new RunstateError(
      'STORE_UNAVAILABLE',
      `cannot open the data directory ${dataDir}: ${await whyNotOpened(dataDir, error)}`,
      { cause: error },
    );
  }
  // A directory removed (or replaced) under the process: PostgreSQL would go on writing into files
  // that are gone, every run answered as stored and lost. Looked at by a query at most every 2 s;
  // from then on an outage (new runs refused 503), for good: what it held is gone, and a restart
  // starts anew. (Resolved now: an embedding app that changes its working directory has not moved
  // the data.)
  const watched = resolve(dataDir);
  const { ino } = await stat(watched);
  let lookedAt = Date.now();
  let removed = false;
  const stillThere = (): boolean => {
    if (removed || Date.now() - lookedAt < DATA_DIR_CHECK_MS) return !removed;
    lookedAt = Date.now();
    try {
      removed = statSync(watched).ino !== ino;
    } catch (error) {
      removed = (error as NodeJS.ErrnoException).code === 'ENOENT';
    }
    return !removed;
  };
  // As a pool after `end()` (see `poolDatabase`): PGlite's own error says nothing of what is closed.
  let closed = false;
  const open = (): void => {
    if (closed) throw new RunstateError('INTERNAL', 'the run store is closed');
    if (!stillThere()) {
      throw new RunstateError(
        'STORE_UNAVAILABLE',
        `the data directory ${dataDir} was removed or replaced while in use (restart runstate)`,
      );
    }
  };
  // A full disk or a directory gone under the process is an outage, as a server out of reach is.
  const unavailable = unavailableAs(`the data directory ${dataDir}`);
  return {
    async query<Row>(text: string, params?: unknown[]) {
      open();
      return db.query<Row>(text, params).catch(unavailable);
    },
    // One connection, in this process: no network to go silent, so no time limit to pass on.
    transaction: async (fn) => (open(), db.transaction(fn).catch(unavailable)),
    autovacuum: false,
    async close() {
      closed = true;
      await db.close();
      await unlock();
    },
  };
}

/**
 * What stopped PGlite opening `dataDir`, in words an operator can act on. PGlite reads a directory
 * it cannot use (files of another user, a damaged control file, missing WAL) inside WebAssembly,
 * and says only `Aborted(). Build with -sASSERTIONS for more info.` (or that it failed to initialize).
 */
async function whyNotOpened(dataDir: string, error: unknown): Promise<string> {
  // A directory first used by another user (under sudo): its files are theirs, and unreadable here.
  const entries = await readdir(dataDir, { recursive: true }).catch(() => []);
  for (const entry of entries) {
    const path = join(dataDir, entry);
    const denied = await access(path, constants.R_OK | constants.W_OK).then(
      () => false,
      (failure: NodeJS.ErrnoException) => failure.code === 'EACCES' || failure.code === 'EPERM',
    );
    if (denied) return `this user cannot read and write ${path} (a directory first used by another user?)`;
  }
  const message = messageOf(error);
  if (!/^Aborted\(|failed to initialize/.test(message)) return message;
  return `its files are damaged, or are not a PGlite data directory (PGlite stopped reading them: ${message.replace(/\s*Build with -sASSERTIONS.*$/, '')})`;
}

/** How long reaching PostgreSQL for a new connection may take. */
const CONNECT_TIMEOUT_MS = 5_000;

async function openPool(
  databaseUrl: string,
  { idleInTransactionMs, queryTimeoutMs }: OpenSqlDatabaseOptions,
): Promise<SqlDatabase> {
  const { default: pg } = await import('pg');
  const where = describeUrl(databaseUrl);
  // The session's setting is made on each new connection before the pool hands it out (`verify`).
  // A server that refuses it (a pooler in transaction mode) keeps its own, and the connection serves.
  const setting =
    idleInTransactionMs === undefined
      ? undefined
      : `SET idle_in_transaction_session_timeout = ${Math.ceil(idleInTransactionMs)}`;
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    // A connection is opened for a query: it gets no longer than the query would.
    connectionTimeoutMillis: Math.min(CONNECT_TIMEOUT_MS, queryTimeoutMs ?? QUERY_TIMEOUT_MS),
    ...(setting && {
      verify: (client: PoolClient, done: (error?: Error) => void) => {
        // The pool takes its own 'error' listener off a connection before it comes here: one that
        // breaks during this query would throw from an 'error' event with none, and crash the
        // process. Held until the query answers (pg emits 'error' before it fails the query).
        let broken: Error | undefined;
        const onError = (error: Error): void => {
          broken = error;
        };
        client.on('error', onError);
        // Timed as every query (the pool's connection timeout ends before this one starts).
        const answered: Promise<unknown> = (client as PgClientLike).query({
          text: setting,
          query_timeout: queryTimeoutMs ?? QUERY_TIMEOUT_MS,
        });
        answered.then(
          () => finish(),
          (error: unknown) => {
            if (isConnectionError(error)) broken ??= error as Error;
            finish();
          },
        );
        function finish(): void {
          client.off('error', onError);
          // A broken connection is dropped, and the caller told the server is out of reach.
          done(broken);
        }
      },
    }),
  });
  // An idle connection that breaks (server restarted) is reported here; unhandled, it would crash
  // the process. The pool drops it and the next query opens a new one.
  pool.on('error', () => undefined);
  const db = poolDatabase(pool, where, { queryTimeoutMs });
  try {
    await pool.query('SELECT 1');
  } catch (error) {
    await pool.end().catch(() => undefined);
    // The server answered with an error of its own (a database that does not exist, a role or a
    // password it refuses): reached, and refused.
    const refused = typeof (error as { severity?: unknown }).severity === 'string';
    const message = refused
      ? `PostgreSQL at ${where} refused the connection: ${messageOf(error)}`
      : `cannot reach PostgreSQL at ${where}: ${messageOf(error)}`;
    throw new RunstateError('STORE_UNAVAILABLE', message, { cause: error });
  }
  return db;
}

/**
 * Where a connection URL leads, without user or password: `host:port/database`, or for PostgreSQL
 * over a Unix socket `/var/run/postgresql (socket), database runs`.
 */
export function describeUrl(url: string): string {
  const read = parseServerUrl(url);
  if (!read) return 'an unparsable URL';
  const { parsed, hostname } = read;
  const postgres = !parsed.protocol.startsWith('redis');
  // pg takes `?host=` and `?port=` over the URL's, and a host that is a path as a socket's directory
  // (`postgresql://user@/db?host=/var/run/postgresql`, `postgresql://%2Ftmp/db`).
  const host = (postgres && parsed.searchParams.get('host')) || decodeURIComponent(hostname);
  const givenPort = (postgres && parsed.searchParams.get('port')) || parsed.port;
  if (postgres && host.startsWith('/')) {
    const database = decodeURIComponent(parsed.pathname.slice(1));
    const port = givenPort ? `, port ${givenPort}` : '';
    return `${host} (socket${port})${database ? `, database ${database}` : ''}`;
  }
  const port = givenPort || (postgres ? '5432' : '6379');
  return `${host || 'localhost'}:${port}${parsed.pathname.length > 1 ? parsed.pathname : ''}`;
}

/**
 * A URL as `URL` reads it, and its host; one with a user and no host (a Unix socket's, as pg takes
 * it) is no URL to `URL`, and is read with an empty host.
 */
function parseServerUrl(url: string): { parsed: URL; hostname: string } | undefined {
  try {
    const parsed = new URL(url);
    return { parsed, hostname: parsed.hostname };
  } catch {
    try {
      // (`URL` keeps a host once it has credentials: the placeholder is not the host.)
      return { parsed: new URL(url.replace('@/', '@placeholder/')), hostname: '' };
    } catch {
      return undefined;
    }
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
