import { RunstateError } from '../../errors.js';
import type { SqlDatabase } from './sql-database.js';

/** One version of the schema: statements run in order, in the transaction of {@link migrate}. */
interface Migration {
  version: number;
  name: string;
  statements: string[];
}

/**
 * The schema, one entry per version; never edit a released entry, add the next one. One statement
 * per string: PGlite's `query` takes one statement at a time.
 */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'runs, sessions, events, instances',
    statements: [
      // `position` orders sessions by last use (the memory store's LRU order) across instances.
      `CREATE SEQUENCE runstate_order`,
      `CREATE TABLE runstate_sessions (
        session_id text PRIMARY KEY,
        agent_id text NOT NULL,
        user_id text,
        session_name text NOT NULL,
        created_at bigint NOT NULL,
        updated_at bigint NOT NULL,
        position bigint NOT NULL DEFAULT nextval('runstate_order')
      )`,
      `CREATE INDEX runstate_sessions_position ON runstate_sessions (position)`,
      // One row per live instance; its lease covers every run it owns (one write per renewal).
      `CREATE TABLE runstate_instances (
        instance_id text PRIMARY KEY,
        lease_until timestamptz NOT NULL,
        started_at timestamptz NOT NULL DEFAULT now()
      )`,
      // `record` is the RunRecord; the columns beside it are what queries filter and order on.
      // `sealed`: another instance wrote the terminal event (the owner was lost); the owner's late
      // writes are dropped.
      `CREATE TABLE runstate_runs (
        run_id text PRIMARY KEY,
        position bigint NOT NULL DEFAULT nextval('runstate_order'),
        session_id text NOT NULL REFERENCES runstate_sessions ON DELETE CASCADE,
        agent_id text NOT NULL,
        status text NOT NULL,
        record jsonb NOT NULL,
        owner text,
        finished_ms bigint,
        sealed boolean NOT NULL DEFAULT false
      )`,
      `CREATE INDEX runstate_runs_session ON runstate_runs (session_id, position)`,
      `CREATE INDEX runstate_runs_position ON runstate_runs (position)`,
      `CREATE INDEX runstate_runs_active ON runstate_runs (owner) WHERE finished_ms IS NULL`,
      `CREATE INDEX runstate_runs_finished ON runstate_runs (finished_ms, position) WHERE finished_ms IS NOT NULL`,
      // json, not jsonb: an event replayed from here is byte for byte the frame sent live (jsonb
      // would reorder its keys).
      `CREATE TABLE runstate_events (
        run_id text NOT NULL REFERENCES runstate_runs ON DELETE CASCADE,
        seq integer NOT NULL,
        event json NOT NULL,
        PRIMARY KEY (run_id, seq)
      )`,
    ],
  },
  {
    version: 2,
    name: 'parked runs',
    statements: [
      // A paused run waiting for a person: its snapshot, RunPaused seq and deadline (ParkedRun), owned
      // by nobody until an instance claims it. `parked_until` is what the expiry sweep looks for.
      `ALTER TABLE runstate_runs ADD COLUMN parked jsonb`,
      `ALTER TABLE runstate_runs ADD COLUMN parked_until bigint`,
      `CREATE INDEX runstate_runs_parked ON runstate_runs (parked_until) WHERE parked IS NOT NULL`,
    ],
  },
  {
    version: 3,
    name: 'RunStarted.run_input as Agno RunInput',
    statements: [
      // Stored `RunStarted` events had `run_input` as the message itself; Agno's client reads it as
      // a `RunInput` (`{"input_content": …}`). Rewritten in the text, so that the event's keys keep
      // their order (JSON.stringify wrote it: no spaces, the string's quotes escaped).
      `UPDATE runstate_events
         SET event = regexp_replace(event::text, '"run_input":("(?:[^"\\\\]|\\\\.)*")',
                                    '"run_input":{"input_content":\\1}')::json
       WHERE event->>'event' = 'RunStarted' AND json_typeof(event->'run_input') = 'string'`,
    ],
  },
  {
    version: 4,
    name: 'cancels asked for on another instance',
    statements: [
      // The reason of a cancel sent to an instance that does not own the run, read by the owner with
      // its lease's renewal: a cancel that reaches the owner without the cancel bus.
      `ALTER TABLE runstate_runs ADD COLUMN cancel_requested text`,
    ],
  },
  {
    version: 5,
    name: "ReasoningCompleted's content as Agno's ReasoningSteps",
    statements: [
      // Stored `ReasoningCompleted` events had their steps in `extra_data` only; Agno's client reads
      // them in `content` (`content_type: "ReasoningSteps"`). Written in the text before
      // `"reasoning_content":`, whose first occurrence is the key (inside a string its quotes are
      // escaped), so that the event's keys keep their order.
      `UPDATE runstate_events
         SET event = overlay(event::text
                             PLACING '"content":' || (event->'extra_data')::text || ',"content_type":"ReasoningSteps",'
                             FROM position('"reasoning_content":' IN event::text) FOR 0)::json
       WHERE event->>'event' = 'ReasoningCompleted' AND event->'content' IS NULL
         AND position('"reasoning_content":' IN event::text) > 0 AND event->'extra_data' IS NOT NULL`,
    ],
  },
];

