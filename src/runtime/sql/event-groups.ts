import { RunstateError } from '../../errors.js';
import type { RunEvent } from '../run-events.js';
import type { SqlQueryable } from './sql-database.js';
import { storedJson } from './stored-json.js';

/** One run's batch waiting in a group, with the promise of its caller. */
interface Entry {
  runId: string;
  events: readonly RunEvent[];
  resolve(): void;
  reject(error: unknown): void;
}

/** Options of {@link createEventGroups}. */
export interface EventGroupsOptions {
  db: SqlQueryable;
  /**
   * Groups written at once at most (each holds a pooled connection while it is written). While that
   * many are in flight, what arrives waits and goes in the next group. Default 2.
   */
  maxInFlight?: number | undefined;
}

/**
 * The events of every run as one INSERT per group. A group takes every run's batch handed over in
 * one turn of the event loop (and while the previous groups are in flight), then one statement
 * writes them all: 1,000 runs streaming cost one statement and one commit per group instead of one
 * each. A batch's promise settles with its group.
 *
 * In the SQL itself, a run that is unknown (deleted with its session while it streamed) or sealed
 * (finalised by another instance: its lost owner came back) is skipped, not an error for the others.
 * A group that fails for another reason than an outage is written again run by run, so that only
 * the run at fault sees the error. A run's batches commit in the order they were handed over (its
 * next batch joins a group once the previous one committed): no reader sees a gap.
 */
export function createEventGroups({ db, maxInFlight = 2 }: EventGroupsOptions): {
  /** Writes a batch of a run's events (in `seq` order; a `seq` already stored is skipped). */
  append(runId: string, events: readonly RunEvent[]): Promise<void>;
  /** Resolves once every batch handed over so far is written or failed. */
  drain(): Promise<void>;
} {
  let open: Entry[] = [];
  let scheduled = false;
  let inFlight = 0;
  // The last batch of each run still being written: the next one of that run waits for it.
  const lastOfRun = new Map<string, Promise<void>>();

  function schedule(): void {
    if (scheduled || inFlight >= maxInFlight || open.length === 0) return;
    scheduled = true;
    // The next turn, not the next microtask: the batches that the runs' writers hand over in this
    // turn (each a few promise hops away) all join.
    setImmediate(send);
  }

  function send(): void {
    scheduled = false;
    if (inFlight >= maxInFlight || open.length === 0) return;
    const group = open;
    open = [];
    inFlight++;
    void write(group).finally(() => {
      inFlight--;
      schedule();
    });
  }

  async function write(group: Entry[]): Promise<void> {
    try {
      await insert(group);
    } catch (error) {
      if (group.length > 1 && !unavailable(error)) {
        // Some run's batch is at fault (or a run went mid-statement): each alone, so the others land.
        await Promise.all(group.map((entry) => write([entry])));
        return;
      }
      // A run deleted between the statement's snapshot and its foreign key check: nobody can read it.
      if (group.length === 1 && (error as { code?: string }).code === '23503') {
        group[0]!.resolve();
        return;
      }
      for (const entry of group) entry.reject(error);
      return;
    }
    for (const entry of group) entry.resolve();
  }

  async function insert(group: readonly Entry[]): Promise<void> {
    // The run rows are locked (key share, what the foreign key takes anyway) before the events go in:
    // a run deleted or sealed meanwhile is rechecked and skipped rather than failing the statement.
    // A seq already stored is skipped (a batch sent again).
    await db.query(
      `WITH target AS (
         SELECT b.run_id, b.events FROM json_to_recordset($1::json) AS b(run_id text, events json)
         JOIN runstate_runs r ON r.run_id = b.run_id AND NOT r.sealed
         FOR KEY SHARE OF r)
       INSERT INTO runstate_events (run_id, seq, event)
       SELECT t.run_id, (e->>'seq')::integer, e FROM target t CROSS JOIN LATERAL json_array_elements(t.events) AS e
       ON CONFLICT DO NOTHING`,
      [storedJson(group.map(({ runId, events }) => ({ run_id: runId, events })))],
    );
  }

  function join(runId: string, events: readonly RunEvent[]): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      open.push({ runId, events, resolve, reject });
      schedule();
    });
  }

  return {
    append(runId, events) {
      if (events.length === 0) return Promise.resolve();
      const previous = lastOfRun.get(runId);
      const done = previous ? previous.then(() => join(runId, events)) : join(runId, events);
      // The run's next batch waits for this one, failed or not; this caller still sees a failure.
      const tail = done.catch(() => undefined);
      lastOfRun.set(runId, tail);
      void tail.then(() => {
        if (lastOfRun.get(runId) === tail) lastOfRun.delete(runId);
      });
      return done;
    },
    async drain() {
      await Promise.all(lastOfRun.values());
    },
  };
}

const unavailable = (error: unknown) => error instanceof RunstateError && error.code === 'STORE_UNAVAILABLE';
