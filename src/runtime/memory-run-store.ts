/* eslint-disable @typescript-eslint/require-await -- in memory nothing is awaited, but the methods are async as the interface is: a throw is a rejection, never a synchronous throw. */
import { isFinalStatus } from '../../machines/run.machine.js';
import { z } from 'zod';
import { RunstateError } from '../errors.js';
import { sessionName } from './detached-slice.js';
import { RunEventList } from './event-log.js';
import { checkOption, count, duration } from './run-limits.js';
import type { RunOutput, RunRecord } from './run-events.js';
import {
  sessionOfAnother,
  userMayJoinSession,
  type ParkedRun,
  type ParkState,
  type RunFilter,
  type RunPatch,
  type RunStore,
  type SessionFilter,
  type SessionRecord,
} from './storage.js';

/** How long finished runs are kept. */
export interface RetentionOptions {
  /** Finished runs kept at most, over all sessions; the oldest go first. Default 1,000. */
  maxFinishedRuns?: number | undefined;
  /** Finished runs older than this (since they finished) are forgotten. Default one hour. */
  maxAgeMs?: number | undefined;
}

/** Options of {@link createMemoryRunStore}: the limits that bound its memory. */
export interface MemoryRunStoreOptions {
  retention?: RetentionOptions | undefined;
  /** Sessions kept at most; the least recently used without an active run goes first. Default 10,000. */
  maxSessions?: number | undefined;
  /** Runs kept per session; past it, the session's oldest finished run is forgotten. Default 100. */
  maxRunsPerSession?: number | undefined;
  /** Clock in milliseconds (retention age, session times). */
  now?: (() => number) | undefined;
}

const memoryRunStoreOptionsSchema = z.strictObject({
  retention: z
    .strictObject({ maxFinishedRuns: count(0).optional(), maxAgeMs: duration.optional() })
    .optional(),
  maxSessions: count(1).optional(),
  maxRunsPerSession: count(1).optional(),
  now: z.custom<() => number>((value) => typeof value === 'function', 'expected a function').optional(),
});

/** The defaults of {@link MemoryRunStoreOptions}. */
export const MEMORY_STORE_LIMITS = {
  maxFinishedRuns: 1_000,
  maxAgeMs: 60 * 60_000,
  maxSessions: 10_000,
  maxRunsPerSession: 100,
} as const;

interface StoredRun {
  record: RunRecord & Record<string, unknown>;
  /** Kept small: a run's deltas are most of what the store holds (see {@link RunEventList}). */
  events: RunEventList;
  /** Set while the run is parked (paused, owned by nobody). */
  parked?: ParkedRun | undefined;
}

interface StoredSession {
  record: Omit<SessionRecord, 'run_ids'>;
  /** Retained runs, oldest first. */
  runIds: string[];
  /** Runs not final yet: a session with one is never forgotten. */
  active: number;
}

/**
 * The default {@link RunStore}: everything in this process's memory, gone when it exits.
 *
 * Its memory is bounded by its limits: finished runs (with their events) by `retention` (count and
 * age), sessions by `maxSessions`, runs per session by `maxRunsPerSession`. Active runs are never
 * forgotten (the orchestrator's concurrency limit bounds them). A forgotten run is gone everywhere:
 * its record, its events, its place in its session's `run_ids` and history; a session whose last run
 * is forgotten is forgotten too. In the worst case it holds `maxFinishedRuns` finished runs (each its
 * input, its content about twice: the deltas and the terminal event) plus the active runs.
 *
 * @example
 * ```ts
 * const store = createMemoryRunStore({ retention: { maxFinishedRuns: 200, maxAgeMs: 10 * 60_000 } });
 * const orchestrator = createOrchestrator({ store });
 * ```
 */
