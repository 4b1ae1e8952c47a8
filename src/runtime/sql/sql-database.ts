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
  transaction<T>(fn: (tx: SqlQueryable) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/** The part of `pg`'s Pool that {@link poolDatabase} uses (kept structural: no import of `pg` here). */
export interface PgPoolLike extends SqlQueryable {
  connect(): Promise<SqlQueryable & { release(error?: Error | boolean): void }>;
  end(): Promise<void>;
}

/**
 * A {@link SqlDatabase} over a `pg` Pool: a transaction holds one pooled connection. A lost
 * connection or a server that cannot be reached becomes `STORE_UNAVAILABLE` (a 503), so callers
 * tell an outage from a bug; `where` names the server in that message.
 */
export function poolDatabase(pool: PgPoolLike, where = 'PostgreSQL'): SqlDatabase {
  const unavailable = (error: unknown): never => {
    if (!isConnectionError(error)) throw error;
    throw new RunstateError('STORE_UNAVAILABLE', `the database at ${where} is unavailable`, { cause: error });
  };
  return {
    query: <Row>(text: string, params?: unknown[]) => pool.query<Row>(text, params).catch(unavailable),
    transaction: (fn) => transaction(pool, fn).catch(unavailable),
    close: () => pool.end(),
  };
}

async function transaction<T>(pool: PgPoolLike, fn: (tx: SqlQueryable) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    try {
      await client.query('ROLLBACK');
    } catch (rollback) {
      // The connection is unusable: the pool must drop it rather than hand it out again.
      broken = rollback as Error;
    }
    throw error;
  } finally {
    client.release(broken ?? false);
  }
}

// Node's socket errors, pg's own, and PostgreSQL's classes 08 (connection) and 57P (shutdown).
const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENOTFOUND',
]);

/** True when `error` says the server is out of reach rather than that the query is wrong. */
export function isConnectionError(error: unknown): boolean {
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
