import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { RunstateError } from '../../errors.js';
import { DEFAULT_LEASE_MS } from '../create-lease-keeper.js';
import { sessionName } from '../detached-slice.js';
import type { RunEvent, RunOutput, RunRecord } from '../run-events.js';
import type { OrphanOutcome, RunLeases } from '../run-leases.js';
import type { CancelReason, RunStatus } from '../../../machines/run-types.js';
import { closeOpen } from '../../../machines/tool-round.js';
import { toolsAsStored } from '../stored-tools.js';
import { closingOfEvents, extraDataOfEvents } from '../reasoning-phases.js';
import {
  sessionOfAnother,
  type ParkedRun,
  type RunFilter,
  type RunStore,
  type SessionFilter,
  type SessionRecord,
} from '../storage.js';
import { coalesce } from './coalesce.js';
import { createEventGroups } from './event-groups.js';
import type { SqlDatabase, SqlQueryable } from './sql-database.js';
import { storedJson } from './stored-json.js';
import { z } from 'zod';
import { checkOption, count, duration } from '../run-limits.js';

/** The limits a SQL store checks, as the memory store does its own: out of range, every write would fail. */
export const sqlStoreLimitsSchema = z.looseObject({
  retention: z
    .strictObject({ maxFinishedRuns: count(0).optional(), maxAgeMs: duration.optional() })
    .optional(),
  maxSessions: count(1).optional(),
  maxRunsPerSession: count(1).optional(),
  eventGroupsInFlight: count(1).optional(),
});

/** A limit as a query parameter: PostgreSQL's bigint holds no `Infinity` ("no limit"). */
const sqlLimit = (n: number): number => Math.min(n, Number.MAX_SAFE_INTEGER);

/**
 * The defaults of a SQL store's limits. A database is chosen to keep history, so it keeps more, and
 * for longer, than memory does (30 days, 10,000 finished runs, 10,000 sessions); retention still
 * bounds what is kept, and with it the lists (`GET /sessions`, a run list), which read every match.
 * A session's runs are the history sent to the model with each new run, read whole to build it.
 */
export const SQL_STORE_LIMITS = {
  maxFinishedRuns: 10_000,
  maxAgeMs: 30 * 24 * 60 * 60 * 1000,
  maxSessions: 10_000,
  maxRunsPerSession: 100,
} as const;

/**
 * What a SQL store keeps and who owns its runs: `openStorage`'s `store` option (retention, session
 * limits, the instance id).
 */
export interface SqlStoreSettings {
  /** The instance that owns the runs this store creates (its lease covers them). Default: host, pid and a random part. */
  instanceId?: string | undefined;
  retention?:
    | {
        /** Finished runs kept at most; the oldest go first. Default 10,000. */
        maxFinishedRuns?: number | undefined;
        /** Finished runs older than this are forgotten. Default 30 days. */
        maxAgeMs?: number | undefined;
      }
    | undefined;
  /** Most sessions kept (least recently used go first; never one with an active run). Default 10,000. */
  maxSessions?: number | undefined;
  /** Runs kept per session; past it, the session's oldest finished run goes. Default 100. */
  maxRunsPerSession?: number | undefined;
  /**
   * Event groups written at once at most (see `createEventGroups`): each takes the events of every
   * run handed over meanwhile, as one INSERT, and holds one pooled connection. Default 2.
   */
  eventGroupsInFlight?: number | undefined;
  /** The clock of retention and leases (milliseconds since the epoch). Default `Date.now`. */
  now?: (() => number) | undefined;
}

/** Options of {@link createSqlRunStore}: a database, the lease, and the store's settings. */
export interface SqlRunStoreOptions extends SqlStoreSettings {
  /** A migrated database (see `openSqlDatabase`). The store closes it on `close()`. */
  db: SqlDatabase;
  /** How long an instance's lease lasts without renewal. Default 15 s. */
  leaseMs?: number | undefined;
}

/**
 * An active run's owner is gone: its lease ran out, or its row is gone (released at shutdown, or
 * never taken). A run with no owner (`r.owner` NULL) is nobody's to finalise. `i` is the LEFT JOIN
 * of runstate_instances on the owner.
 */
const ORPHANED = '(r.owner IS NOT NULL AND (i.instance_id IS NULL OR i.lease_until < now()))';

/** The key order of a run record on the wire (jsonb sorts keys its own way); other keys follow. */
const RECORD_KEYS: readonly string[] = [
  'run_id',
  'agent_id',
  'agent_name',
  'session_id',
  'user_id',
  'run_input',
  'input',
  'model',
  'model_provider',
  'created_at',
  'status',
  'content',
  'reasoning_content',
  'reasoning_steps',
  'extra_data',
  'finish_reason',
  'metrics',
  'error',
  'cancel_reason',
  'tools',
  'messages',
  'finished_at',
];

/**
 * Whether a value asked for holds a NUL, which PostgreSQL's text cannot: no id the store keeps has
 * one (every write refuses it), so a read that asks for one finds nothing, as in the memory store,
 * rather than failing with the database's encoding error.
 */
function holdsNul(...values: Array<string | undefined>): boolean {
  return values.some((value) => value?.includes('\0'));
}

