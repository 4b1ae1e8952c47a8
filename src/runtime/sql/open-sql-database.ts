import { mkdir, readFile, realpath, rm, stat, writeFile } from 'node:fs/promises';
import type { PoolClient } from 'pg';
import { dirname, join } from 'node:path';
import { RunstateError } from '../../errors.js';
import { migrate } from './migrate.js';
import { poolDatabase, unavailableAs, type SqlDatabase } from './sql-database.js';

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
      : await openPool(location.databaseUrl, options.idleInTransactionMs);
  try {
    await migrate(db);
    // The directory's lock is this process's: every instance that held a lease in it is gone (a
    // killed server's runs need not wait for its lease to run out; the first sweep ends them).
    if ('dataDir' in location) await db.query('DELETE FROM runstate_instances');
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
  const unlock = await lockDataDir(dataDir);
  const { PGlite } = await import('@electric-sql/pglite');
  let db: InstanceType<typeof PGlite>;
  try {
    db = await PGlite.create({ dataDir });
  } catch (error) {
    await unlock();
    throw new RunstateError(
      'STORE_UNAVAILABLE',
      `cannot open the data directory ${dataDir}: ${messageOf(error)}`,
      {
        cause: error,
      },
    );
  }
  // As a pool after `end()` (see `poolDatabase`): PGlite's own error says nothing of what is closed.
  let closed = false;
  const open = (): void => {
    if (closed) throw new RunstateError('INTERNAL', 'the run store is closed');
  };
  // A full disk or a directory gone under the process is an outage, as a server out of reach is.
  const unavailable = unavailableAs(`the data directory ${dataDir}`);
  return {
    async query<Row>(text: string, params?: unknown[]) {
      open();
      return db.query<Row>(text, params).catch(unavailable);
    },
    transaction: async (fn) => (open(), db.transaction(fn).catch(unavailable)),
    async close() {
      closed = true;
      await db.close();
      await unlock();
    },
  };
}

/** The file that says which process has a data directory open. */
const LOCK_FILE = 'runstate.lock';

/** The data directories this process has open (by path): a pid alone cannot tell them apart. */
const openHere = new Set<string>();

/**
 * Makes `path` and its missing parents, one level at a time. Node 20's `mkdir({ recursive: true })`
 * loops for ever, busy, under a directory that answers ENOENT to a child made in it (`/proc`); this
 * throws that ENOENT.
 */
async function makeDirectory(path: string): Promise<void> {
  try {
    await mkdir(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') {
      if ((await stat(path)).isDirectory()) return;
      throw error;
    }
    const parent = dirname(path);
    if (code !== 'ENOENT' || parent === path) throw error;
    await makeDirectory(parent);
    // Once: a directory that answers ENOENT again fails here (made meanwhile by another process: fine).
    await mkdir(path).catch((again: NodeJS.ErrnoException) => {
      if (again.code !== 'EEXIST') throw again;
    });
  }
}

/**
 * Takes a data directory for this process, or throws `STORE_UNAVAILABLE` naming the process that has
 * it: PGlite serves one process, and two writing the same files corrupt them (its own
 * `postmaster.pid` names no real process, so it stops nobody). A lock whose process is gone (killed,
 * crashed) is taken over, also when a new process has the old one's pid, as a server restarted in
 * a container has (often pid 1): the lock names its process by pid and, on Linux, by the boot and
 * the moment the process started. Resolves with the function that lets the directory go.
 */
async function lockDataDir(dataDir: string): Promise<() => Promise<void>> {
  await makeDirectory(dataDir).catch((error: NodeJS.ErrnoException) => {
    // A file on the way (ENOTDIR, EEXIST), no permission (EACCES), a read-only disk (EROFS): the
    // configuration's fault, named as such rather than as a bare errno with its stack.
    throw new RunstateError(
      'INVALID_INPUT',
      `the data directory ${dataDir} cannot be made: ${error.code ?? error.message}`,
      {
        cause: error,
      },
    );
  });
  const lock = join(dataDir, LOCK_FILE);
  // The directory itself, whatever path names it (a symlink, `/proc/self/root/...`).
  const key = await realpath(dataDir);
  const own = await processIdentity(process.pid);
  const unlock = async () => {
    openHere.delete(key);
    await rm(lock, { force: true });
  };
  for (;;) {
    if (!openHere.has(key)) {
      try {
        await writeFile(lock, `${process.pid}${own ? ` ${own.started}` : ''}\n`, { flag: 'wx' });
        openHere.add(key);
        return unlock;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
    }
    const [pid = '', started] = (await readFile(lock, 'utf8').catch(() => '')).trim().split(' ');
    const holder = Number(pid);
    // A lock naming this process's pid is this process's own (the directory open here under another
    // path) unless it says another process started then (a server restarted with its old pid); where
    // nothing tells them apart, it is taken for this process's own.
    const ours = holder === process.pid && (own === undefined || started === own.started);
    const held = holder === process.pid ? ours : await isRunning(holder, started);
    if (openHere.has(key) || held) {
      throw new RunstateError(
        'STORE_UNAVAILABLE',
        `the data directory ${dataDir} is in use by process ${holder}: PGlite serves one process ` +
          `(share runs between processes through PostgreSQL; if no such process runs runstate, remove ${lock})`,
      );
    }
    // Left by a process that is gone: taken over (a rival doing the same at once loses at `wx`).
    await rm(lock, { force: true });
  }
}

/**
 * Whether `pid` runs and is the process that wrote `started` (when the lock has it and the system
 * can tell: Linux's /proc). A zombie does not run.
 */
async function isRunning(pid: number, started: string | undefined): Promise<boolean> {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: it runs, as another user.
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const identity = await processIdentity(pid);
  if (!identity) return true;
  return !identity.zombie && (started === undefined || started === identity.started);
}

/**
 * On Linux, what tells a process from a later one given its pid: the boot's id and the process's
 * start time in clock ticks since the boot (`/proc/<pid>/stat`, field 22); whether it is a zombie
 * (field 3). `undefined` elsewhere.
 */
async function processIdentity(pid: number): Promise<{ started: string; zombie: boolean } | undefined> {
  try {
    const [stat, boot] = await Promise.all([
      readFile(`/proc/${pid}/stat`, 'utf8'),
      readFile('/proc/sys/kernel/random/boot_id', 'utf8'),
    ]);
    // After the command's name (in parentheses, which may hold spaces): field 3 onwards.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = fields[19];
    if (ticks === undefined) return undefined;
    return { started: `${boot.trim()}/${ticks}`, zombie: fields[0] === 'Z' };
  } catch {
    return undefined;
  }
}

async function openPool(databaseUrl: string, idleInTransactionMs: number | undefined): Promise<SqlDatabase> {
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
    connectionTimeoutMillis: 5_000,
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
        client.query(setting).then(
          () => finish(),
          () => finish(),
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
  const db = poolDatabase(pool, where);
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
