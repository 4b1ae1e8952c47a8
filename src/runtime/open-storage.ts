import { z } from 'zod';
import { RunstateError } from '../errors.js';
import { DEFAULT_LEASE_MS } from './create-lease-keeper.js';
import { createMemoryCancelBus } from './memory-cancel-bus.js';
import { createMemoryEventBus } from './memory-event-bus.js';
import type { RunLeases } from './run-leases.js';
import {
  createSqlRunStore,
  sqlStoreLimitsSchema,
  type SqlStoreSettings,
} from './sql/create-sql-run-store.js';
import { describeUrl, openSqlDatabase } from './sql/open-sql-database.js';
import { checkOption, checkOptionNames } from './run-limits.js';
import { createMemoryRunStore } from './memory-run-store.js';
import type { CancelBus, EventBus, RunStore } from './storage.js';

/**
 * A URL of a server: its scheme, and parsable, so that a typo stops the start as a bad setting rather
 * than reading as a server that cannot be reached.
 */
function serverUrlSchema(scheme: RegExp, message: string) {
  return z.string().refine((url) => scheme.test(url) && URL.canParse(url), message);
}

/**
 * A PostgreSQL URL: `databaseUrl`, `--database-url` and `DATABASE_URL`. A user with no host
 * (`postgresql://user@/db?host=/var/run/postgresql`, a Unix socket, as pg takes it) is no URL to
 * `URL`: it is checked with a host put in.
 */
export const databaseUrlSchema = z
  .string()
  .refine(
    (url) =>
      /^postgres(ql)?:\/\//.test(url) &&
      (URL.canParse(url) || URL.canParse(url.replace('@/', '@localhost/'))),
    'must be a postgres:// URL',
  );
/**
 * A Redis URL: `redisUrl`, `--redis-url` and `REDIS_URL`. Its user name and password must decode:
 * node-redis decodes them, and a bad escape (`%zz`) would fail the start with no name for the URL.
 */
export const redisUrlSchema = serverUrlSchema(/^rediss?:\/\//, 'must be a redis:// URL').refine(
  decodableCredentials,
  'must have a user name and password percent-encoded (a % only as %XX)',
);

function decodableCredentials(url: string): boolean {
  // A URL that does not parse is told once, by the check before.
  if (!URL.canParse(url)) return true;
  try {
    const { username, password } = new URL(url);
    decodeURIComponent(username);
    decodeURIComponent(password);
    return true;
  } catch {
    return false;
  }
}

/** Where runs are kept. Nothing set: in memory (one process, nothing kept across restarts). */
export interface StorageOptions {
  /** PGlite in this directory: one process, durable on disk (`--data-dir`, `RUNSTATE_DATA_DIR`). */
  dataDir?: string | undefined;
  /** PostgreSQL (`--database-url`, `DATABASE_URL`). */
  databaseUrl?: string | undefined;
  /** Redis, for cancels and live events across instances (`--redis-url`, `REDIS_URL`). Needs `databaseUrl`. */
  redisUrl?: string | undefined;
  /** Prefix of runstate's Redis channels (deployments sharing one Redis). Default `runstate:`. */
  redisPrefix?: string | undefined;
  /**
   * How long an instance's lease lasts without renewal (`RUNSTATE_LEASE_MS`): whole milliseconds,
   * from 100 to 2147483647 (2^31-1, what Node's timers hold). Default 15 s.
   */
  leaseMs?: number | undefined;
  /**
   * Options of the SQL store (retention, session limits, instance id). Its defaults keep history
   * longer than memory: 10,000 finished runs, 30 days, 10,000 sessions, 100 runs per session.
   * In memory, `retention`, `maxSessions` and `maxRunsPerSession` make the memory store.
   */
  store?: SqlStoreSettings | undefined;
}