export function createMemoryRunStore(options: MemoryRunStoreOptions = {}): RunStore {
  // A limit out of range would not fail: every finished run would be forgotten at once.
  checkOption(memoryRunStoreOptionsSchema, options, 'options');
  const maxFinishedRuns = options.retention?.maxFinishedRuns ?? MEMORY_STORE_LIMITS.maxFinishedRuns;
  const maxAgeMs = options.retention?.maxAgeMs ?? MEMORY_STORE_LIMITS.maxAgeMs;
  const maxSessions = options.maxSessions ?? MEMORY_STORE_LIMITS.maxSessions;
  const maxRunsPerSession = options.maxRunsPerSession ?? MEMORY_STORE_LIMITS.maxRunsPerSession;
  const now = options.now ?? Date.now;

  const runs = new Map<string, StoredRun>(); // in creation order
  // Finished runs → when they finished (ms), oldest first: a Map keeps insertion order and deletes in O(1).
  const finished = new Map<string, number>();
  // A Map keeps insertion order; re-inserting on use makes its first key the least recently used.
  const sessions = new Map<string, StoredSession>();
  let closed = false;

  function check(): void {
    if (closed) throw new RunstateError('INTERNAL', 'the run store is closed');
    // Age is checked on every call, so that a run past its age is never read, even with no writes.
    const cutoff = now() - maxAgeMs;
    for (const [runId, finishedAt] of finished) {
      if (finished.size <= maxFinishedRuns && finishedAt >= cutoff) break;
      forget(runId);
    }
  }

  /** Forgets a finished run everywhere, and its session when it was the last run. */
  function forget(runId: string): void {
    const run = runs.get(runId);
    finished.delete(runId);
    if (!run) return;
    runs.delete(runId);
    const session = sessions.get(run.record.session_id);
    if (!session) return;
    const index = session.runIds.indexOf(runId);
    if (index >= 0) session.runIds.splice(index, 1);
    if (session.runIds.length === 0) sessions.delete(run.record.session_id);
  }

  function forgetSession(sessionId: string): void {
    const session = sessions.get(sessionId);
    if (!session) return;
    sessions.delete(sessionId);
    for (const runId of session.runIds) {
      runs.delete(runId);
      finished.delete(runId);
    }
  }

  function boundSessions(): void {
    if (sessions.size <= maxSessions) return;
    for (const [sessionId, session] of sessions) {
      if (session.active > 0) continue;
      forgetSession(sessionId);
      if (sessions.size <= maxSessions) return;
    }
  }

  function boundSession(session: StoredSession): void {
    for (let i = 0; session.runIds.length > maxRunsPerSession && i < session.runIds.length;) {
      const runId = session.runIds[i]!;
      if (finished.has(runId)) forget(runId);
      else i++;
    }
  }

  const copy = (run: StoredRun): RunRecord => ({ ...run.record });

  return {
    async createRun(run) {
      check();
      if (runs.has(run.run_id)) {
        throw new RunstateError('INVALID_INPUT', `run id ${run.run_id} is already in use`);
      }
      const seconds = Math.floor(now() / 1000);
      let session = sessions.get(run.session_id);
      if (
        session &&
        (session.record.agent_id !== run.agent_id || !userMayJoinSession(session.record.user_id, run.user_id))
      ) {
        throw sessionOfAnother(run.session_id, session.record.agent_id, run.agent_id);
      }
      if (session) {
        sessions.delete(run.session_id);
      } else {
        session = {
          record: {
            session_id: run.session_id,
            agent_id: run.agent_id,
            user_id: run.user_id,
            session_name: sessionName(run.run_input),
            created_at: seconds,
            updated_at: seconds,
          },
          runIds: [],
          active: 0,
        };
      }
      sessions.set(run.session_id, session);
      session.record.updated_at = seconds;
      session.runIds.push(run.run_id);
      session.active++;
      runs.set(run.run_id, { record: { ...run, status: 'pending' }, events: new RunEventList() });
      boundSession(session);
      boundSessions();
    },

    async updateRun(runId, patch: RunPatch) {
      check();
      const run = runs.get(runId);
      if (!run || isFinalStatus(run.record.status)) return;
      Object.assign(run.record, patch, { run_id: runId });
    },

    async finishRun(record: RunOutput) {
      check();
      const run = runs.get(record.run_id);
      if (!run || isFinalStatus(run.record.status)) return false;
      run.record = { ...run.record, ...record };
      run.parked = undefined;
      // Its events are all in (the writer stores them before the final record): kept as few strings.
      run.events.compact();
      finished.set(record.run_id, now());
      const session = sessions.get(record.session_id);
      if (session) {
        session.active--;
        boundSession(session);
      }
      check();
      return true;
    },

    async getRun(runId) {
      check();
      const run = runs.get(runId);
      return run && copy(run);
    },

    async listRuns(filter: RunFilter = {}) {
      check();
      const out: RunRecord[] = [];
      for (const run of runs.values()) {
        const record = run.record;
        if (filter.agentId !== undefined && record.agent_id !== filter.agentId) continue;
        if (filter.sessionId !== undefined && record.session_id !== filter.sessionId) continue;
        if (filter.status !== undefined && record.status !== filter.status) continue;
        out.push(copy(run));
      }
      return out;
    },

    async appendEvents(runId, events) {
      check();
      const log = runs.get(runId)?.events;
      if (!log) return;
      for (const event of events) if (event.seq === log.size + 1) log.push(event);
    },

    async readEvents(runId, afterSeq = 0) {
      check();
      return runs.get(runId)?.events.slice(afterSeq) ?? [];
    },

    async getSession(sessionId) {
      check();
      const session = sessions.get(sessionId);
      return session && sessionRecord(session);
    },

    async listSessions(filter: SessionFilter = {}) {
      check();
      const out: SessionRecord[] = [];
      for (const session of sessions.values()) {
        if (filter.agentId !== undefined && session.record.agent_id !== filter.agentId) continue;
        if (filter.userId !== undefined && session.record.user_id !== filter.userId) continue;
        out.push(sessionRecord(session));
      }
      return out.reverse();
    },

    async sessionRuns(sessionId) {
      check();
      const session = sessions.get(sessionId);
      if (!session) return [];
      return session.runIds.flatMap((runId) => {
        const run = runs.get(runId);
        return run ? [copy(run)] : [];
      });
    },

    async parkRun(runId, patch, events, parked) {
      check();
      const run = runs.get(runId);
      if (!run || isFinalStatus(run.record.status)) return;
      for (const event of events) if (event.seq === run.events.size + 1) run.events.push(event);
      Object.assign(run.record, patch, { run_id: runId });
      // A copy: the caller's snapshot object must not change what is stored.
      run.parked = structuredClone(parked);
    },

    async claimParked(runId, expiredBefore, accept) {
      check();
      const run = runs.get(runId);
      const parked = run?.parked;
      if (!run || !parked) return undefined;
      if (expiredBefore !== undefined && parked.until >= expiredBefore) return undefined;
      const record = copy(run);
      if (accept && !accept(record)) return undefined;
      run.parked = undefined;
      return { record, parked };
    },

    async expiredParked(nowMs) {
      check();
      const out: string[] = [];
      for (const [runId, run] of runs) if (run.parked && run.parked.until < nowMs) out.push(runId);
      return out;
    },

    async parkStates(runIds) {
      check();
      const out = new Map<string, ParkState>();
      for (const runId of runIds) {
        const run = runs.get(runId);
        if (run) out.set(runId, { status: run.record.status, parkedSeq: run.parked?.seq ?? null });
      }
      return out;
    },

    async deleteSession(sessionId) {
      check();
      if (!sessions.has(sessionId)) return false;
      forgetSession(sessionId);
      return true;
    },

    async renameSession(sessionId, name) {
      check();
      const session = sessions.get(sessionId);
      if (!session) return undefined;
      session.record.session_name = name;
      return sessionRecord(session);
    },

    async close() {
      closed = true;
      runs.clear();
      finished.clear();
      sessions.clear();
    },
  };
}

function sessionRecord(session: StoredSession): SessionRecord {
  return { ...session.record, run_ids: [...session.runIds] };
}
