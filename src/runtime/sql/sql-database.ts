import { RunstateError } from '../../errors.js';

/** What runstate's SQL needs from a database: parameterised queries and transactions. */
export interface SqlQueryable {
  query<Row = Record<string, unknown>>(text: string, params?: unknown[]): Promise<{ rows: Row[] }>;
}

/**
 * A PostgreSQL database, in a server (`pg`) or in WebAssembly (PGlite). PGlite satisfies it as it
 * is; a `pg` Pool through {@link poolDatabase}.
 */
export interface SqlDatabase extends SqlQueryable {
  /** Runs `fn` in one transaction on one connection; rolls back when it throws. */
  transaction<T>(fn: (tx: SqlQueryable) => Promise<T>, options?: TransactionOptions): Promise<T>;
  /**
   * Queries that go ahead of those waiting for a connection (a lease renewal, which must not lapse
   * behind a thousand runs' writes). Absent: `query` (PGlite has one connection and no queue).
   */
  readonly urgent?: SqlQueryable | undefined;
  /**
   * `false` for a database that runs no autovacuum (PGlite: single-user PostgreSQL in this
   * process): the store vacuums it after its deletes, or the space of the runs it forgets is never
   * used again and its files grow for good. Absent: it has autovacuum (a server).
   */
  readonly autovacuum?: false | undefined;
  close(): Promise<void>;
}

/** Options of {@link SqlDatabase.transaction}. */
export interface TransactionOptions {
  /**
   * Its queries may take as long as they take (see {@link PoolDatabaseOptions.queryTimeoutMs}): a
   * migration waits for another instance's under a lock, and may rewrite a large table.
   */
  unbounded?: boolean | undefined;
}

/** A query as `pg` takes it with options of its own. */
interface PgQueryConfig {
  text: string;
  values?: unknown[] | undefined;
  /** pg fails the query after this many ms without an answer (its connection is then dropped). */
  query_timeout?: number | undefined;
}

/** The part of `pg`'s Pool that {@link poolDatabase} uses (kept structural: no import of `pg` here). */
export interface PgPoolLike extends SqlQueryable {
  query<Row = Record<string, unknown>>(
    query: string | PgQueryConfig,
    params?: unknown[],
  ): Promise<{ rows: Row[] }>;
  connect(): Promise<PgClientLike>;
  end(): Promise<void>;
  /** pg's options: `max` is the most connections it opens (default 10). */
  readonly options?: { max?: number | undefined } | undefined;
}

/** A connection of a {@link PgPoolLike}, checked out. */
export interface PgClientLike extends SqlQueryable {
  query<Row = Record<string, unknown>>(
    query: string | PgQueryConfig,
    params?: unknown[],
  ): Promise<{ rows: Row[] }>;
  release(error?: Error | boolean): void;
  on?(event: 'error', listener: (error: Error) => void): unknown;
  off?(event: 'error', listener: (error: Error) => void): unknown;
}

/** How long a query may go unanswered before {@link poolDatabase} gives up on it and its connection. */
export const QUERY_TIMEOUT_MS = 10_000;

/** Options of {@link poolDatabase}. */
export interface PoolDatabaseOptions {
  /**
   * A query unanswered for this long fails `STORE_UNAVAILABLE`, and its connection is dropped.
   * Default {@link QUERY_TIMEOUT_MS}.
   */
  queryTimeoutMs?: number | undefined;
}

/**
 * A {@link SqlDatabase} over a `pg` Pool: a transaction holds one pooled connection. A lost
 * connection or a server that cannot be reached becomes `STORE_UNAVAILABLE` (a 503), so callers
 * tell an outage from a bug; `where` names the server in that message.
 *
 * Queries wait for a connection in a queue of this database, not in the pool's: the pool's
 * `connectionTimeoutMillis` then times only reaching the server, never a wait behind this
 * instance's own queries (a thousand runs starting at once are a long queue, not an outage). A
 * connection error fails the queries queued at that moment too: in an outage, callers learn it at
 * once and try again later.
 *
 * A query unanswered for `queryTimeoutMs` fails the same way, and its connection is dropped: on a
 * network path gone silent (packets dropped, not refused) TCP waits to read for as long as the
 * silence lasts, and the query would hold its caller, the queries behind it and a shutdown as long.
 * A transaction told `unbounded` (a migration) has no such limit.
 */
export function poolDatabase(
  pool: PgPoolLike,
  where = 'PostgreSQL',
  { queryTimeoutMs = QUERY_TIMEOUT_MS }: PoolDatabaseOptions = {},
): SqlDatabase {
  const unavailable = unavailableAs(`the database at ${where}`);
  const slots = createSlots(pool.options?.max ?? 10);
  // pg's own error for a pool after `end()` has no code ("Cannot use a pool after calling end").
  let closed = false;
  const whileOpen =
    <T>(task: () => Promise<T>) =>
    (): Promise<T> => {
      if (closed) throw new RunstateError('INTERNAL', 'the run store is closed');
      return task();
    };
  const timed =
    <Row>(text: string, params?: unknown[]) =>
    () =>
      pool.query<Row>({ text, values: params, query_timeout: queryTimeoutMs });
  return {
    query: <Row>(text: string, params?: unknown[]) =>
      slots.run(whileOpen(timed<Row>(text, params))).catch(unavailable),
    transaction: (fn, options) =>
      slots
        .run(whileOpen(() => transaction(pool, fn, options?.unbounded ? undefined : queryTimeoutMs)))
        .catch(unavailable),
    urgent: {
      query: <Row>(text: string, params?: unknown[]) =>
        slots.run(whileOpen(timed<Row>(text, params)), true).catch(unavailable),
    },
    close: () => {
      closed = true;
      return pool.end();
    },
  };
}