/** The names `StorageOptions.store` has. */
const STORE_OPTIONS = [
  'instanceId',
  'retention',
  'maxSessions',
  'maxRunsPerSession',
  'eventGroupsInFlight',
  'now',
] as const satisfies readonly (keyof NonNullable<StorageOptions['store']>)[];

/** The names {@link StorageOptions} has. */
const STORAGE_OPTIONS = [
  'dataDir',
  'databaseUrl',
  'redisUrl',
  'redisPrefix',
  'leaseMs',
  'store',
] as const satisfies readonly (keyof StorageOptions)[];

/** What {@link openStorage} opened: hand `store`, `cancelBus` and `eventBus` to `createOrchestrator`. */
export interface Storage {
  /**
   * `undefined` in memory (the orchestrator's default), unless `store` set limits: then a memory
   * store with them, which every orchestrator given this storage shares.
   */
  readonly store: (RunStore & { readonly leases?: RunLeases }) | undefined;
  /**
   * Redis's with a Redis URL; else, with a database (or a memory store with limits), the process's
   * own, shared by every orchestrator given this storage; `undefined` in memory without limits (each
   * orchestrator has its own store and buses).
   */
  readonly cancelBus: CancelBus | undefined;
  readonly eventBus: EventBus | undefined;
  /** One line for a start banner, without secrets: `PostgreSQL at db:5432/runs, Redis at redis:6379`. */
  readonly description: string;
  /** Closes what was opened (after the orchestrator shut down). */
  close(): Promise<void>;
}

/**
 * Opens the storage a configuration names: memory, PGlite on disk, or PostgreSQL with Redis. Checks
 * that every server answers and migrates the database first: an unreachable server rejects
 * `STORE_UNAVAILABLE` with a one-line message naming its host and port, or a Unix socket's directory
 * (never a password).
 *
 * @example
 * ```ts
 * const storage = await openStorage({ databaseUrl: process.env.DATABASE_URL, redisUrl: process.env.REDIS_URL });
 * const orchestrator = createOrchestrator({
 *   store: storage.store,
 *   cancelBus: storage.cancelBus,
 *   eventBus: storage.eventBus,
 * });
 * console.log(`runs in ${storage.description}`);
 * // ... at the end: await orchestrator.shutdown(); await storage.close();
 * ```
 */