/**
 * A {@link RunStore} in PostgreSQL: the same SQL on a server (`pg`) and in PGlite. Runs and sessions
 * are rows; a run's events are rows of `runstate_events`, the batches of all runs handed over in one
 * turn written together, with one INSERT (see `createEventGroups`).
 *
 * Retention as in memory, with the defaults of a database ({@link SQL_STORE_LIMITS}: history is
 * kept): a finished run past `maxFinishedRuns`, `maxAgeMs` or `maxRunsPerSession` is deleted with
 * its events when a run finishes, and reads already hide runs past their age; a session whose last
 * run went goes with it.
 */
export function createSqlRunStore(options: SqlRunStoreOptions): RunStore & { readonly leases: RunLeases } {
  const { db, now = Date.now } = options;
  const owner = options.instanceId ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  const leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
  checkOption(sqlStoreLimitsSchema, options, 'options');
  const maxFinishedRuns = options.retention?.maxFinishedRuns ?? SQL_STORE_LIMITS.maxFinishedRuns;
  const maxAgeMs = options.retention?.maxAgeMs ?? SQL_STORE_LIMITS.maxAgeMs;
  const maxSessions = options.maxSessions ?? SQL_STORE_LIMITS.maxSessions;
  const maxRunsPerSession = options.maxRunsPerSession ?? SQL_STORE_LIMITS.maxRunsPerSession;
  // The events of all runs, one INSERT per group: a run's batches still commit in seq order.
  const eventGroups = createEventGroups({ db, maxInFlight: options.eventGroupsInFlight });
  let closed: Promise<void> | undefined;

  /**
   * The runs whose `createRun` failed as an outage, which the database may keep all the same: an
   * INSERT whose answer never came (the network path went silent after it was sent) commits, and so
   * does one whose retention step failed after it. Their callers were told they were not accepted
   * (a 503): once the database answers again, they are deleted (with a session they made and no
   * other run joined), rather than left `pending` under an owner that does not know them.
   */
  const unconfirmed = new Set<string>();
  /**
   * Runs deleted so, until when (`now()` time) they are deleted again: an INSERT sent before the
   * silence may still be on its way (TCP sends again what was not acknowledged, for minutes, even
   * after the connection was dropped here) and commit after the delete.
   */
  const discarded = new Map<string, number>();
  let discarding: ReturnType<typeof setTimeout> | undefined;
  /** When the timer is the short one (a run just refused): a later refusal does not push it back. */
  let discardSoon = false;
  /** The delete under way, and the ids it was sent with. */
  let discardQuery: { runIds: ReadonlySet<string>; done: Promise<unknown> } | undefined;

  function discardIn(ms: number): void {
    clearTimeout(discarding);
    discardSoon = ms === DISCARD_RETRY_MS;
    discarding = closed ? undefined : setTimeout(() => void discardUnconfirmed(), ms).unref();
  }

  function discardLater(runId: string): void {
    unconfirmed.add(runId);
    discarded.delete(runId);
    // A delete under way schedules the next one when it ends.
    if (!discardQuery && !discardSoon) discardIn(DISCARD_RETRY_MS);
  }

  /**
   * Before a run's record is written: its id is no longer deleted as not accepted (a caller's own
   * ids may come again), once a delete already sent with it is done (it would take the new run).
   */
  function acceptedAgain(runId: string): Promise<unknown> | undefined {
    unconfirmed.delete(runId);
    discarded.delete(runId);
    return discardQuery?.runIds.has(runId) ? discardQuery.done : undefined;
  }

  async function discardUnconfirmed(): Promise<void> {
    discardSoon = false;
    const at = now();
    for (const [runId, until] of discarded) if (until <= at) discarded.delete(runId);
    const fresh = [...unconfirmed];
    const runIds = [...fresh, ...discarded.keys()];
    const deleted = db.query(
      `WITH gone AS (
         DELETE FROM runstate_runs WHERE run_id = ANY($1) AND owner = $2 AND finished_ms IS NULL
         RETURNING session_id)
       DELETE FROM runstate_sessions s WHERE s.session_id IN (SELECT session_id FROM gone)
         AND NOT EXISTS (SELECT 1 FROM runstate_runs r
                         WHERE r.session_id = s.session_id AND r.run_id <> ALL($1))`,
      [runIds, owner],
    );
    discardQuery = { runIds: new Set(runIds), done: deleted.catch(() => undefined) };
    try {
      await deleted;
      // Watched from now on, unless written again meanwhile (`acceptedAgain`).
      for (const runId of fresh)
        if (unconfirmed.delete(runId)) discarded.set(runId, at + LATE_INSERT_WATCH_MS);
    } catch {
      // Still out of reach: tried again.
    } finally {
      discardQuery = undefined;
    }
    if (unconfirmed.size > 0) discardIn(DISCARD_RETRY_MS);
    else if (discarded.size > 0) discardIn(LATE_INSERT_CHECK_MS);
    else discarding = undefined;
  }

  const cutoff = () => now() - sqlLimit(maxAgeMs);
  /** Runs not past their age; `$n` is the cutoff parameter. `r` names runstate_runs. */
  const live = (n: number) => `(r.finished_ms IS NULL OR r.finished_ms >= $${n})`;

  /**
   * Of the sessions a statement chose to delete (`chosen`: their ids and positions, as its
   * snapshot had them), those it may: locked in the order of their ids (two deletes never wait on
   * each other's sessions in a cycle), and only if their `position` is still the one chosen. A
   * session given a run since (its row re-read once locked) has a new one, and stays: the snapshot
   * does not see that run, which the delete would take with the session.
   */
  const lockedUnchanged = (chosen: string) =>
    `SELECT s.session_id FROM runstate_sessions s
     JOIN ${chosen} c ON c.session_id = s.session_id AND c.position = s.position
     ORDER BY s.session_id FOR UPDATE OF s`;

  /**
   * Waits for retention that follows a write, which is done: a failure of it (a deadlock with
   * another instance's retention, which PostgreSQL resolves by aborting one; the database gone
   * meanwhile) is not the write's, and the next write's retention tries again. Told once per failed
   * statement (callers share one, see `coalesce`).
   */
  const reported = new WeakSet<object>();
  async function afterWrite(retention: Promise<void>): Promise<void> {
    try {
      await retention;
    } catch (error) {
      if (typeof error === 'object' && error !== null) {
        if (reported.has(error)) return;
        reported.add(error);
      }
      console.error('runstate: retention failed (the next write tries again)', error);
    }
  }

  // Retention runs for many runs at once: a thousand runs starting or finishing together cost a
  // few of these statements, not a thousand (each reads every finished run or session).
  const evictSessions = coalesce<void>(async () => {
    // No limit, no statement: it reads every session.
    if (maxSessions === Infinity) return;
    // The sessions with a run still active stay, and count: of the others, the least recently used
    // go past maxSessions in all (as in memory).
    const { rows } = await db.query<{ runs: number }>(
      `WITH active AS (SELECT DISTINCT session_id FROM runstate_runs WHERE finished_ms IS NULL),
       past AS (
         SELECT s.session_id, s.position FROM runstate_sessions s
         WHERE NOT EXISTS (SELECT 1 FROM active a WHERE a.session_id = s.session_id)
         ORDER BY s.position DESC
         OFFSET GREATEST(0, $1 - (SELECT count(*) FROM active)))
       DELETE FROM runstate_sessions WHERE session_id IN (${lockedUnchanged('past')}) RETURNING ${RUNS_OF_SESSION}`,
      [sqlLimit(maxSessions)],
    );
    forgot(runsOf(rows));
  });

  // A database with no autovacuum (PGlite) is vacuumed once a thousand runs were forgotten since
  // the last time: a plain VACUUM (~0.1 s for a million stored events, 5 December) makes their
  // space usable again, so the files stop growing at what retention keeps.
  let forgottenSinceVacuum = 0;
  const vacuum = coalesce<void>(async () => {
    await db.query('VACUUM');
  });
  function forgot(runs: number): void {
    if (db.autovacuum !== false) return;
    forgottenSinceVacuum += runs;
    if (forgottenSinceVacuum < VACUUM_AFTER_RUNS) return;
    forgottenSinceVacuum = 0;
    void afterWrite(vacuum());
  }

  /** Forgets the finished runs past retention: overall, and in the sessions given. */
  const prune = coalesce<string>(async (sessionIds) => {
    // Only the limits set: a limit of none leaves its clause out (the overall count reads every
    // finished run), and with none at all there is nothing to run.
    const params: unknown[] = [];
    const param = (value: unknown) => `$${params.push(value)}`;
    const past: string[] = [];
    if (maxAgeMs !== Infinity) past.push(`finished_ms < ${param(cutoff())}`);
    if (maxFinishedRuns !== Infinity)
      past.push(`run_id IN (SELECT run_id FROM runstate_runs WHERE finished_ms IS NOT NULL
                            ORDER BY finished_ms DESC, position DESC OFFSET ${param(sqlLimit(maxFinishedRuns))})`);
    // A session's active runs stay, and count: of its finished ones, the oldest go past
    // maxRunsPerSession in all (as in memory).
    if (maxRunsPerSession !== Infinity)
      past.push(`run_id IN (SELECT old.run_id FROM (
                              SELECT run_id, finished_ms,
                                row_number() OVER (PARTITION BY session_id, finished_ms IS NULL ORDER BY position DESC) AS newer,
                                count(*) FILTER (WHERE finished_ms IS NULL) OVER (PARTITION BY session_id) AS active
                              FROM runstate_runs WHERE session_id = ANY(${param([...new Set(sessionIds)])}::text[])) AS old
                            WHERE old.finished_ms IS NOT NULL AND old.newer + old.active > ${param(sqlLimit(maxRunsPerSession))})`);
    if (past.length === 0) return;
    // Two statements: the CTEs of one statement share a snapshot, so the second would still see the
    // runs the first deleted.
    const { rows } = await db.query<{ session_id: string }>(
      `DELETE FROM runstate_runs WHERE finished_ms IS NOT NULL AND (${past.join(' OR ')}) RETURNING session_id`,
      params,
    );
    if (rows.length === 0) return;
    forgot(rows.length);
    await db.query(
      `WITH emptied AS (
         SELECT s.session_id, s.position FROM runstate_sessions s
         WHERE s.session_id = ANY($1::text[])
           AND NOT EXISTS (SELECT 1 FROM runstate_runs r WHERE r.session_id = s.session_id))
       DELETE FROM runstate_sessions WHERE session_id IN (${lockedUnchanged('emptied')})`,
      [[...new Set(rows.map((row) => row.session_id))]],
    );
  });

  async function sessions(where: string[], params: unknown[], order = ''): Promise<SessionRecord[]> {
    params.push(cutoff());
    const c = params.length;
    // A session lists its runs still retained; with none left, it is gone too.
    const { rows } = await db.query<SessionRecord>(
      `SELECT * FROM (
         SELECT s.session_id, s.agent_id, s.user_id, s.session_name,
           s.created_at::float8 AS created_at, s.updated_at::float8 AS updated_at,
           ARRAY(SELECT r.run_id FROM runstate_runs r
                 WHERE r.session_id = s.session_id AND ${live(c)} ORDER BY r.position) AS run_ids,
           s.position
         FROM runstate_sessions s ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
       ) AS found WHERE cardinality(run_ids) > 0 ${order}`,
      params,
    );
    return rows.map(({ position: _position, ...session }: SessionRecord & { position?: unknown }) => session);
  }

  /**
   * Records a new run, and its session: created, or touched if it is this agent's (and not another
   * user's: `userMayJoinSession`). Another agent's or user's session answers no row, and then no
   * run is inserted. One statement (one round trip and one commit, atomic without a transaction): a
   * thousand runs starting at once would otherwise hold the pool's connections for several round
   * trips each. The owner's lease row exists before its first run does (the keeper may not have
   * taken it yet: a run whose owner has no row is an orphan).
   */
  async function insertRun(q: SqlQueryable, run: RunRecord): Promise<{ inserted: boolean }[]> {
    const { rows } = await q.query<{ inserted: boolean }>(
      `WITH instance AS (
         INSERT INTO runstate_instances (instance_id, lease_until)
         VALUES ($6, now() + $7 * interval '1 millisecond') ON CONFLICT (instance_id) DO NOTHING),
       session AS (
         INSERT INTO runstate_sessions (session_id, agent_id, user_id, session_name, created_at, updated_at)
         VALUES ($2, $3, $8, $9, $10, $10)
         ON CONFLICT (session_id) DO UPDATE
           SET updated_at = EXCLUDED.updated_at, position = nextval('runstate_order')
           WHERE runstate_sessions.agent_id = EXCLUDED.agent_id
             AND (runstate_sessions.user_id IS NULL OR EXCLUDED.user_id IS NULL
                  OR runstate_sessions.user_id = EXCLUDED.user_id)
         RETURNING (xmax = 0) AS inserted)
       INSERT INTO runstate_runs (run_id, session_id, agent_id, status, record, owner)
       SELECT $1, $2, $3, $4, $5::jsonb, $6 FROM session
       RETURNING (SELECT inserted FROM session) AS inserted`,
      [
        run.run_id,
        run.session_id,
        run.agent_id,
        run.status,
        storedJson(run),
        owner,
        leaseMs,
        run.user_id,
        sessionName(run.run_input),
        run.created_at,
      ],
    );
    return rows;
  }

  /**
   * A run its session's agent or user refused: recorded in that session made anew when the store
   * forgot it (every run of it past its age: reads hide it, `prune` deletes it later), as if its row
   * were gone; else refused. The row is locked first, and each statement after the lock reads what
   * was committed until then (READ COMMITTED), a run another caller added while it held the row
   * included: two callers never both take a session, nor one take a session that just got a run.
   * Resolves with whether the session is new (as `insertRun`'s `inserted`).
   */
  async function takeForgotten(run: RunRecord): Promise<boolean> {
    return db.transaction(async (tx) => {
      const { rows: held } = await tx.query(
        'SELECT 1 FROM runstate_sessions WHERE session_id = $1 FOR UPDATE',
        [run.session_id],
      );
      const { rows: kept } = await tx.query(
        `SELECT 1 FROM runstate_runs r WHERE r.session_id = $1 AND ${live(2)} LIMIT 1`,
        [run.session_id, cutoff()],
      );
      if (held.length === 0 || kept.length > 0) {
        // Not forgotten (any more): deleted since (retention, a delete), or given a run while this
        // waited for the row (taken over by another caller, maybe of this agent and user). As any
        // run: made or joined, or refused by its agent or user.
        const rows = await insertRun(tx, run);
        if (rows.length > 0) return rows[0]!.inserted;
        const { rows: found } = await tx.query<{ agent_id: string }>(
          'SELECT agent_id FROM runstate_sessions WHERE session_id = $1',
          [run.session_id],
        );
        throw sessionOfAnother(run.session_id, found[0]?.agent_id ?? run.agent_id, run.agent_id);
      }
      await tx.query(
        `UPDATE runstate_sessions SET agent_id = $2, user_id = $3, session_name = $4, created_at = $5,
           updated_at = $5, position = nextval('runstate_order')
         WHERE session_id = $1`,
        [run.session_id, run.agent_id, run.user_id, sessionName(run.run_input), run.created_at],
      );
      await tx.query(
        `INSERT INTO runstate_runs (run_id, session_id, agent_id, status, record, owner)
         VALUES ($1, $2, $3, $4, $5::jsonb, $6)`,
        [run.run_id, run.session_id, run.agent_id, run.status, storedJson(run), owner],
      );
      return true;
    });
  }

  const leases: RunLeases = {
    instanceId: owner,
    leaseMs,
    async renew(ms = leaseMs) {
      // Ahead of the runs' writes waiting for a connection: a busy instance is not a lost one.
      await (db.urgent ?? db).query(
        `INSERT INTO runstate_instances (instance_id, lease_until)
         VALUES ($1, now() + $2 * interval '1 millisecond')
         ON CONFLICT (instance_id) DO UPDATE SET lease_until = EXCLUDED.lease_until`,
        [owner, ms],
      );
    },
    async release() {
      await db.query('DELETE FROM runstate_instances WHERE instance_id = $1', [owner]);
    },
    async orphans() {
      // The lease rows of instances gone without a word (killed), whose runs have all ended: one
      // more row for each crash otherwise, for good. (A run whose owner has no row is an orphan
      // as one whose lease ran out is; an instance that was only late takes its row back at its
      // next renewal.)
      await db.query(
        `DELETE FROM runstate_instances i WHERE i.lease_until < now() AND NOT EXISTS (
           SELECT 1 FROM runstate_runs r WHERE r.owner = i.instance_id AND r.finished_ms IS NULL)`,
      );
      const { rows } = await db.query<{ run_id: string }>(
        `SELECT r.run_id FROM runstate_runs r LEFT JOIN runstate_instances i ON i.instance_id = r.owner
         WHERE r.finished_ms IS NULL AND ${ORPHANED} ORDER BY r.position`,
      );
      return rows.map((row) => row.run_id);
    },
    finishOrphan: (runId, outcome) => db.transaction((tx) => finishOrphan(tx, runId, outcome)),
    async finishedAsOrphan(runId) {
      if (holdsNul(runId)) return false;
      // `sealed` is set by `finishOrphan` alone.
      const { rows } = await db.query<{ sealed: boolean }>(
        'SELECT sealed FROM runstate_runs WHERE run_id = $1',
        [runId],
      );
      return rows[0]?.sealed === true;
    },
    async requestCancel(runId, reason) {
      if (holdsNul(runId)) return;
      await db.query(
        `UPDATE runstate_runs SET cancel_requested = $2
         WHERE run_id = $1 AND finished_ms IS NULL AND cancel_requested IS NULL`,
        [runId, reason],
      );
    },
    async cancelRequests() {
      // Ahead of the runs' writes, as the renewal it follows: a cancel should not wait behind them.
      const { rows } = await (db.urgent ?? db).query<{ run_id: string; cancel_requested: CancelReason }>(
        `SELECT run_id, cancel_requested FROM runstate_runs
         WHERE owner = $1 AND finished_ms IS NULL AND cancel_requested IS NOT NULL`,
        [owner],
      );
      return rows.map((row) => ({ runId: row.run_id, reason: row.cancel_requested }));
    },
  };

  async function finishOrphan(
    tx: SqlQueryable,
    runId: string,
    outcome: OrphanOutcome,
  ): Promise<RunEvent | undefined> {
    // The row lock taken here makes the check and the write one step: two instances finalising
    // the same orphan, or its owner finishing it meanwhile, cannot both win. A row locked by
    // another transaction is skipped, for the next sweep: its owner may hold it frozen mid-write
    // (a paused VM), and waiting for it would stop this sweep's other orphans too.
    const { rows } = await tx.query<{ record: RunRecord; cancel_requested: CancelReason | null }>(
      `SELECT r.record, r.cancel_requested FROM runstate_runs r
       LEFT JOIN runstate_instances i ON i.instance_id = r.owner
       WHERE r.run_id = $1 AND r.finished_ms IS NULL AND ${ORPHANED} FOR UPDATE OF r SKIP LOCKED`,
      [runId],
    );
    const run = rows[0] && ordered(rows[0].record);
    if (!run) return undefined;
    // A cancel asked for before the owner was found gone is what the run ends with: the sweep of
    // any instance may come first, and the cancel was answered as one.
    const asked = rows[0]!.cancel_requested;
    if (outcome.status === 'failed' && asked) outcome = { status: 'cancelled', reason: asked };
    // What the owner had stored before it went: the partial answer, its calls, and the next seq.
    const { rows: stored } = await tx.query<{
      content: string | null;
      tool_events: RunEvent[] | null;
      reasoning_events: RunEvent[] | null;
      last: number | null;
      terminal: RunEvent | null;
    }>(
      `SELECT string_agg(event->>'content', '' ORDER BY seq) FILTER (WHERE event->>'event' = 'RunContent') AS content,
         json_agg(event ORDER BY seq) FILTER (WHERE event->>'event' IN ${TOOL_EVENTS}) AS tool_events,
         json_agg(event ORDER BY seq) FILTER (WHERE event->>'event' = 'ReasoningCompleted'
           OR (event->>'event' = 'RunContent' AND event->>'reasoning_content' IS NOT NULL)) AS reasoning_events,
         max(seq) AS last,
         (array_agg(event ORDER BY seq DESC) FILTER (WHERE event->>'event' IN ('RunCompleted', 'RunCancelled', 'RunError')))[1] AS terminal
       FROM runstate_events WHERE run_id = $1`,
      [runId],
    );
    // The record's calls are as of its creation or last pause: the events have what came after (a
    // call that ran, or still ran when the owner went: cancelled now, as a run's end leaves it).
    const toolsAt = (ms: number) => closeOpen(toolsAsStored(run.tools, stored[0]?.tool_events ?? []), ms);
    const ended = stored[0]?.terminal;
    if (ended) {
      // The owner stored its terminal event and went before its final record: the event decides.
      const tools = ended.event === 'RunCompleted' ? ended.tools : toolsAt(ended.created_at * 1000);
      await tx.query(
        `UPDATE runstate_runs SET record = record || $2::jsonb, status = $3, finished_ms = $4, owner = NULL
         WHERE run_id = $1`,
        [
          runId,
          storedJson({ ...recordOfTerminal(ended), tools }),
          (ended as { status: string }).status,
          now(),
        ],
      );
      return undefined;
    }
    const content = stored[0]?.content ?? run.content;
    // The reasoning it streamed, as its stored events tell it (the record has it as of its start).
    const reasoningEvents = stored[0]?.reasoning_events ?? [];
    const reasoning = reasoningEvents.map((event) =>
      event.event === 'RunContent' ? (event.reasoning_content ?? '') : '',
    );
    const extraData = extraDataOfEvents(reasoningEvents);
    const finishedMs = now();
    const tools = toolsAt(finishedMs);
    const message = 'the instance that ran this run stopped renewing its lease (stopped, frozen or cut off)';
    const record: RunOutput = {
      ...run,
      ...(extraData && { reasoning_steps: extraData.reasoning_steps, extra_data: extraData }),
      reasoning_content: reasoning.join('') || run.reasoning_content,
      status: outcome.status,
      content,
      tools,
      metrics: {
        // What the model reported went with the owner: unknown, not zero.
        input_tokens: null,
        output_tokens: null,
        total_tokens: null,
        time_to_first_token: null,
        // From `created_at`, whole seconds (the store keeps no finer start): up to a second over.
        duration: Math.max(0, Math.round(finishedMs - run.created_at * 1000) / 1000),
      },
      error: outcome.status === 'failed' ? { code: 'RUN_LOST', message, retryable: true } : null,
      cancel_reason: outcome.status === 'cancelled' ? outcome.reason : null,
      finished_at: Math.floor(finishedMs / 1000),
    };
    const identity = {
      run_id: run.run_id,
      agent_id: run.agent_id,
      agent_name: run.agent_name,
      session_id: run.session_id,
      created_at: record.finished_at,
    };
    let seq = (stored[0]?.last ?? 0) + 1;
    // The owner went mid-reasoning: its phase ends before the run does, as the owner's own end
    // would have closed it (a reader's phases are never left open).
    const closing = closingOfEvents(reasoningEvents);
    const completed: RunEvent | undefined = closing && { ...closing, ...identity, seq: seq++ };
    const base = {
      ...identity,
      seq,
      // As the owner's own end would have them: the reasoning phases it stored.
      ...(extraData && { reasoning_steps: extraData.reasoning_steps, extra_data: extraData }),
    };
    const terminal: RunEvent =
      outcome.status === 'failed'
        ? {
            event: 'RunError',
            ...base,
            content: message,
            code: 'RUN_LOST',
            error_type: 'RUN_LOST',
            status: 'failed',
          }
        : { event: 'RunCancelled', ...base, content, reason: outcome.reason, status: 'cancelled' };
    await tx.query(
      `UPDATE runstate_runs SET record = $2::jsonb, status = $3, finished_ms = $4, owner = NULL, sealed = true
       WHERE run_id = $1`,
      [runId, storedJson(record), record.status, finishedMs],
    );
    await tx.query(
      `INSERT INTO runstate_events (run_id, seq, event)
       SELECT $1, (e->>'seq')::integer, e FROM json_array_elements($2::json) AS e`,
      [runId, storedJson(completed ? [completed, terminal] : [terminal])],
    );
    return terminal;
  }

  return {
    leases,
    async createRun(run) {
      try {
        const deleting = acceptedAgain(run.run_id);
        if (deleting) await deleting;
        const rows = await insertRun(db, run);
        // Refused by the session's agent or user: unless the store forgot that session.
        const inserted = rows.length > 0 ? rows[0]!.inserted : await takeForgotten(run);
        // Retention after the run is recorded: a new session may push out the least recently used
        // one, a new run of a session its oldest finished one.
        await afterWrite(inserted ? evictSessions() : prune(run.session_id));
      } catch (error) {
        if ((error as { code?: string }).code === '23505')
          throw new RunstateError('INVALID_INPUT', `run id ${run.run_id} is already in use`);
        if (error instanceof RunstateError && error.code === 'STORE_UNAVAILABLE') discardLater(run.run_id);
        throw error;
      }
    },

    async updateRun(runId, patch) {
      await db.query(
        `UPDATE runstate_runs SET record = record || $2::jsonb, status = COALESCE($3, status)
         WHERE run_id = $1 AND finished_ms IS NULL`,
        [runId, storedJson(patch), patch.status ?? null],
      );
    },

    async finishRun(record) {
      const { rows } = await db.query(
        `UPDATE runstate_runs SET record = record || $2::jsonb, status = $3, finished_ms = $4, owner = NULL,
           parked = NULL, parked_until = NULL
         WHERE run_id = $1 AND finished_ms IS NULL RETURNING run_id`,
        [record.run_id, storedJson(record), record.status, now()],
      );
      if (rows.length === 0) return false;
      await afterWrite(prune(record.session_id));
      return true;
    },

    async getRun(runId) {
      if (holdsNul(runId)) return undefined;
      const { rows } = await db.query<{ record: RunRecord }>(
        `SELECT r.record FROM runstate_runs r WHERE r.run_id = $1 AND ${live(2)}`,
        [runId, cutoff()],
      );
      return rows[0] && ordered(rows[0].record);
    },

    async listRuns(filter: RunFilter = {}) {
      if (holdsNul(filter.agentId, filter.sessionId, filter.status)) return [];
      const params: unknown[] = [cutoff()];
      const where = [live(1)];
      for (const [column, value] of [
        ['r.agent_id', filter.agentId],
        ['r.session_id', filter.sessionId],
        ['r.status', filter.status],
      ] as const) {
        if (value === undefined) continue;
        params.push(value);
        where.push(`${column} = $${params.length}`);
      }
      const { rows } = await db.query<{ record: RunRecord }>(
        `SELECT r.record FROM runstate_runs r WHERE ${where.join(' AND ')} ORDER BY r.position`,
        params,
      );
      return rows.map((row) => ordered(row.record));
    },

    appendEvents(runId, events) {
      return eventGroups.append(runId, events);
    },

    async readEvents(runId, afterSeq = 0) {
      if (holdsNul(runId)) return [];
      const { rows } = await db.query<{ event: RunEvent }>(
        `SELECT e.event FROM runstate_events e JOIN runstate_runs r USING (run_id)
         WHERE e.run_id = $1 AND e.seq > $2 AND ${live(3)} ORDER BY e.seq`,
        [runId, afterSeq, cutoff()],
      );
      return rows.map((row) => row.event);
    },

    async getSession(sessionId) {
      if (holdsNul(sessionId)) return undefined;
      return (await sessions(['s.session_id = $1'], [sessionId]))[0];
    },

    async listSessions(filter: SessionFilter = {}) {
      if (holdsNul(filter.agentId, filter.userId)) return [];
      const params: unknown[] = [];
      const where: string[] = [];
      for (const [column, value] of [
        ['s.agent_id', filter.agentId],
        ['s.user_id', filter.userId],
      ] as const) {
        if (value === undefined) continue;
        params.push(value);
        where.push(`${column} = $${params.length}`);
      }
      return sessions(where, params, 'ORDER BY position DESC');
    },

    async sessionRuns(sessionId) {
      if (holdsNul(sessionId)) return [];
      const { rows } = await db.query<{ record: RunRecord }>(
        `SELECT r.record FROM runstate_runs r WHERE r.session_id = $1 AND ${live(2)} ORDER BY r.position`,
        [sessionId, cutoff()],
      );
      return rows.map((row) => ordered(row.record));
    },

    async parkRun(runId, patch, events, parked) {
      await db.transaction(async (tx) => {
        // The row lock first: the events and the record change together, or not at all.
        const { rows } = await tx.query(
          `SELECT 1 FROM runstate_runs WHERE run_id = $1 AND finished_ms IS NULL AND NOT sealed FOR UPDATE`,
          [runId],
        );
        if (rows.length === 0) return;
        await tx.query(
          `INSERT INTO runstate_events (run_id, seq, event)
           SELECT $1, (e->>'seq')::integer, e FROM json_array_elements($2::json) AS e
           ON CONFLICT DO NOTHING`,
          [runId, storedJson(events)],
        );
        await tx.query(
          `UPDATE runstate_runs SET record = record || $2::jsonb, status = COALESCE($3, status),
             parked = $4::jsonb, parked_until = $5, owner = NULL
           WHERE run_id = $1`,
          [runId, storedJson(patch), patch.status ?? null, storedJson(parked), parked.until],
        );
      });
    },

    claimParked(runId, expiredBefore, accept) {
      if (holdsNul(runId)) return Promise.resolve(undefined);
      return db.transaction(async (tx) => {
        // Of instances racing for the run, the row lock lets one read it parked; the others wait for
        // its commit and then read it taken.
        const { rows } = await tx.query<{ record: RunRecord; parked: ParkedRun }>(
          `SELECT record, parked FROM runstate_runs
           WHERE run_id = $1 AND parked IS NOT NULL AND finished_ms IS NULL
             AND ($2::bigint IS NULL OR parked_until < $2) FOR UPDATE`,
          [runId, expiredBefore ?? null],
        );
        const row = rows[0];
        if (!row) return undefined;
        const record = ordered(row.record);
        if (accept && !accept(record)) return undefined;
        await tx.query(
          'UPDATE runstate_runs SET owner = $2, parked = NULL, parked_until = NULL WHERE run_id = $1',
          [runId, owner],
        );
        return { record, parked: row.parked };
      });
    },

    async expiredParked(nowMs) {
      const { rows } = await db.query<{ run_id: string }>(
        `SELECT run_id FROM runstate_runs WHERE parked IS NOT NULL AND parked_until < $1 ORDER BY parked_until`,
        [nowMs],
      );
      return rows.map((row) => row.run_id);
    },

    async parkStates(runIds) {
      const ids = runIds.filter((runId) => !holdsNul(runId));
      const { rows } = await db.query<{ run_id: string; status: RunStatus; parked_seq: number | null }>(
        `SELECT r.run_id, r.status, (r.parked->>'seq')::integer AS parked_seq FROM runstate_runs r
         WHERE r.run_id IN (SELECT json_array_elements_text($1::json)) AND ${live(2)}`,
        [storedJson(ids), cutoff()],
      );
      return new Map(rows.map((row) => [row.run_id, { status: row.status, parkedSeq: row.parked_seq }]));
    },

    async deleteSession(sessionId) {
      if (holdsNul(sessionId)) return false;
      const { rows } = await db.query<{ runs: number }>(
        `DELETE FROM runstate_sessions WHERE session_id = $1 RETURNING ${RUNS_OF_SESSION}`,
        [sessionId],
      );
      forgot(runsOf(rows));
      return rows.length > 0;
    },

    async renameSession(sessionId, name) {
      if (holdsNul(sessionId)) return undefined;
      await db.query('UPDATE runstate_sessions SET session_name = $2 WHERE session_id = $1', [
        sessionId,
        name,
      ]);
      // Read back as every read does: a session whose runs retention forgot is gone.
      return (await sessions(['s.session_id = $1'], [sessionId]))[0];
    },

    close() {
      // Idempotent: the batches handed over are written before the database closes. Runs not
      // discarded yet are this instance's: once its lease runs out, another instance's sweep ends them.
      clearTimeout(discarding);
      closed ??= eventGroups.drain().then(() => db.close());
      return closed;
    },
  };
}