/** At most `size` tasks at once; the others wait in order (urgent ones first). */
function createSlots(size: number) {
  let active = 0;
  const waiting: { start(): void; fail(error: unknown): void }[] = [];

  return {
    async run<T>(task: () => Promise<T>, urgent = false): Promise<T> {
      if (active < size) active++;
      else {
        // A slot is handed over by the task that frees it (`active` unchanged), never taken twice.
        await new Promise<void>((start, fail) => {
          const entry = { start, fail };
          if (urgent) waiting.unshift(entry);
          else waiting.push(entry);
        });
      }
      try {
        return await task();
      } catch (error) {
        // The server is out of reach: what waits would meet the same, one timeout after another.
        if (isConnectionError(error)) for (const other of waiting.splice(0)) other.fail(error);
        throw error;
      } finally {
        const next = waiting.shift();
        if (next) next.start();
        else active--;
      }
    },
  };
}

async function transaction<T>(
  pool: PgPoolLike,
  fn: (tx: SqlQueryable) => Promise<T>,
  timeoutMs: number | undefined,
): Promise<T> {
  const client = await pool.connect();
  const tx: SqlQueryable = {
    query: (text, params) => client.query({ text, values: params, query_timeout: timeoutMs }),
  };
  let broken: Error | undefined;
  // A checked-out client has no listener of its own: a connection that breaks between two queries
  // of `fn` (the server restarted, or ended a session idle in its transaction) would throw from an
  // 'error' event with none, and crash the process. Its next query fails, and so does `fn`.
  const onError = (error: Error): void => {
    broken = error;
  };
  client.on?.('error', onError);
  try {
    await tx.query('BEGIN');
    const result = await fn(tx);
    await tx.query('COMMIT');
    return result;
  } catch (error) {
    // A query that went unanswered still holds the connection: a ROLLBACK would wait behind it.
    if (isReadTimeout(error)) broken = error as Error;
    else {
      try {
        await tx.query('ROLLBACK');
      } catch (rollback) {
        // The connection is unusable: the pool must drop it rather than hand it out again.
        broken = rollback as Error;
      }
    }
    throw error;
  } finally {
    client.off?.('error', onError);
    client.release(broken ?? false);
  }
}

// Node's socket errors, pg's own, PostgreSQL's classes 08 (connection) and 57P (shutdown), and
// 25P03: the server ended a session left idle in its transaction (see `openSqlDatabase`).
const CONNECTION_CODES = new Set([
  '25P03',
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENOTFOUND',
]);

/**
 * Rethrows `error` as `STORE_UNAVAILABLE` (a 503; the store writer tries the write again) when it
 * says the database cannot serve now ({@link isUnavailableError}), as it is otherwise. `what` names
 * the database in the message.
 */
export function unavailableAs(what: string): (error: unknown) => never {
  return (error) => {
    if (!isUnavailableError(error)) throw error;
    throw new RunstateError('STORE_UNAVAILABLE', `${what} is unavailable`, { cause: error });
  };
}

/**
 * PostgreSQL's classes of a database that cannot serve now, though the query is right: 53
 * (insufficient resources: a full disk, no memory, too many connections), 57 (operator
 * intervention: shutting down, a database dropped, a query cancelled), 58 (system error: I/O, a
 * file gone), and 3D000 (the database does not exist, dropped under the server); 40001 and 40P01
 * (serialization failure, deadlock) are worth the same: the transaction may succeed when tried again.
 */
const UNAVAILABLE_CLASSES = /^(53|57|58)/;
const UNAVAILABLE_CODES = new Set(['3D000', '40001', '40P01']);

/**
 * True when `error` says the database cannot serve the query now (out of reach, or out of a
 * resource an operator can give back) rather than that the query is wrong: such a write is tried
 * again, not dropped.
 */
export function isUnavailableError(error: unknown): boolean {
  if (isConnectionError(error)) return true;
  const { code } = (error ?? {}) as { code?: unknown };
  return typeof code === 'string' && (UNAVAILABLE_CLASSES.test(code) || UNAVAILABLE_CODES.has(code));
}

/** pg's error for a query unanswered within its `query_timeout`. */
function isReadTimeout(error: unknown): boolean {
  return (error as { message?: unknown } | null)?.message === 'Query read timeout';
}

/** True when `error` says the server is out of reach rather than that the query is wrong. */
export function isConnectionError(error: unknown): boolean {
  if (isReadTimeout(error)) return true;
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  if (
    typeof code === 'string' &&
    (CONNECTION_CODES.has(code) || code.startsWith('08') || code.startsWith('57P'))
  )
    return true;
  return (
    typeof message === 'string' &&
    /Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error/i.test(
      message,
    )
  );
}
