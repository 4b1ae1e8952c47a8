import { RunstateError } from '../../errors.js';
import type { RunEvent, RunRecord } from '../run-events.js';
import type { RunFilter, RunStore, SessionFilter, SessionRecord } from '../storage-draft.js';
import type { SqlDatabase, SqlQueryable } from './sql-database.js';

/** Options of {@link createSqlRunStore}. */
export interface SqlRunStoreOptions {
  /** A migrated database (see `migrate`). The store closes it on `close()`. */
  db: SqlDatabase;
  /** The instance that owns the runs this store creates (its lease covers them). */
  owner?: string | undefined;
  retention?: {
    /** Finished runs kept at most; the oldest go first. Default 1,000. */
    maxFinishedRuns?: number | undefined;
    /** Finished runs older than this are forgotten. Default one hour. */
    maxAgeMs?: number | undefined;
  };
  /** Most sessions kept (least recently used go first; never one with an active run). Default 10,000. */
  maxSessions?: number | undefined;
  now?: () => number;
}

/** The key order of a run record on the wire (jsonb sorts keys its own way). */
const RECORD_KEYS: readonly string[] = [
  'run_id',
  'agent_id',
  'agent_name',
  'session_id',
  'user_id',
  'run_input',
  'model',
  'model_provider',
  'created_at',
  'status',
  'content',
  'metrics',
  'error',
  'cancel_reason',
  'finished_at',
];

/**
 * A {@link RunStore} in PostgreSQL, the same SQL on a server (`pg`) and in PGlite. Runs and sessions
 * are rows; a run's events are rows of `runstate_events`, written one INSERT per batch.
 *
 * Retention as in memory: a finished run past `maxFinishedRuns` or `maxAgeMs` is no longer listed,
 * read or replayed (its events are deleted), but stays in its session's history until the session
 * goes.
 */