/** How often deleting the runs not accepted (`unconfirmed`) is tried again while the database is out of reach. */
const DISCARD_RETRY_MS = 1_000;

/** How many runs a database with no autovacuum forgets between two VACUUMs (see `forgot`). */
const VACUUM_AFTER_RUNS = 1_000;

/**
 * What a delete of sessions returns: how many runs each took with it (they go by `ON DELETE
 * CASCADE`, at the statement's end; its snapshot still sees them).
 */
const RUNS_OF_SESSION = `(SELECT count(*) FROM runstate_runs r WHERE r.session_id = runstate_sessions.session_id)::int AS runs`;
const runsOf = (rows: readonly { runs: number }[]): number => rows.reduce((sum, row) => sum + row.runs, 0);

/**
 * How long a run not accepted is deleted again after it was (`discarded`): longer than Linux sends
 * again what a connection had not had acknowledged (about 15 minutes at its defaults).
 */
const LATE_INSERT_WATCH_MS = 20 * 60_000;

/** How often the runs not accepted are deleted again while they are watched. */
const LATE_INSERT_CHECK_MS = 5_000;

/** The events that carry calls whole (see `toolsAsStored`), as an SQL list. */
const TOOL_EVENTS = `('ToolCallStarted', 'ToolCallCompleted', 'ToolCallError', 'RunPaused', 'RunContinued')`;