/**
 * A migration's queries have no time limit: an instance starting while another migrates waits for
 * it, and a migration may rewrite a large table.
 */
const UNBOUNDED = { unbounded: true };

// Any constant shared by every runstate instance; pg_advisory_xact_lock takes a bigint.
const MIGRATION_LOCK = 7_226_843_113;

/**
 * Brings the schema to the latest version, in one transaction under a PostgreSQL advisory lock:
 * instances starting together wait for each other instead of racing, and a failed migration leaves
 * nothing half done (PostgreSQL's DDL is transactional). A schema that is up to date is only read,
 * so a role without CREATE (least privilege, its schema made by another role) starts on it. Throws
 * `INTERNAL` when the database was migrated by a newer runstate, and `STORE_UNAVAILABLE` naming the
 * migration and `where` (the server) when the server refuses one.
 *
 * @returns the versions applied now (empty when the schema was up to date).
 */
export async function migrate(db: SqlDatabase, where = 'the database'): Promise<number[]> {
  // What the transaction was doing, for the message of a failure.
  let step = 'reading the schema version';
  try {
    return await db.transaction(async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      // Made by the first start only: `CREATE TABLE IF NOT EXISTS` needs CREATE on the schema even
      // when the table is there.
      const { rows: found } = await tx.query<{ made: boolean }>(
        `SELECT to_regclass('runstate_migrations') IS NOT NULL AS made`,
      );
      if (!found[0]?.made) {
        step = 'creating runstate_migrations';
        await tx.query(`CREATE TABLE runstate_migrations (
          version integer PRIMARY KEY,
          name text NOT NULL,
          applied_at timestamptz NOT NULL DEFAULT now()
        )`);
      }
      const { rows } = await tx.query<{ version: number }>('SELECT version FROM runstate_migrations');
      const done = new Set(rows.map((row) => row.version));
      const latest = MIGRATIONS.at(-1)!.version;
      const newest = Math.max(0, ...done);
      if (newest > latest) {
        throw new RunstateError(
          'INTERNAL',
          `the database schema is at version ${newest}, newer than this runstate knows (${latest}): upgrade runstate`,
        );
      }
      const applied: number[] = [];
      for (const migration of MIGRATIONS) {
        if (done.has(migration.version)) continue;
        step = `migration ${migration.version}, ${migration.name}`;
        for (const statement of migration.statements) await tx.query(statement);
        await tx.query('INSERT INTO runstate_migrations (version, name) VALUES ($1, $2)', [
          migration.version,
          migration.name,
        ]);
        applied.push(migration.version);
      }
      return applied;
    }, UNBOUNDED);
  } catch (error) {
    // Ours already say what happened (the server out of reach, a newer schema).
    if (error instanceof RunstateError) throw error;
    const { code, message } = error as { code?: unknown; message?: unknown };
    // insufficient_privilege: the role may use the schema but not change it.
    const hint =
      code === '42501' ? ' (the role needs CREATE on the schema for this: see docs/deployment.md)' : '';
    throw new RunstateError(
      'STORE_UNAVAILABLE',
      `cannot migrate the schema of ${where} (${step}): ${String(message ?? error).split('\n')[0]}${hint}`,
      { cause: error },
    );
  }
}