export function createSqlRunStore(options: SqlRunStoreOptions): RunStore {
  const { db, owner = null, now = Date.now } = options;
  const maxFinishedRuns = options.retention?.maxFinishedRuns ?? 1_000;
  const maxAgeMs = options.retention?.maxAgeMs ?? 60 * 60_000;
  const maxSessions = options.maxSessions ?? 10_000;
  // Appends of one run are chained: batches commit in seq order, so no reader sees a gap.
  const appending = new Map<string, Promise<void>>();
  let closed: Promise<void> | undefined;

  const cutoff = () => now() - maxAgeMs;
  /** A run visible to reads: retained and not past its age. `$n` is the cutoff parameter. */
  const visible = (n: number) => `retained AND (finished_ms IS NULL OR finished_ms >= $${n})`;

  async function insertSession(tx: SqlQueryable, run: RunRecord): Promise<boolean> {
    // One statement for "create, or touch if it is this agent's": a session of another agent
    // answers no row.
    const { rows } = await tx.query<{ inserted: boolean }>(
      `INSERT INTO runstate_sessions (session_id, agent_id, user_id, session_name, created_at, updated_at)
       VALUES ($1, $2, $3, $4, $5, $5)
       ON CONFLICT (session_id) DO UPDATE
         SET updated_at = EXCLUDED.updated_at, position = nextval('runstate_order')
         WHERE runstate_sessions.agent_id = EXCLUDED.agent_id
       RETURNING (xmax = 0) AS inserted`,
      [run.session_id, run.agent_id, run.user_id, run.run_input.slice(0, 100), run.created_at],
    );
    if (rows.length === 0) {
      const { rows: found } = await tx.query<{ agent_id: string }>(
        'SELECT agent_id FROM runstate_sessions WHERE session_id = $1',
        [run.session_id],
      );
      throw new RunstateError(
        'INVALID_INPUT',
        `session ${run.session_id} belongs to agent ${found[0]?.agent_id}, not ${run.agent_id}`,
      );
    }
    return rows[0]!.inserted;
  }

  async function evictSessions(tx: SqlQueryable): Promise<void> {
    await tx.query(
      `DELETE FROM runstate_sessions WHERE session_id IN (
         SELECT s.session_id FROM runstate_sessions s
         WHERE NOT EXISTS (
           SELECT 1 FROM runstate_runs r WHERE r.session_id = s.session_id AND r.finished_ms IS NULL)
         ORDER BY s.position DESC OFFSET $1)`,
      [maxSessions],
    );
  }

  async function prune(): Promise<void> {
    // Runs past retention leave the lists and lose their events; their record stays for the session.
    await db.query(
      `WITH gone AS (
         UPDATE runstate_runs SET retained = false
         WHERE retained AND finished_ms IS NOT NULL AND (finished_ms < $1 OR run_id IN (
           SELECT run_id FROM runstate_runs WHERE retained AND finished_ms IS NOT NULL
           ORDER BY finished_ms DESC, position DESC OFFSET $2))
         RETURNING run_id)
       DELETE FROM runstate_events WHERE run_id IN (SELECT run_id FROM gone)`,
      [cutoff(), maxFinishedRuns],
    );
  }

  async function insertEvents(runId: string, events: readonly RunEvent[]): Promise<void> {
    try {
      // One statement per batch, whatever its size. Events after a run was finalised elsewhere (a
      // lost run's owner coming back) conflict on their seq and are dropped: the first writer wins.
      await db.query(
        `INSERT INTO runstate_events (run_id, seq, event)
         SELECT $1, (e->>'seq')::integer, e FROM json_array_elements($2::json) AS e
         ON CONFLICT DO NOTHING`,
        [runId, JSON.stringify(events)],
      );
    } catch (error) {
      // The run was deleted with its session while it still streamed: nobody can read these.
      if ((error as { code?: string }).code !== '23503') throw error;
    }
  }

  return {
    async createRun(run) {
      try {
        await db.transaction(async (tx) => {
          const inserted = await insertSession(tx, run);
          await tx.query(
            `INSERT INTO runstate_runs (run_id, session_id, agent_id, status, record, owner)
             VALUES ($1, $2, $3, $4, $5::jsonb, $6)`,
            [run.run_id, run.session_id, run.agent_id, run.status, JSON.stringify(run), owner],
          );
          if (inserted) await evictSessions(tx);
        });
      } catch (error) {
        if ((error as { code?: string }).code === '23505')
          throw new RunstateError('INVALID_INPUT', `run id ${run.run_id} is already in use`);
        throw error;
      }
    },

    async updateRun(runId, patch) {
      await db.query(
        `UPDATE runstate_runs SET record = record || $2::jsonb, status = COALESCE($3, status)
         WHERE run_id = $1 AND finished_ms IS NULL`,
        [runId, JSON.stringify(patch), patch.status ?? null],
      );
    },

    async finishRun(record) {
      const { rows } = await db.query(
        `UPDATE runstate_runs SET record = $2::jsonb, status = $3, finished_ms = $4, owner = NULL
         WHERE run_id = $1 AND finished_ms IS NULL RETURNING run_id`,
        [record.run_id, JSON.stringify(record), record.status, now()],
      );
      if (rows.length === 0) return false;
      await prune();
      return true;
    },

    async getRun(runId) {
      const { rows } = await db.query<{ record: RunRecord }>(
        `SELECT record FROM runstate_runs WHERE run_id = $1 AND ${visible(2)}`,
        [runId, cutoff()],
      );
      return rows[0] && ordered(rows[0].record);
    },

    async listRuns(filter: RunFilter = {}) {
      const params: unknown[] = [cutoff()];
      const where = [visible(1)];
      const match = (column: string, value: string | undefined) => {
        if (value === undefined) return;
        params.push(value);
        where.push(`${column} = $${params.length}`);
      };
      match('agent_id', filter.agentId);
      match('session_id', filter.sessionId);
      match('status', filter.status);
      const { rows } = await db.query<{ record: RunRecord }>(
        `SELECT record FROM runstate_runs WHERE ${where.join(' AND ')} ORDER BY position`,
        params,
      );
      return rows.map((row) => ordered(row.record));
    },

    appendEvents(runId, events) {
      if (events.length === 0) return Promise.resolve();
      const previous = appending.get(runId) ?? Promise.resolve();
      const done = previous.then(() => insertEvents(runId, events));
      // The chain keeps going after a failed batch; this caller still sees the failure.
      const tail = done.catch(() => undefined);
      appending.set(runId, tail);
      void tail.then(() => {
        if (appending.get(runId) === tail) appending.delete(runId);
      });
      return done;
    },

    async readEvents(runId, afterSeq = 0) {
      const { rows } = await db.query<{ event: RunEvent }>(
        'SELECT event FROM runstate_events WHERE run_id = $1 AND seq > $2 ORDER BY seq',
        [runId, afterSeq],
      );
      return rows.map((row) => row.event);
    },

    async getSession(sessionId) {
      const { rows } = await db.query<SessionRecord>(`${SESSION_SELECT} WHERE s.session_id = $1`, [
        sessionId,
      ]);
      return rows[0];
    },

    async listSessions(filter: SessionFilter = {}) {
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
      const { rows } = await db.query<SessionRecord>(
        `${SESSION_SELECT} ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY s.position DESC`,
        params,
      );
      return rows;
    },

    async sessionRuns(sessionId) {
      const { rows } = await db.query<{ record: RunRecord }>(
        'SELECT record FROM runstate_runs WHERE session_id = $1 ORDER BY position',
        [sessionId],
      );
      return rows.map((row) => ordered(row.record));
    },

    async deleteSession(sessionId) {
      const { rows } = await db.query(
        'DELETE FROM runstate_sessions WHERE session_id = $1 RETURNING session_id',
        [sessionId],
      );
      return rows.length > 0;
    },

    close() {
      // Idempotent: the batches handed over are written before the database closes.
      closed ??= Promise.all(appending.values()).then(() => db.close());
      return closed;
    },
  };
}

// Times are bigint columns (strings from `pg`): read them as numbers.
const SESSION_SELECT = `SELECT s.session_id, s.agent_id, s.user_id, s.session_name,
  s.created_at::float8 AS created_at, s.updated_at::float8 AS updated_at,
  ARRAY(SELECT r.run_id FROM runstate_runs r WHERE r.session_id = s.session_id ORDER BY r.position) AS run_ids
  FROM runstate_sessions s`;

function ordered(record: RunRecord): RunRecord {
  const out: Record<string, unknown> = {};
  for (const key of RECORD_KEYS) if (key in record) out[key] = record[key as keyof RunRecord];
  for (const [key, value] of Object.entries(record)) if (!(key in out)) out[key] = value;
  return out as unknown as RunRecord;
}