/** The final fields of a record that only its terminal event tells. */
function recordOfTerminal(event: RunEvent): Partial<RunRecord> {
  const finished_at = event.created_at;
  switch (event.event) {
    case 'RunCompleted':
      return {
        status: 'completed',
        content: event.content,
        reasoning_content: event.reasoning_content,
        ...(event.extra_data && {
          reasoning_steps: event.extra_data.reasoning_steps,
          extra_data: event.extra_data,
        }),
        metrics: event.metrics,
        finish_reason: event.finish_reason,
        finished_at,
      };
    case 'RunCancelled':
      return { status: 'cancelled', content: event.content, cancel_reason: event.reason, finished_at };
    case 'RunError':
      return {
        status: 'failed',
        error: { code: event.code, message: event.content, retryable: false },
        finished_at,
      };
    default:
      return {};
  }
}

function ordered(record: RunRecord): RunRecord {
  const out: Record<string, unknown> = {};
  // A record stored before records had `input` and `reasoning_steps` (4 December 2026), or by an
  // instance of that version on a shared database, gets them from `run_input` and `extra_data`.
  if (record.input === undefined) record.input = { input_content: record.run_input };
  if (record.extra_data && record.reasoning_steps === undefined)
    record.reasoning_steps = record.extra_data.reasoning_steps;
  for (const key of RECORD_KEYS) if (key in record) out[key] = record[key as keyof RunRecord];
  for (const [key, value] of Object.entries(record)) if (!(key in out)) out[key] = value;
  return out as unknown as RunRecord;
}