export async function openStorage(options: StorageOptions = {}): Promise<Storage> {
  checkOptionNames(options, STORAGE_OPTIONS, 'openStorage');
  const { dataDir, databaseUrl, redisUrl } = options;
  if (dataDir !== undefined && typeof dataDir !== 'string')
    throw new RunstateError('INVALID_INPUT', 'dataDir must be the path of a directory');
  if (options.leaseMs !== undefined) checkLeaseMs(options.leaseMs, 'leaseMs');
  // (Empty counts as unset, as in the environment.)
  if (databaseUrl) checkOption(databaseUrlSchema, databaseUrl, 'databaseUrl');
  if (redisUrl) checkOption(redisUrlSchema, redisUrl, 'redisUrl');
  if (dataDir && databaseUrl)
    throw new RunstateError('INVALID_INPUT', 'set a data directory or a database URL, not both');
  if (redisUrl && !databaseUrl)
    throw new RunstateError(
      'INVALID_INPUT',
      'a Redis URL needs a database URL: instances share runs through PostgreSQL, and signal through Redis',
    );
  // Its limits are checked before anything is opened: a wrong one leaves nothing to close.
  checkOptionNames(options.store ?? {}, STORE_OPTIONS, "openStorage's store");
  checkOption(sqlStoreLimitsSchema, options.store ?? {}, 'store');
  if (!dataDir && !databaseUrl) {
    const { retention, maxSessions, maxRunsPerSession, now } = options.store ?? {};
    const limited = retention !== undefined || maxSessions !== undefined || maxRunsPerSession !== undefined;
    // With limits, the memory store the orchestrator would have made, with them, and the buses that
    // go with a store every orchestrator given this storage shares (as a database's, without Redis).
    return {
      store: limited ? createMemoryRunStore({ retention, maxSessions, maxRunsPerSession, now }) : undefined,
      cancelBus: limited ? createMemoryCancelBus() : undefined,
      eventBus: limited ? createMemoryEventBus() : undefined,
      description: 'memory',
      close: () => Promise.resolve(),
    };
  }
  const db = await openSqlDatabase(dataDir ? { dataDir } : { databaseUrl: databaseUrl! }, {
    idleInTransactionMs: options.leaseMs ?? DEFAULT_LEASE_MS,
  });
  const store = createSqlRunStore({ ...options.store, db, leaseMs: options.leaseMs });
  // Without Redis, the buses are this process's, shared by every orchestrator given this storage: a
  // cancel asked of one reaches a run of another at once, not at the owner's next lease renewal.
  let cancelBus: CancelBus | undefined = redisUrl ? undefined : createMemoryCancelBus();
  let eventBus: EventBus | undefined = redisUrl ? undefined : createMemoryEventBus();
  try {
    if (redisUrl) {
      // Loaded only here: the default configurations never load node-redis.
      const { createRedisCancelBus, createRedisEventBus } = await import('./redis/create-redis-buses.js');
      const bus = { url: redisUrl, prefix: options.redisPrefix };
      cancelBus = await createRedisCancelBus(bus);
      eventBus = await createRedisEventBus(bus);
    }
  } catch (error) {
    await cancelBus?.close();
    await store.close();
    throw error;
  }
  const where = dataDir ? `PGlite in ${dataDir}` : `PostgreSQL at ${describeUrl(databaseUrl!)}`;
  return {
    store,
    cancelBus,
    eventBus,
    description: redisUrl ? `${where}, Redis at ${describeUrl(redisUrl)}` : where,
    async close() {
      await Promise.all([cancelBus?.close(), eventBus?.close()]);
      await store.close();
    },
  };
}

/**
 * The storage options of the environment: `RUNSTATE_DATA_DIR`, `DATABASE_URL`, `REDIS_URL`,
 * `RUNSTATE_REDIS_PREFIX`, `RUNSTATE_LEASE_MS` (empty values count as unset).
 */
export function storageOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): StorageOptions {
  const leaseText = env.RUNSTATE_LEASE_MS || undefined;
  const leaseMs = leaseText === undefined ? undefined : Number(leaseText);
  if (leaseMs !== undefined) checkLeaseMs(leaseMs, 'RUNSTATE_LEASE_MS', leaseText);
  return {
    dataDir: env.RUNSTATE_DATA_DIR || undefined,
    databaseUrl: env.DATABASE_URL || undefined,
    redisUrl: env.REDIS_URL || undefined,
    redisPrefix: env.RUNSTATE_REDIS_PREFIX || undefined,
    leaseMs,
  };
}

/**
 * The shortest lease: it is renewed every third of it, and a renewal is a database round trip; a
 * lease of a few milliseconds lapses before it is renewed, and every run would end `RUN_LOST`.
 */
const MIN_LEASE_MS = 100;
/**
 * The longest lease (about 24.8 days): the lease keeper's lapse timer is the whole lease, and
 * PostgreSQL's `idle_in_transaction_session_timeout` takes it too. Node fires a timer longer than
 * 2^31-1 ms after 1 ms: the renewals would then run back to back, hundreds of commits a second.
 */
const MAX_LEASE_MS = 2 ** 31 - 1;

function checkLeaseMs(leaseMs: number, name: string, text: string = String(leaseMs)): void {
  if (Number.isSafeInteger(leaseMs) && leaseMs >= MIN_LEASE_MS && leaseMs <= MAX_LEASE_MS) return;
  throw new RunstateError(
    'INVALID_INPUT',
    `${name} must be a whole number of ms, from ${MIN_LEASE_MS} to ${MAX_LEASE_MS}, got '${text}'`,
  );
}
